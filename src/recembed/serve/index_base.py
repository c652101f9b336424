"""The index interface (:class:`ItemIndex`), exact search (:class:`ExactIndex`) and the top-k helpers; the
FAISS kinds and the registry are in :mod:`.index`, which re-exports all of this (see its docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, DataError

Exclude = Sequence[np.ndarray | Sequence[int] | None] | None


def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(B, M)`` scores -> the ``k`` best columns per row ``(B, k)``, best first; ``-inf`` entries and
    missing columns come back as ``-1`` / ``-inf``."""
    b, m = scores.shape
    idx = np.full((b, k), -1, dtype=np.int64)
    out = np.full((b, k), -np.inf, dtype=np.float32)
    kk = min(k, m)
    if kk == 0 or b == 0:
        return idx, out
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < m else np.tile(np.arange(m), (b, 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    part, vals = np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)
    bad = ~np.isfinite(vals)
    part[bad] = -1
    idx[:, :kk], out[:, :kk] = part, vals
    return idx, out


def topk_vector(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`topk_rows` of one row: ``(M,)`` scores -> the ``k`` best ``(k,)`` items and scores, best first."""
    m = scores.shape[0]
    idx = np.full(k, -1, dtype=np.int64)
    out = np.full(k, -np.inf, dtype=np.float32)
    kk = min(k, m)
    if kk == 0:
        return idx, out
    part = np.argpartition(scores, m - kk)[m - kk:] if kk < m else np.arange(m)
    vals = scores[part]
    order = np.argsort(-vals, kind="stable")
    part, vals = part[order], vals[order]
    part[~np.isfinite(vals)] = -1
    idx[:kk], out[:kk] = part, vals
    return idx, out


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` for a sorted ``sorted_set`` by binary search (no sort of ``values``)."""
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[pos] == values


def _exclusions(exclude: Exclude, b: int) -> list[np.ndarray]:
    if exclude is None:
        return [np.zeros(0, dtype=np.int64)] * b
    if len(exclude) != b:
        raise DataError(f"exclude has {len(exclude)} rows for {b} queries", field="exclude")
    return [np.zeros(0, dtype=np.int64) if e is None else np.asarray(e, dtype=np.int64).ravel() for e in exclude]


class ItemIndex:
    """Base class: subclasses implement ``_build`` and ``_raw_search`` (and ``save`` / ``_load`` for FAISS)."""

    kind: ClassVar[str]
    approximate: ClassVar[bool] = True

    def __init__(self, vectors: np.ndarray, **params: Any) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise DataError(f"expected a non-empty (N, D) matrix of item vectors, got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise DataError("item vectors hold NaN/inf values")
        self.vectors = vectors
        self._params = self._resolve(params, vectors.shape)
        self._build()

    # -- subclass hooks ---------------------------------------------------------------------------
    def _resolve(self, params: dict[str, Any], shape: tuple[int, int]) -> dict[str, Any]:
        if params:
            raise ConfigError(f"{self.kind} index takes no parameters, got {sorted(params)}")
        return {}

    def _build(self) -> None:
        pass

    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _add(self, vectors: np.ndarray) -> None:
        pass

    # -- the interface ----------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(items={len(self)}, dim={self.dim}, {self._params})"

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append items; returns their new indices."""
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if vectors.shape[1] != self.dim or not np.isfinite(vectors).all():
            raise DataError(f"expected finite (n, {self.dim}) vectors, got shape {vectors.shape}")
        start = len(self)
        self._add(vectors)
        self.vectors = np.concatenate([self.vectors, vectors])
        return np.arange(start, len(self), dtype=np.int64)

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DataError(f"queries must be (B, {self.dim}), got shape {np.shape(queries)}")
        return q

    def search(self, queries: np.ndarray, k: int, *, exclude: Exclude = None,
               candidates: np.ndarray | Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = self._check_queries(queries)
        if k < 1:
            raise DataError(f"k must be >= 1, got {k}", field="k")
        excl = _exclusions(exclude, len(q))
        if candidates is not None:
            return self._search_candidates(q, k, excl, np.asarray(candidates, dtype=np.int64).ravel())
        if len(q) == 1:
            items, scores = self._one(q, k, np.sort(excl[0]))
            return items[None], scores[None]
        if not self.approximate:
            return self._exact(q, k, excl)
        return self._approximate(q, k, excl)

    def _one(self, q: np.ndarray, k: int, excl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One query ``(1, D)``, its exclusions sorted: ``(k,)`` items and scores."""
        if not self.approximate:
            scores = self.vectors @ q[0]
            if len(excl):
                scores[excl] = -np.inf
            return topk_vector(scores, k)
        n = min(len(self), k + len(excl))
        items, scores = self._filtered_one(q, n, k, excl)
        if items[-1] < 0:  # short (padding sits at the end): a wider net, as in _approximate, then exact
            want = min(k, self._admissible(excl))
            if n < len(self) and int((items >= 0).sum()) < want:
                items, scores = self._filtered_one(q, min(len(self), max(4 * n, n + 64)), k, excl)
            if int((items >= 0).sum()) < want:
                scores = self.vectors @ q[0]
                if len(excl):
                    scores[excl] = -np.inf
                items, scores = topk_vector(scores, k)
        return items, scores

    def _admissible(self, excl: np.ndarray) -> int:
        """Items a query with exclusions ``excl`` may get back."""
        excl = np.asarray(excl, dtype=np.int64)
        return len(self) - len(np.unique(excl[(excl >= 0) & (excl < len(self))]))

    def _filtered_one(self, q: np.ndarray, n: int, k: int, excl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rerank = int(self._params.get("rerank", 1))
        raw, raw_scores = self._raw_search(q, min(len(self), n * rerank))
        raw, scores = raw[0], raw_scores[0]
        if rerank > 1:
            scores = self.vectors[np.maximum(raw, 0)] @ q[0]
        bad = raw < 0
        if len(excl):
            bad |= _member(raw, excl)
        pos, top = topk_vector(np.where(bad, np.float32(-np.inf), scores).astype(np.float32, copy=False), k)
        return np.where(pos >= 0, raw[np.maximum(pos, 0)], -1), top

    # -- shared search paths ----------------------------------------------------------------------
    def _exact(self, q: np.ndarray, k: int, excl: list[np.ndarray], batch_size: int = 256
               ) -> tuple[np.ndarray, np.ndarray]:
        items = np.empty((len(q), k), dtype=np.int64)
        scores = np.empty((len(q), k), dtype=np.float32)
        for s in range(0, len(q), batch_size):  # bounded memory: (batch, N) scores at a time
            block = q[s: s + batch_size] @ self.vectors.T
            rows_excl = excl[s: s + batch_size]
            lens = [len(e) for e in rows_excl]
            if sum(lens):
                block[np.repeat(np.arange(len(block)), lens), np.concatenate(rows_excl)] = -np.inf
            items[s: s + batch_size], scores[s: s + batch_size] = topk_rows(block, k)
        return items, scores

    def _search_candidates(self, q: np.ndarray, k: int, excl: list[np.ndarray], cand: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
        if cand.size and (cand.min() < 0 or cand.max() >= len(self)):
            raise DataError(f"candidate index out of range [0, {len(self)})", field="candidates")
        cand = np.unique(cand)
        block = q @ self.vectors[cand].T  # (B, C)
        for row, e in enumerate(excl):
            if len(e):
                block[row, np.isin(cand, e)] = -np.inf
        pos, scores = topk_rows(block, k)
        return np.where(pos >= 0, cand[np.maximum(pos, 0)], -1), scores

    def _approximate(self, q: np.ndarray, k: int, excl: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        n = min(len(self), k + max((len(e) for e in excl), default=0))
        items, scores = self._filtered(q, n, k, excl)
        short = np.flatnonzero((items < 0).any(axis=1))
        if len(short) and n < len(self):  # a row lost too many hits to exclusions / the graph: wider net
            wide = min(len(self), max(4 * n, n + 64))
            items[short], scores[short] = self._filtered(q[short], wide, k, [excl[i] for i in short])
        if len(short):  # still short of what exact search would return: exact for those rows
            want = np.array([min(k, self._admissible(excl[i])) for i in short])
            rows = short[(items[short] >= 0).sum(axis=1) < want]
            if len(rows):
                items[rows], scores[rows] = self._exact(q[rows], k, [excl[i] for i in rows])
        return items, scores

    def _filtered(self, q: np.ndarray, n: int, k: int, excl: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        rerank = int(self._params.get("rerank", 1))
        raw, raw_scores = self._raw_search(q, min(len(self), n * rerank))
        if rerank > 1:  # exact scores of the raw hits from the stored vectors
            safe = np.maximum(raw, 0)
            raw_scores = np.einsum("bd,bnd->bn", q, self.vectors[safe]).astype(np.float32)
        raw_scores = np.where(raw >= 0, raw_scores, -np.inf).astype(np.float32)
        for row, e in enumerate(excl):
            if len(e):
                raw_scores[row, np.isin(raw[row], e)] = -np.inf
        pos, scores = topk_rows(raw_scores, k)
        items = np.where(pos >= 0, np.take_along_axis(raw, np.maximum(pos, 0), axis=1), -1)
        return items, scores

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        raise ConfigError(f"the {self.kind} index has nothing to save (it is rebuilt from the vectors)")

    @classmethod
    def load(cls, path: str | Path, vectors: np.ndarray, params: dict[str, Any]) -> ItemIndex:
        obj = cls.__new__(cls)
        obj.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        obj._params = dict(params)
        obj._load(Path(path))
        return obj

    def _load(self, path: Path) -> None:
        raise NotImplementedError


class ExactIndex(ItemIndex):
    """Brute-force inner product over all items, batched: the reference every other index is measured against."""

    kind = "exact"
    approximate = False
