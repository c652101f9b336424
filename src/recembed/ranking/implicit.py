"""CTR data from any interaction dataset and split, for rankers that re-rank a retriever's candidates.

The retrieval datasets have interactions, not impressions: every (user, item) event of a part is a click, and
``negatives`` items the user never interacted with (in any part), drawn uniformly per click, are the non-clicks
(the usual implicit-feedback protocol; DIN's Amazon sets are built the same way). The fields come from the data:
``user_id``, ``item_id``, then every categorical / tags / numeric / vector column of the user and item tables
(``text`` columns are skipped: encode them first with ``--text-columns``). :func:`pair_frame` builds the rows
of any (user, item) pairs the same way -- what the retrieve-then-rank pipeline scores -- through
:class:`PairFeatures` (the per-side columns), which a bundle stores aligned to its vocabularies and the service
reads through :class:`EncodedPairs` (every field encoded once per entity).

    recembed fit deepfm --data ml-100k --split ../shared/data/ml-100k/splits/random-80-10-10 --out runs/deepfm
    recembed pipeline --retriever runs/lightgcn --ranker runs/deepfm --candidates 200
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from ..data.splits import PARTS, Split
from ..errors import DataError
from .datasets import CTRData
from .schema import OOV, Field, Frame, Ragged, Schema

#: fields that describe the pair itself, not a side: the retriever's score of the item for the user and the item's
#: place in the retriever's list (``log(1 + rank)``, 0 = first). A ranker fitted on a retriever's candidates
#: (:mod:`recembed.ranking.candidates`) reads them; the pipeline and the service pass them per request.
RETRIEVAL_SCORE, RETRIEVAL_RANK, RETRIEVAL_GAP = "retrieval_score", "retrieval_rank", "retrieval_gap"
PAIR_FIELDS = (RETRIEVAL_SCORE, RETRIEVAL_RANK, RETRIEVAL_GAP)
#: per-entity fields from the retriever's training part: ``log(1 + interactions)`` of the user / the item
#: (:func:`activity`); the ranker then knows what popularity the retriever's score already holds.
USER_ACTIVITY, ITEM_POPULARITY = "user_train_count", "item_train_count"
ACTIVITY_FIELDS = (USER_ACTIVITY, ITEM_POPULARITY)
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
               labels: np.ndarray | None = None, pair: dict[str, np.ndarray] | None = None,
               counts: tuple[np.ndarray, np.ndarray] | None = None) -> Frame:
    """The rows of ``(user index, item index)`` pairs, with ``fields``' columns read from the dataset's tables
    (``pair``: the :data:`PAIR_FIELDS` columns; ``counts``: see :meth:`PairFeatures.from_dataset`)."""
    return PairFeatures.from_dataset(dataset, fields, counts).frame(users, items, labels, pair)


def retrieval_columns(scores: np.ndarray) -> dict[str, np.ndarray]:
    """The :data:`PAIR_FIELDS` of a ``(B, C)`` block of candidates' retrieval scores, each row one user's
    candidates in any order: the score itself, ``log(1 + rank)`` of its place in the user's list (0 = best; ties
    keep column order) and its gap to the user's best candidate (>= 0: comparable across users whose scores differ
    in scale, and independent of the number of candidates). Flattened row-major, as the candidates' rows are."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(scores.shape[1]), scores.shape), axis=1)
    gap = np.nanmax(np.where(np.isfinite(scores), scores, np.nan), axis=1, keepdims=True) - scores
    return {RETRIEVAL_SCORE: scores.ravel(), RETRIEVAL_RANK: np.log1p(rank.ravel().astype(np.float64)),
            RETRIEVAL_GAP: gap.ravel()}


