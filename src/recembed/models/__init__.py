"""Recommendation models. Each model lives in its own file; ``registry`` maps CLI names to classes."""

from .base import HistoryRecommender, Recommender
from .registry import MODELS, model_class

__all__ = ["MODELS", "HistoryRecommender", "Recommender", "model_class"]
