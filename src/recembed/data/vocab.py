"""Vocabulary: external ids <-> contiguous indices, mapped once at the data boundary.

External ids are always strings (``"196"``, ``"B00O47ILVA"``); models only ever see indices
``0 .. len(vocab) - 1``. Order is the order of first appearance in the values a vocabulary is built
from, so building from the same file twice gives the same indices.

Unknown-id policy (``unknown=``):

* ``"error"`` (default): looking up an id that is not in the vocabulary raises :class:`UnknownIdError`
  naming the entity, the first offending ids and how many there are;
* ``"ignore"``: unknown ids map to ``-1``; the caller drops or handles them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError, UnknownIdError

UnknownPolicy = Literal["error", "ignore"]


def _as_string_array(values: Iterable[object] | np.ndarray | pa.Array) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        arr = values
    else:
        arr = pa.array(np.asarray(values) if not isinstance(values, np.ndarray) else values)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    return arr


class Vocabulary:
    """A bijection between external string ids and indices ``0..n-1``.

    Parameters
    ----------
    ids : sequence of str
        The external ids, in index order. Must be unique and not null.
    name : str
        The entity this vocabulary is for (``"user"``, ``"item"``); used in error messages.
    """

    def __init__(self, ids: Sequence[str] | np.ndarray | pa.Array, name: str = "item") -> None:
        arr = _as_string_array(ids)
        if arr.null_count:
            raise DataError(f"{name} vocabulary: ids must not be missing ({arr.null_count} null)")
        uniq = pc.unique(arr)
        if len(uniq) != len(arr):
            counts = pc.value_counts(arr)
            dup = [str(v["values"]) for v in counts.to_pylist() if v["counts"] > 1][:5]
            raise DataError(f"{name} vocabulary: duplicate ids {dup}")
        self.name = name
        self._ids = arr
        self._hash: str | None = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_values(cls, *value_arrays: Iterable[object] | np.ndarray | pa.Array, name: str = "item") -> Vocabulary:
        """Build from one or more arrays of ids, keeping the order of first appearance."""
        arrays = [_as_string_array(v) for v in value_arrays]
        merged = pa.concat_arrays(arrays) if len(arrays) > 1 else arrays[0]
        merged = merged.drop_null()
        return cls(pc.unique(merged), name=name)

    @classmethod
    def from_range(cls, n: int, name: str = "item") -> Vocabulary:
        """The identity vocabulary ``"0" .. str(n-1)``."""
        return cls(pa.array([str(i) for i in range(n)]), name=name)

    # -- lookups ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return bool(pc.is_in(pa.array([str(external_id)]), value_set=self._ids)[0].as_py())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._ids.equals(other._ids)

    def __repr__(self) -> str:
        return f"Vocabulary(name={self.name!r}, size={len(self)})"

    @property
    def ids(self) -> np.ndarray:
        """External ids in index order, as a NumPy array of Python strings."""
        return np.asarray(self._ids.to_pylist(), dtype=object)

    @property
    def arrow(self) -> pa.Array:
        return self._ids

    def index(
        self,
        external_ids: Iterable[object] | np.ndarray | pa.Array,
        *,
        unknown: UnknownPolicy = "error",
        source: str | None = None,
    ) -> np.ndarray:
        """Map external ids to indices ``(N,) int64``.

        ``unknown="error"`` raises :class:`UnknownIdError` (naming ``source`` when given);
        ``unknown="ignore"`` returns ``-1`` for unknown ids.
        """
        arr = _as_string_array(external_ids)
        idx = pc.index_in(arr, value_set=self._ids)
        missing = idx.null_count
        out = idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        if missing and unknown == "error":
            bad_pos = np.flatnonzero(out < 0)
            examples = [str(arr[int(p)].as_py()) for p in bad_pos[:5]]
            where = f" in {source}" if source else ""
            raise UnknownIdError(
                f"{missing} {self.name} id(s){where} not in the {self.name} vocabulary "
                f"(size {len(self)}), e.g. {examples} at row(s) {[int(p) for p in bad_pos[:5]]}"
            )
        if unknown not in ("error", "ignore"):
            raise ValueError(f"unknown id policy must be 'error' or 'ignore', got {unknown!r}")
        return out

    def lookup(self, idx: int | Sequence[int] | np.ndarray) -> np.ndarray | str:
        """Map indices back to external ids."""
        if np.isscalar(idx):
            i = int(idx)  # type: ignore[arg-type]
            if not 0 <= i < len(self):
                raise IndexError(f"{self.name} index {i} out of range [0, {len(self)})")
            return str(self._ids[i].as_py())
        ind = np.asarray(idx, dtype=np.int64)
        if ind.size and (ind.min() < 0 or ind.max() >= len(self)):
            raise IndexError(f"{self.name} index out of range [0, {len(self)})")
        return np.asarray(self._ids.take(pa.array(ind.ravel())).to_pylist(), dtype=object).reshape(ind.shape)

    # -- identity -----------------------------------------------------------------------------
    def content_hash(self) -> str:
        """SHA-256 of the ids in order: keys caches of anything indexed by this vocabulary."""
        if self._hash is None:
            joined = "\n".join(self._ids.to_pylist())
            self._hash = hashlib.sha256(f"{self.name}:{len(self)}\n{joined}".encode()).hexdigest()
        return self._hash

    def to_list(self) -> list[str]:
        return self._ids.to_pylist()
