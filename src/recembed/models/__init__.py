"""Recommendation models, one file per model in its family's subpackage (``cf``, ``content``, ``sequential``,
``generative``); ``registry`` maps CLI names to classes. Shared pieces (``base``, ``trainable``, ``ensemble``)
stay here."""

from .base import HistoryRecommender, Recommender
from .registry import MODELS, model_class

__all__ = ["MODELS", "HistoryRecommender", "Recommender", "model_class"]
