"""Interactions: parallel arrays of (user, item, [rating], [timestamp], [weight]) indices.

Everything is columnar NumPy; sparse CSR views and per-user histories are derived on demand and
cached (the arrays are read-only after construction, so the caches cannot go stale).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import DataError


def _readonly(a: np.ndarray | None, dtype: type) -> np.ndarray | None:
    if a is None:
        return None
    out = np.ascontiguousarray(a, dtype=dtype)
    if out is a:
        out = out.copy()
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Interactions:
    """A set of user-item events over fixed index spaces.

    Attributes
    ----------
    user_idx, item_idx : (N,) int32
        Positions in the user and item vocabularies.
    num_users, num_items : int
        Sizes of the index spaces (the vocabularies), not just of the ids that occur.
    rating, timestamp, weight : (N,) float or None
        Optional per-event values. ``timestamp`` orders histories; when absent, file order is used.
    """

    user_idx: np.ndarray
    item_idx: np.ndarray
    num_users: int
    num_items: int
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None
    weight: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, bound in (("user_idx", self.num_users), ("item_idx", self.num_items)):
            raw = np.asarray(getattr(self, name))  # check before the int32 cast, which would wrap or truncate
            if raw.size and (raw.min() < 0 or raw.max() >= bound):
                raise DataError(f"{name} out of range [0, {bound})", field=name)
            if raw.dtype.kind == "f" and not np.array_equal(raw, np.trunc(raw)):
                raise DataError(f"{name} must hold integers", field=name)
        u = _readonly(self.user_idx, np.int32)
        i = _readonly(self.item_idx, np.int32)
        object.__setattr__(self, "user_idx", u)
        object.__setattr__(self, "item_idx", i)
        n = len(u)
        if len(i) != n:
            raise DataError(f"user_idx has {n} entries but item_idx has {len(i)}")
        for name, dtype in (("rating", np.float32), ("timestamp", np.float64), ("weight", np.float32)):
            arr = _readonly(getattr(self, name), dtype)
            if arr is not None and len(arr) != n:
                raise DataError(f"{name} has {len(arr)} entries, expected {n}", field=name)
            if arr is not None and not np.isfinite(arr).all():
                row = int(np.flatnonzero(~np.isfinite(arr))[0])
                raise DataError(f"{arr[row]} (NaN/inf) value at interaction {row}; expected a finite number",
                                field=name)
            object.__setattr__(self, name, arr)
        if n:
            if u.min() < 0 or u.max() >= self.num_users:
                raise DataError(f"user_idx out of range [0, {self.num_users})", field="user_idx")
            if i.min() < 0 or i.max() >= self.num_items:
                raise DataError(f"item_idx out of range [0, {self.num_items})", field="item_idx")

    # -- basic --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.user_idx)

    def __repr__(self) -> str:
        extras = [n for n in ("rating", "timestamp", "weight") if getattr(self, n) is not None]
        return (
            f"Interactions(n={len(self)}, num_users={self.num_users}, num_items={self.num_items}"
            + (f", with {'+'.join(extras)}" if extras else "")
            + ")"
        )

    @classmethod
    def empty(cls, num_users: int, num_items: int) -> Interactions:
        z = np.zeros(0, dtype=np.int32)
        return cls(z, z, num_users, num_items)

    @classmethod
    def from_csr(cls, matrix: sp.spmatrix | sp.sparray) -> Interactions:
        """Events from a user x item sparse matrix ``(num_users, num_items)``: one event per stored non-zero
        (row = user index, column = item index), in row order. Values other than 1 become ``weight``."""
        if not sp.issparse(matrix):
            raise DataError(f"expected a scipy.sparse user x item matrix, got {type(matrix).__name__}")
        if matrix.ndim != 2:
            raise DataError(f"expected a 2-D user x item matrix, got shape {matrix.shape}")
        m = sp.csr_matrix(matrix, dtype=np.float64)
        m.sum_duplicates()
        m.eliminate_zeros()
        if not np.isfinite(m.data).all():
            raise DataError("the matrix holds NaN/inf values; expected finite weights", field="weight")
        users = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        weight = None if np.all(m.data == 1.0) else m.data
        return cls(users, m.indices, int(m.shape[0]), int(m.shape[1]), weight=weight)

    def subset(self, mask_or_idx: np.ndarray) -> Interactions:
        """The events selected by a boolean mask or an index array."""
        sel = np.asarray(mask_or_idx)

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[sel]

        return Interactions(
            self.user_idx[sel], self.item_idx[sel], self.num_users, self.num_items,
            take(self.rating), take(self.timestamp), take(self.weight),
        )

    @staticmethod
    def concat(parts: list[Interactions]) -> Interactions:
        """Concatenate events over the same index spaces (optional columns kept if all have them)."""
        if not parts:
            raise ValueError("concat needs at least one part")
        nu, ni = parts[0].num_users, parts[0].num_items
        if any(p.num_users != nu or p.num_items != ni for p in parts):
            raise DataError("cannot concatenate interactions over different index spaces")

        def cat(name: str) -> np.ndarray | None:
            arrs = [getattr(p, name) for p in parts]
            return None if any(a is None for a in arrs) else np.concatenate(arrs)

        return Interactions(
            np.concatenate([p.user_idx for p in parts]), np.concatenate([p.item_idx for p in parts]),
            nu, ni, cat("rating"), cat("timestamp"), cat("weight"),
        )

    # -- derived views ------------------------------------------------------------------------
    def pairs_key(self) -> np.ndarray:
        """``user * num_items + item`` as int64: a unique key per (user, item) pair."""
        return self.user_idx.astype(np.int64) * self.num_items + self.item_idx

    def csr(self, values: str = "binary") -> sp.csr_matrix:
        """User x item matrix ``(num_users, num_items) float32``, rows sorted.

        ``values="binary"``: 1 for every pair that occurs (duplicates collapse to 1);
        ``"count"``: the number of events per pair; ``"rating"`` / ``"weight"``: the last value.
        """
        key = ("csr", values)
        if key not in self._cache:
            if values == "binary" or values == "count":
                data = np.ones(len(self), dtype=np.float32)
                m = sp.csr_matrix(
                    (data, (self.user_idx, self.item_idx)), shape=(self.num_users, self.num_items)
                )
                m.sum_duplicates()
                if values == "binary":
                    m.data[:] = 1.0
            elif values in ("rating", "weight"):
                vals = getattr(self, values)
                if vals is None:
                    raise DataError(f"these interactions have no {values} column", field=values)
                order = np.lexsort((np.arange(len(self)), self.pairs_key()))
                k = self.pairs_key()[order]
                last = np.ones(len(k), dtype=bool)
                last[:-1] = k[1:] != k[:-1]
                sel = order[last]
                m = sp.csr_matrix(
                    (vals[sel], (self.user_idx[sel], self.item_idx[sel])),
                    shape=(self.num_users, self.num_items), dtype=np.float32,
                )
            else:
                raise ValueError(f"values must be binary, count, rating or weight; got {values!r}")
            m.sort_indices()
            self._cache[key] = m
        return self._cache[key]

    def user_counts(self) -> np.ndarray:
        """Number of distinct items per user, ``(num_users,) int64``."""
        return np.diff(self.csr().indptr).astype(np.int64)

    def item_counts(self) -> np.ndarray:
        """Number of events per item (duplicates counted), ``(num_items,) int64``."""
        return np.bincount(self.item_idx, minlength=self.num_items).astype(np.int64)

    def order(self) -> np.ndarray:
        """Event order grouped by user, chronological within a user (stable: file order on ties)."""
        if "order" not in self._cache:
            t = self.timestamp if self.timestamp is not None else np.zeros(len(self))
            self._cache["order"] = np.lexsort((np.arange(len(self)), t, self.user_idx))
        return self._cache["order"]

    def histories(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-user item histories in time order as ``(indptr (num_users+1,), items (N,))``.

        ``items[indptr[u]:indptr[u+1]]`` is user ``u``'s history, oldest first.
        """
        order = self.order()
        counts = np.bincount(self.user_idx, minlength=self.num_users)
        indptr = np.zeros(self.num_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr, self.item_idx[order]

    def num_duplicates(self) -> int:
        """Events whose (user, item) pair occurred earlier."""
        return len(self) - int(self.csr().nnz)
