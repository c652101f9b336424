"""A dataset: vocabularies, interactions, optional attribute tables and an optional given split."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .interactions import Interactions
from .tables import Table
from .vocab import Vocabulary

if TYPE_CHECKING:
    from .splits import Split


@dataclass
class Dataset:
    """Everything a source provides, indexed once through its vocabularies.

    Attributes
    ----------
    name : str
        Catalog name or file stem.
    users, items : Vocabulary
        External id <-> index maps; every index space below is sized by these.
    interactions : Interactions
        All events (for sources with a given split, the union of its parts).
    item_table, user_table : Table or None
        Attributes, row ``i`` = index ``i``.
    given_split : Split or None
        The split the source itself defines (train/valid/test files, ``x_label``, ...), if any.
    extras : dict
        Source-specific material that has no general slot yet (kept, never interpreted here).
    """

    name: str
    users: Vocabulary
    items: Vocabulary
    interactions: Interactions
    item_table: Table | None = None
    user_table: Table | None = None
    given_split: Split | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.interactions.num_users != len(self.users) or self.interactions.num_items != len(self.items):
            raise ValueError("interactions' index spaces must match the vocabularies")

    @classmethod
    def from_pandas(cls, interactions: Any, items: Any = None, users: Any = None, *,
                    columns: str | dict[str, str] | None = None, duplicates: str = "drop",
                    name: str = "data") -> Dataset:
        """Events from a pandas DataFrame (one row per event), with optional item / user attribute DataFrames.

        ``columns`` maps roles to column names (``{"user": "uid", "item": "movie", "time": "ts"}``; default: the
        usual names, see :mod:`recembed.data.readers.own`); ``duplicates`` is ``"keep"``, ``"drop"`` (default,
        with a warning counting them) or ``"sum"``. pandas is imported by the caller, never by recembed."""
        from .readers.own import dataset_from_frames

        return dataset_from_frames(interactions, items, users, columns=columns, duplicates=duplicates, name=name)

    @classmethod
    def from_arrow(cls, interactions: Any, items: Any = None, users: Any = None, *,
                   columns: str | dict[str, str] | None = None, duplicates: str = "drop",
                   name: str = "data") -> Dataset:
        """:meth:`from_pandas` for ``pyarrow.Table`` s (or dicts of columns)."""
        from .readers.own import dataset_from_frames

        return dataset_from_frames(interactions, items, users, columns=columns, duplicates=duplicates, name=name)

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    def item_titles(self) -> np.ndarray | None:
        """A display name per item, or None if the item table has none."""
        if self.item_table is None:
            return None
        col = self.item_table.title_column()
        return None if col is None else self.item_table[col]

    def summary(self) -> dict[str, Any]:
        inter = self.interactions
        n = len(inter)
        density = n / max(1, self.num_users * self.num_items)
        return {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": n,
            "density": round(density, 6),
            "has_rating": inter.rating is not None,
            "has_timestamp": inter.timestamp is not None,
            "item_columns": {} if self.item_table is None else dict(self.item_table.kinds),
            "user_columns": {} if self.user_table is None else dict(self.user_table.kinds),
            "given_split": None if self.given_split is None else self.given_split.sizes(),
        }

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, users={self.num_users}, items={self.num_items}, "
            f"interactions={len(self.interactions)}"
            + (", given split" if self.given_split is not None else "")
            + ")"
        )
