"""CTR data from any interaction dataset and split, for rankers that re-rank a retriever's candidates.

The retrieval datasets have interactions, not impressions: every (user, item) event of a part is a click, and
``negatives`` items the user never interacted with (in any part), drawn uniformly per click, are the non-clicks
(the usual implicit-feedback protocol; DIN's Amazon sets are built the same way). The fields come from the data:
``user_id``, ``item_id``, then every categorical / tags / numeric / vector column of the user and item tables
(``text`` columns are skipped: encode them first with ``--text-columns``). :func:`pair_frame` builds the rows
of any (user, item) pairs the same way -- what the retrieve-then-rank pipeline scores.

    recembed fit deepfm --data ml-100k --split ../shared/data/ml-100k/splits/random-80-10-10 --out runs/deepfm
    recembed pipeline --retriever runs/lightgcn --ranker runs/deepfm --candidates 200
"""

from __future__ import annotations

import numpy as np

from ..data.dataset import Dataset
from ..data.splits import PARTS, Split
from ..errors import DataError
from .datasets import CTRData
from .schema import Field, Frame, Ragged

TABLE_KINDS = {"categorical": "categorical", "tags": "tags", "numeric": "numeric", "vector": "vector"}
HIGH_CARDINALITY = 0.5  # a categorical column with more distinct values than this share of rows: min_count 2


def feature_columns(dataset: Dataset) -> list[tuple[str, str, str, str]]:
    """``(field name, "user" | "item", table column, kind)`` of the tables' usable columns; a column whose name
    is already taken (``user_id``, or the same name in both tables) gets its side as a prefix."""
    out, taken = [], {"user_id", "item_id"}
    for side, table in (("user", dataset.user_table), ("item", dataset.item_table)):
        if table is None:
            continue
        for col in table.names():
            kind = TABLE_KINDS.get(table.kinds[col])
            if kind is None:
                continue
            name = col if col not in taken else f"{side}_{col}"
            taken.add(name)
            out.append((name, side, col, kind))
    return out


def fields_for(dataset: Dataset) -> list[Field]:
    fields = [Field("user_id", "categorical"), Field("item_id", "categorical")]
    for name, side, col, kind in feature_columns(dataset):
        table = dataset.user_table if side == "user" else dataset.item_table
        min_count = 1
        if kind == "categorical":  # near-unique columns (zip codes): a value seen once gets the OOV bucket
            distinct = len(set(np.asarray(table[col]).tolist()))
            min_count = 2 if distinct > HIGH_CARDINALITY * table.num_rows else 1
        fields.append(Field(name, kind, min_count=min_count))
    return fields


def pair_frame(dataset: Dataset, fields: list[Field], users: np.ndarray, items: np.ndarray,
               labels: np.ndarray | None = None) -> Frame:
    """The rows of ``(user index, item index)`` pairs, with ``fields``' columns read from the dataset's tables."""
    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    cols: dict[str, object] = {"user_id": dataset.users.ids[users], "item_id": dataset.items.ids[items]}
    names = {f.name for f in fields}
    for name, side, col, kind in feature_columns(dataset):
        if name not in names:
            continue
        table, idx = (dataset.user_table, users) if side == "user" else (dataset.item_table, items)
        cols[name] = _ragged(table, col).take(idx) if kind == "tags" else table[col][idx]
    missing = names - set(cols)
    if missing:
        raise DataError(f"the dataset has no column for field(s) {sorted(missing)}")
    y = np.ones(len(users), np.float32) if labels is None else np.asarray(labels, np.float32)
    return Frame(cols, y, dataset.users.ids[users])


def _ragged(table, col: str) -> Ragged:  # noqa: ANN001
    """A tags column as :class:`Ragged`, built once per table (a serving request takes rows of it)."""
    cache = table.__dict__.setdefault("_ragged_columns", {})
    if col not in cache:
        cache[col] = Ragged.from_lists(list(table[col]))
    return cache[col]


def sample_negatives(users: np.ndarray, num_items: int, exclude_keys: np.ndarray, per_row: int,
                     rng: np.random.Generator, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``per_row`` items per user entry (uniform, or in proportion to ``weights``), none of them a
    ``user * num_items + item`` key in ``exclude_keys`` (sorted); resampled until clean (vectorised)."""
    owners = np.repeat(np.asarray(users, dtype=np.int64), per_row)
    n = np.int64(num_items)
    cdf = None if weights is None else np.cumsum(weights / weights.sum())

    def draw(size: int) -> np.ndarray:
        if cdf is None:
            return rng.integers(0, num_items, size)
        return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), num_items - 1)

    neg = draw(len(owners))
    clash = np.isin(owners * n + neg, exclude_keys)
    for _ in range(100):
        if not clash.any():
            break
        neg[clash] = draw(int(clash.sum()))
        clash[clash] = np.isin(owners[clash] * n + neg[clash], exclude_keys)
    if clash.any():
        raise DataError("could not draw non-interacted items for some users (they interacted with almost every item)")
    return owners, neg


SAMPLINGS = ("uniform", "popularity")


def ctr_from_split(dataset: Dataset, split: Split, negatives: int = 4, seed: int = 2020,
                   sampling: str = "uniform") -> CTRData:
    """``sampling``: non-clicks drawn uniformly, or in proportion to the items' training counts (+1), which is
    closer to what a retriever proposes (a ranker then learns more than popularity)."""
    if negatives < 1:
        raise DataError(f"--negatives: must be >= 1, got {negatives}")
    if sampling not in SAMPLINGS:
        raise DataError(f"--negative-sampling: expected one of {SAMPLINGS}, got {sampling!r}")
    weights = None
    if sampling == "popularity":
        weights = np.bincount(split.train.item_idx, minlength=dataset.num_items).astype(np.float64) + 1.0
    fields = fields_for(dataset)
    rng = np.random.default_rng(seed)
    n = np.int64(dataset.num_items)
    every = np.unique(np.concatenate([getattr(split, p).user_idx.astype(np.int64) * n + getattr(split, p).item_idx
                                      for p in PARTS]))
    frames = []
    for p in PARTS:
        part = getattr(split, p)
        nu, ni = sample_negatives(part.user_idx, dataset.num_items, every, negatives, rng, weights)
        u = np.r_[part.user_idx, nu]
        i = np.r_[part.item_idx, ni]
        y = np.r_[np.ones(len(part)), np.zeros(len(nu))]
        frames.append(pair_frame(dataset, fields, u, i, y))
    return CTRData(f"{dataset.name}:{split.spec}", fields, *frames,
                   description=f"{dataset.name} interactions as clicks, {negatives} {sampling}-sampled non-clicks each")
