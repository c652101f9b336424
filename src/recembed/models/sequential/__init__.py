"""Sequential (next-item) models; the shared base class lives in :mod:`.core`."""

from .core import ItemTableModule, OutputItems, SequentialConfig, SequentialRecommender

__all__ = ["ItemTableModule", "OutputItems", "SequentialConfig", "SequentialRecommender"]