def activity(train: Any, user_map: np.ndarray, item_map: np.ndarray, num_users: int, num_items: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Interactions per user and per item of a run's training part (``train``: its :class:`Interactions`, in run
    indices), as arrays over the dataset's users / items (``user_map`` / ``item_map``: run index -> dataset
    index); what :data:`ACTIVITY_FIELDS` read."""
    users = np.zeros(num_users, np.float64)
    items = np.zeros(num_items, np.float64)
    np.add.at(users, user_map[np.asarray(train.user_idx, np.int64)], 1.0)
    np.add.at(items, item_map[np.asarray(train.item_idx, np.int64)], 1.0)
    return users, items


def pair_fields(fields: list[Field]) -> list[str]:
    """The :data:`PAIR_FIELDS` among ``fields`` (those a ranker needs the retriever's scores for)."""
    return [f.name for f in fields if f.name in PAIR_FIELDS]


@dataclass
class PairFeatures:
    """What the rows of any (user, item) pair are built from: the user and item ids and, per field, the column of
    its side's table (an array, or :class:`Ragged` for tags), row ``i`` = entity ``i`` of that side.

    The one implementation of a pair's features: training rows (:func:`ctr_from_split`), the offline pipeline
    (:func:`pair_frame`) and serving (a bundle stores these columns aligned to its vocabularies,
    :mod:`recembed.serve.ranker`) all read them through :meth:`frame` or :class:`EncodedPairs`."""

    user_ids: np.ndarray  # (U,) object: str
    item_ids: np.ndarray  # (I,) object: str
    columns: dict[str, tuple[str, str, Any]] = field(default_factory=dict)
    """field name -> ``(side "user" | "item", kind, column)``."""

    @classmethod
    def from_dataset(cls, dataset: Dataset, fields: list[Field],
                     counts: tuple[np.ndarray, np.ndarray] | None = None) -> PairFeatures:
        """The columns of ``fields`` from the dataset's tables (cached on the dataset per field list); the
        :data:`ACTIVITY_FIELDS` from ``counts`` (:func:`activity`: per dataset user, per dataset item)."""
        key = tuple(f.name for f in fields)
        wanted = [name for name in ACTIVITY_FIELDS if name in key]
        if wanted and counts is None:
            raise DataError(f"field(s) {wanted} count the retriever's training interactions: pass its split's counts",
                            field=wanted[0])
        cache = dataset.__dict__.setdefault("_pair_features", {})
        if key not in cache:
            names = set(key) - set(PAIR_FIELDS) - set(ACTIVITY_FIELDS)
            cols: dict[str, tuple[str, str, Any]] = {}
            for name, side, col, kind in feature_columns(dataset):
                if name not in names:
                    continue
                table = dataset.user_table if side == "user" else dataset.item_table
                cols[name] = (side, kind, _ragged(table, col) if kind == "tags" else table[col])
            missing = names - set(cols) - {"user_id", "item_id"}
            if missing:
                raise DataError(f"the dataset has no column for field(s) {sorted(missing)}")
            cache[key] = cls(dataset.users.ids, dataset.items.ids, cols)
        if not wanted:
            return cache[key]
        base = cache[key]
        extra = {USER_ACTIVITY: ("user", "numeric", np.log1p(counts[0])),
                 ITEM_POPULARITY: ("item", "numeric", np.log1p(counts[1]))}
        return cls(base.user_ids, base.item_ids, {**base.columns, **{n: extra[n] for n in wanted}})

    def side(self, name: str) -> str:
        if name in ("user_id", "item_id"):
            return name[:4]
        if name in PAIR_FIELDS:
            return "pair"
        try:
            return self.columns[name][0]
        except KeyError:
            raise DataError(f"no column for field {name!r}; the pair features have {sorted(self.columns)}",
                            field=name) from None

    def column(self, name: str) -> Any:
        """Field ``name``'s column over all entities of its side."""
        if name == "user_id":
            return self.user_ids
        if name == "item_id":
            return self.item_ids
        self.side(name)
        return self.columns[name][2]

    def realign(self, users: np.ndarray, items: np.ndarray) -> PairFeatures:
        """The same features for another ordering / subset of the entities: new row ``r`` of a side is its old row
        ``users[r]`` / ``items[r]`` (e.g. a run's vocabulary as dataset indices)."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        cols = {}
        for name, (side, kind, values) in self.columns.items():
            idx = users if side == "user" else items
            cols[name] = (side, kind, values.take(idx) if isinstance(values, Ragged) else values[idx])
        return PairFeatures(self.user_ids[users], self.item_ids[items], cols)

    def frame(self, users: np.ndarray, items: np.ndarray, labels: np.ndarray | None = None,
              pair: dict[str, np.ndarray] | None = None) -> Frame:
        """Raw rows of ``(user index, item index)`` pairs (with every field's column; ``pair``: the
        :data:`PAIR_FIELDS` columns, one value per row)."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        cols: dict[str, object] = {"user_id": self.user_ids[users], "item_id": self.item_ids[items]}
        for name, (side, _, values) in self.columns.items():
            idx = users if side == "user" else items
            cols[name] = values.take(idx) if isinstance(values, Ragged) else values[idx]
        for name, values in (pair or {}).items():
            cols[name] = np.asarray(values, dtype=np.float64)
        y = np.ones(len(users), np.float32) if labels is None else np.asarray(labels, np.float32)
        return Frame(cols, y, self.user_ids[users])


class EncodedPairs:
    """:class:`PairFeatures` encoded once per entity by a fitted schema: a pair's model input is a gather.

    Every field is encoded row by row (:meth:`Schema.encode_column`), so ``arrays(users, items)`` equals encoding
    ``features.frame(users, items)`` -- without building strings or looking tokens up per request. Items appended
    with :meth:`append_items` (added to a service after bundling) have no attributes: their ``item_id`` is looked
    up (out of vocabulary unless the ranker knows the id), categorical fields take the OOV bucket, tags none
    (padding: a zero embedding), numeric fields 0 (the training mean) and vectors zeros."""

    def __init__(self, features: PairFeatures, schema: Schema) -> None:
        self.schema = schema
        self.names = schema.names()
        self.user_arrays: dict[str, np.ndarray] = {}
        self.item_arrays: dict[str, np.ndarray] = {}
        self.pair_names = pair_fields(schema.fields)
        for f in schema.fields:
            side = features.side(f.name)
            if side == "pair":
                continue
            col = features.column(f.name)
            if (f.kind in ("tags", "sequence")) != isinstance(col, Ragged):
                raise DataError(f"the ranker reads {f.name!r} as {f.kind}, the features hold another kind of column",
                                field=f.name)
            (self.user_arrays if side == "user" else self.item_arrays)[f.name] = schema.encode_column(f, col)
        self.num_users = len(features.user_ids)
        self.num_items = len(features.item_ids)

    def arrays(self, users: np.ndarray, items: np.ndarray,
               pair: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Encoded rows of ``(user index, item index)`` pairs, field name -> array (the schema's field order);
        ``pair``: the :data:`PAIR_FIELDS` columns the ranker reads (:func:`retrieval_columns`)."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        if self.pair_names and (pair is None or not set(self.pair_names) <= set(pair)):
            raise DataError(f"this ranker reads the retriever's {self.pair_names} (it was fitted on a retriever's "
                            "candidates): pass them with the pairs", field=self.pair_names[0])
        out = {}
        for name in self.names:
            if name in self.user_arrays:
                out[name] = self.user_arrays[name][users]
            elif name in self.item_arrays:
                out[name] = self.item_arrays[name][items]
            else:
                out[name] = self.schema.encode_column(self.schema.field(name), np.asarray(pair[name], np.float64))
        return out

    def append_items(self, item_ids: list[str]) -> None:
        """Rows for new items without attributes (see the class docstring)."""
        n = len(item_ids)
        for name, arr in self.item_arrays.items():
            f = self.schema.field(name)
            if name == "item_id":
                new = self.schema.token_index(name, np.asarray(item_ids, dtype=object))
            elif f.kind == "categorical":
                new = np.full(n, OOV, dtype=arr.dtype)
            else:
                new = np.zeros((n, *arr.shape[1:]), dtype=arr.dtype)
            self.item_arrays[name] = np.concatenate([arr, new])
        self.num_items += n


def _ragged(table, col: str) -> Ragged:  # noqa: ANN001
    """A tags column as :class:`Ragged`, built once per table."""
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
