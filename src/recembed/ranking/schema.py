"""Field-aware data for the ranking stage: a feature schema, fitted on the training part, that turns raw columns
into the integer / float arrays CTR models read.

Field kinds (:data:`KINDS`):

* ``categorical`` -- one token per row (user id, gender, zip prefix); tokens seen fewer than ``min_count``
  times in training share the out-of-vocabulary bucket;
* ``tags`` -- a set of tokens per row (genres, categories): a padded ``(n, max_len)`` index matrix, pooled by
  the model (mean of the embeddings);
* ``sequence`` -- an ordered behaviour sequence (the user's previous items): like ``tags`` but the most recent
  ``max_len`` tokens are kept in order, and ``vocab_from`` makes it share the vocabulary (and so the embedding
  table) of a categorical field (``hist_items`` -> ``item_id``), as DIN's target attention needs;
* ``numeric`` -- a float; standardised with the training part's mean and deviation (missing -> 0 after);
* ``vector`` -- a dense ``(n, d)`` float vector (item text / image embeddings), read as is.

Index 0 is padding, 1 the OOV bucket; known tokens start at 2. Nothing from the validation or test part enters
the vocabularies or the statistics.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError

KINDS = ("categorical", "tags", "sequence", "numeric", "vector")
PAD, OOV = 0, 1
TOKEN_KINDS = ("categorical", "tags", "sequence")
NORMALIZE = ("l2", "none")
MAX_STANDARDISED = 1e6  # |standardised numeric value| is clipped here (float32-safe; real data never gets near it)


@dataclass(frozen=True)
class Field:
    """One input column of a CTR model (see the module docstring for the kinds)."""

    name: str
    kind: str
    min_count: int = 1
    """Token kinds: training occurrences a token needs for its own index (else the OOV bucket)."""
    max_len: int = 0
    """``tags`` / ``sequence``: tokens kept per row (0: the longest row in training)."""
    vocab_from: str = ""
    """``sequence`` / ``tags``: share this categorical field's vocabulary and embedding table."""
    normalize: str = "l2"
    """``vector``: ``l2`` scales every row to unit length before the model's linear map (encoders' vectors differ in
    scale by orders of magnitude; measured on ml-100k-ctr-mm and tiktok-mm it is the better input), ``none`` keeps
    the raw values (schemas saved before this option: ``none``)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"unknown field kind {self.kind!r}; expected one of {KINDS}", field=self.name)
        if self.min_count < 1:
            raise DataError(f"min_count must be >= 1, got {self.min_count}", field=self.name)
        if self.max_len < 0:
            raise DataError(f"max_len must be >= 0, got {self.max_len}", field=self.name)
        if self.normalize not in NORMALIZE:
            raise DataError(f"normalize: expected one of {NORMALIZE}, got {self.normalize!r}", field=self.name)


@dataclass
class Ragged:
    """Variable-length token lists: row ``r`` holds ``values[offsets[r]:offsets[r + 1]]``."""

    values: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_lists(cls, rows: list[Any] | np.ndarray) -> Ragged:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = [str(t) for r in rows for t in r]
        return cls(np.asarray(flat, dtype=object), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def take(self, rows: np.ndarray) -> Ragged:
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Ragged(self.values[idx], offsets)

    @staticmethod
    def concat(parts: list[Ragged]) -> Ragged:
        """The rows of ``parts`` one after the other."""
        shifts = np.cumsum([0] + [p.offsets[-1] for p in parts[:-1]])
        offsets = np.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, shifts)])
        return Ragged(np.concatenate([p.values for p in parts]), offsets.astype(np.int64))


@dataclass
class Frame:
    """Raw CTR rows: ``columns`` (name -> array, or :class:`Ragged` for tags / sequences), 0/1 ``labels`` and the
    ``users`` each row belongs to (for GAUC)."""

    columns: dict[str, Any]
    labels: np.ndarray
    users: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> Frame:
        cols = {k: (v.take(rows) if isinstance(v, Ragged) else v[rows]) for k, v in self.columns.items()}
        return Frame(cols, self.labels[rows], self.users[rows])

    @staticmethod
    def concat(parts: list[Frame]) -> Frame:
        """The rows of ``parts`` (the same columns) one after the other."""
        cols = {k: (Ragged.concat([p.columns[k] for p in parts]) if isinstance(v, Ragged)
                    else np.concatenate([p.columns[k] for p in parts])) for k, v in parts[0].columns.items()}
        return Frame(cols, np.concatenate([p.labels for p in parts]), np.concatenate([p.users for p in parts]))


def _strings(values: Any) -> pa.Array:
    """Tokens as an Arrow string array; numbers, booleans and mixed objects become their ``str()`` (as
    :meth:`CTRData.write_csv` writes them), ``None`` stays null (the OOV bucket)."""
    if isinstance(values, pa.Array):
        return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # e.g. an int64 column: pa.array refuses to convert it
        return pa.array([None if v is None else str(v) for v in np.asarray(values, dtype=object).tolist()],
                        type=pa.string())


def _column(frame: Frame, f: Field) -> Any:
    try:
        col = frame.columns[f.name]
    except KeyError:
        raise DataError(f"no column {f.name!r} in the data; columns: {sorted(frame.columns)}", field=f.name) from None
    ragged = f.kind in ("tags", "sequence")
    if ragged != isinstance(col, Ragged):
        raise DataError(f"a {f.kind} field needs {'a token list per row' if ragged else 'one value per row'}",
                        field=f.name)
    return col


@dataclass
class Schema:
    """Fields plus what was fitted on the training part: vocabularies, numeric statistics, vector widths."""

    fields: list[Field]
    vocab: dict[str, list[str]] = field(default_factory=dict)
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise DataError(f"field names must be unique, got {names}")
        by = {f.name: f for f in self.fields}
        for f in self.fields:
            if f.vocab_from and (f.vocab_from not in by or by[f.vocab_from].kind != "categorical"):
                raise DataError(f"vocab_from={f.vocab_from!r} is not a categorical field", field=f.name)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise DataError(f"no field {name!r}; fields: {[f.name for f in self.fields]}")

    def names(self, *kinds: str) -> list[str]:
        return [f.name for f in self.fields if not kinds or f.kind in kinds]

    def table_of(self, name: str) -> str:
        """The field whose vocabulary (embedding table) ``name`` uses."""
        return self.field(name).vocab_from or name

    def cardinality(self, name: str) -> int:
        """Rows of the field's embedding table: padding + OOV + its known tokens."""
        return 2 + len(self.vocab[self.table_of(name)])

    # -- fitting on the training part --------------------------------------------------------------------------
    def fit(self, train: Frame) -> Schema:
        counts: dict[str, dict[str, int]] = {}
        for f in self.fields:
            if f.kind in TOKEN_KINDS:
                col = _column(train, f)
                tokens = _strings(col.values if isinstance(col, Ragged) else col).drop_null()
                vc = pc.value_counts(tokens)
                table = counts.setdefault(f.vocab_from or f.name, {})
                for value, count in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
                    table[value] = table.get(value, 0) + count
                if isinstance(col, Ragged):
                    longest = int(np.diff(col.offsets).max(initial=0))
                    self.lengths[f.name] = max(1, f.max_len or longest)
            elif f.kind == "numeric":
                x = np.asarray(_column(train, f), dtype=np.float64)
                ok = x[np.isfinite(x)]
                mean = float(ok.mean()) if ok.size else 0.0
                std = float(ok.std()) if ok.size else 1.0
                self.stats[f.name] = (mean, std if std > 0 else 1.0)
            else:
                x = np.asarray(_column(train, f))
                if x.ndim != 2:
                    raise DataError(f"a vector field needs a 2-D (rows, dim) array, got shape {x.shape}", field=f.name)
                self.dims[f.name] = int(x.shape[1])
        self._keep_vocab(counts)
        return self

    def fit_batches(self, frames: Iterable[Frame], *, high_cardinality: dict[str, float] | None = None) -> Schema:
        """:meth:`fit` over the training part given as consecutive ``frames`` (record batches of a file larger than
        memory): token counts, numeric mean / deviation (merged per batch, Chan et al.), the longest token row
        and vector widths are accumulated batch by batch, so only one batch is held at a time.

        ``high_cardinality``: categorical fields (name -> share) whose ``min_count`` becomes 2 when they have more
        distinct training tokens than ``share`` x training rows (known only after the pass). Returns the rows
        seen in ``self.__dict__["rows_"]``."""
        counts: dict[str, dict[str, int]] = {}
        moments: dict[str, tuple[float, float, float]] = {}  # n, mean, M2
        rows = 0
        for frame in frames:
            rows += len(frame)
            for f in self.fields:
                col = _column(frame, f)
                if f.kind in TOKEN_KINDS:
                    vc = pc.value_counts(_strings(col.values if isinstance(col, Ragged) else col).drop_null())
                    table = counts.setdefault(f.vocab_from or f.name, {})
                    for value, count in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
                        table[value] = table.get(value, 0) + count
                    if isinstance(col, Ragged):
                        longest = int(np.diff(col.offsets).max(initial=0))
                        self.lengths[f.name] = f.max_len or max(self.lengths.get(f.name, 1), longest)
                elif f.kind == "numeric":
                    x = np.asarray(col, dtype=np.float64)
                    ok = x[np.isfinite(x)]
                    if ok.size:
                        n0, m0, s0 = moments.get(f.name, (0.0, 0.0, 0.0))
                        n1, m1 = float(ok.size), float(ok.mean())
                        s1 = float(((ok - m1) ** 2).sum())
                        n = n0 + n1
                        moments[f.name] = (n, m0 + (m1 - m0) * n1 / n, s0 + s1 + (m1 - m0) ** 2 * n0 * n1 / n)
                else:
                    x = np.asarray(col)
                    if x.ndim != 2 or self.dims.get(f.name, x.shape[1]) != x.shape[1]:
                        raise DataError(f"a vector field needs rows of one width, got shape {x.shape} after width "
                                        f"{self.dims.get(f.name)}", field=f.name)
                    self.dims[f.name] = int(x.shape[1])
        for f in self.fields:
            if f.kind == "numeric":
                n, mean, m2 = moments.get(f.name, (0.0, 0.0, 0.0))
                std = float(np.sqrt(m2 / n)) if n else 1.0
                self.stats[f.name] = (mean if n else 0.0, std if std > 0 else 1.0)
        for name, share in (high_cardinality or {}).items():
            if len(counts.get(name, ())) > share * rows:
                self.fields = [replace(f, min_count=2) if f.name == name else f for f in self.fields]
        self._keep_vocab(counts)
        self.__dict__["rows_"] = rows
        return self

    def _keep_vocab(self, counts: dict[str, dict[str, int]]) -> None:
        for name, table in counts.items():
            min_count = self.field(name).min_count
            # most frequent first, ties by token: the same training data always gives the same indices
            kept = sorted((t for t, c in table.items() if c >= min_count), key=lambda t: (-table[t], t))
            self.vocab[name] = kept

    # -- encoding any part --------------------------------------------------------------------------------------
    def encode(self, frame: Frame) -> Encoded:
        self._check_fitted()
        arrays = {f.name: self.encode_column(f, _column(frame, f)) for f in self.fields}
        return Encoded(arrays, np.asarray(frame.labels, dtype=np.float32), np.asarray(frame.users))

    def _check_fitted(self) -> None:
        if not self.vocab and any(f.kind in TOKEN_KINDS for f in self.fields):
            raise DataError("the schema is not fitted: call fit(train) first")

    def encode_column(self, f: Field, col: Any) -> np.ndarray:
        """One field's raw column (an array, or :class:`Ragged` for tags / sequences) as the model reads it.

        Row ``r`` of the result depends on row ``r`` of ``col`` only: encoding an entity table once and
        gathering its rows equals encoding the gathered rows (what the serving cache relies on)."""
        self._check_fitted()
        if f.kind in TOKEN_KINDS:
            idx = self._lookup(self.table_of(f.name)).index(col.values if isinstance(col, Ragged) else col)
            return idx if f.kind == "categorical" else _pad(idx, col.offsets, self.lengths[f.name],
                                                            recent=f.kind == "sequence")
        if f.kind == "numeric":
            x = np.asarray(col, dtype=np.float64)
            mean, std = self.stats[f.name]
            with np.errstate(invalid="ignore", over="ignore"):  # a near-zero std: clipped, no float32 inf
                z = np.clip((x - mean) / std, -MAX_STANDARDISED, MAX_STANDARDISED)
            return np.where(np.isfinite(x), z, 0.0).astype(np.float32)  # missing / infinite values: 0 (the mean)
        x = np.asarray(col, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dims[f.name]:
            raise DataError(f"expected vectors of width {self.dims[f.name]}, got shape {x.shape}", field=f.name)
        if f.normalize == "l2":  # rows of zeros (no content) stay zeros
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
        return x

    def token_index(self, name: str, values: Any) -> np.ndarray:
        """Indices of raw tokens of field ``name`` (its table's vocabulary; unknown ones: the OOV bucket)."""
        return self._lookup(self.table_of(name)).index(values)

    def _lookup(self, table: str) -> _TokenIndex:
        cache = self.__dict__.setdefault("_lookups", {})
        if table not in cache:
            cache[table] = _TokenIndex(self.vocab[table])
        return cache[table]

    # -- persistence ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"fields": [asdict(f) for f in self.fields], "vocab": self.vocab,
                "stats": {k: list(v) for k, v in self.stats.items()}, "dims": self.dims, "lengths": self.lengths}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        return cls([Field(**{"normalize": "none", **f}) for f in d["fields"]], dict(d["vocab"]), {k: tuple(v) for k, v in d["stats"].items()},
                   dict(d["dims"]), dict(d["lengths"]))


