"""Data layer: vocabularies, interactions, item/user tables, readers, splits, the dataset catalog."""

from .dataset import Dataset
from .interactions import Interactions
from .tables import Table
from .vocab import Vocabulary

__all__ = ["Dataset", "Interactions", "Table", "Vocabulary"]
