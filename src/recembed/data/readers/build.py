"""Turn columns of external ids into a Dataset: build vocabularies once, index every part."""

from __future__ import annotations

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from ..interactions import Interactions
from ..splits import PARTS, Split
from ..vocab import Vocabulary

Columns = dict[str, np.ndarray]


def _interactions(cols: Columns, users: Vocabulary, items: Vocabulary, source: str) -> Interactions:
    for name in ("rating", "timestamp", "weight"):  # Interactions refuses NaN too, but cannot name the file
        nan = np.isnan(np.asarray(cols.get(name, ()), dtype=np.float64))
        if nan.any():
            row = int(np.flatnonzero(nan)[0])
            raise DataError(f"NaN value (event {row}, 0-based)", path=source or None, field=name)
    return Interactions(
        users.index(cols["user_id"], source=source),
        items.index(cols["item_id"], source=source),
        len(users),
        len(items),
        rating=cols.get("rating"),
        timestamp=cols.get("timestamp"),
        weight=cols.get("weight"),
    )


def dataset_from_columns(
    name: str,
    cols: Columns,
    *,
    users: Vocabulary | None = None,
    items: Vocabulary | None = None,
    source: str = "",
) -> Dataset:
    """One table of events (``user_id``, ``item_id``, optional ``rating``/``timestamp``/``weight``)."""
    users = users or Vocabulary.from_values(cols["user_id"], name="user")
    items = items or Vocabulary.from_values(cols["item_id"], name="item")
    return Dataset(name, users, items, _interactions(cols, users, items, source))


def dataset_from_parts(
    name: str,
    parts: dict[str, Columns],
    *,
    users: Vocabulary | None = None,
    items: Vocabulary | None = None,
    sources: dict[str, str] | None = None,
) -> Dataset:
    """Events given as train / valid / test parts: vocabularies over their union, the parts as the
    dataset's given split, and all events as its interactions."""
    present = [p for p in PARTS if p in parts]
    users = users or Vocabulary.from_values(*(parts[p]["user_id"] for p in present), name="user")
    items = items or Vocabulary.from_values(*(parts[p]["item_id"] for p in present), name="item")
    sources = sources or {}
    built = {
        p: (_interactions(parts[p], users, items, sources.get(p, p)) if p in parts
            else Interactions.empty(len(users), len(items)))
        for p in PARTS
    }
    split = Split(built["train"], built["valid"], built["test"], users, items, spec="given")
    return Dataset(name, users, items, Interactions.concat([built[p] for p in PARTS]), given_split=split)