class _TokenIndex:
    """Token -> index (known tokens from 2, anything else the OOV bucket) by binary search over the sorted
    vocabulary: vectorised, and fast for the few hundred rows of a serving request as for a whole part."""

    def __init__(self, tokens: list[str]) -> None:
        arr = np.asarray(tokens, dtype=str) if tokens else np.zeros(0, dtype="<U1")
        self.order = np.argsort(arr, kind="stable")
        self.sorted = arr[self.order]

    def index(self, values: Any) -> np.ndarray:
        if isinstance(values, pa.Array):
            values = values.to_numpy(zero_copy_only=False)
        v = np.asarray(values)
        if v.dtype.kind != "U":
            v = v.astype(str)  # object arrays of str (the tables' columns) convert in C
        if not len(self.sorted):
            return np.full(len(v), OOV, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.sorted, v), len(self.sorted) - 1)
        hit = self.sorted[pos] == v
        return np.where(hit, self.order[pos] + 2, OOV).astype(np.int64)


def _pad(idx: np.ndarray, offsets: np.ndarray, width: int, *, recent: bool) -> np.ndarray:
    """Flat token indices -> ``(rows, width)``, 0-padded on the right; ``recent`` keeps each row's last tokens."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    keep = np.minimum(lengths, width)
    start = offsets[:-1] + (lengths - keep if recent else 0)
    out = np.zeros((n, width), dtype=np.int64)
    rows = np.repeat(np.arange(n), keep)
    cols = np.arange(int(keep.sum())) - np.repeat(np.cumsum(keep) - keep, keep)
    out[rows, cols] = idx[np.repeat(start, keep) + cols]
    return out


@dataclass
class Encoded:
    """A part encoded by a fitted :class:`Schema`: ``arrays`` (name -> int64 / float32 array), labels, users."""

    arrays: dict[str, np.ndarray]
    labels: np.ndarray
    users: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: np.ndarray) -> dict[str, Any]:
        import torch

        return {k: torch.from_numpy(np.ascontiguousarray(v[rows])) for k, v in self.arrays.items()}
