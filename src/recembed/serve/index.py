"""Inner-product item indexes behind one interface: exact (the reference) and FAISS (Flat, HNSW, IVF-PQ, and
``codes``: a compressed run's own PQ / OPQ / IVF-PQ index, see :mod:`recembed.compact`).

Every index keeps the item vectors it was built on (``vectors``, ``(N, D) float32``) and answers

    search(queries (B, D), k, exclude=None, candidates=None) -> (items (B, k) int64, scores (B, k) float32)

best first; rows with fewer than ``k`` admissible items are padded with ``-1`` / ``-inf`` (the service drops
the padding and reports the real ``count``).

* ``exclude``: per query row, item indices that must not come back (seen items, explicit exclusions);
* ``candidates``: item indices the answer is restricted to (shared by the rows): scored exactly over those
  items, whatever the index kind (a restricted set is small; approximate search would waste its budget).

Approximate kinds over-fetch ``k + len(largest exclusion)`` neighbours, drop excluded ones, and (``rerank``)
re-score their raw hits exactly from ``vectors``; a row left short is searched again with a wider net, and a
row still short of the admissible items (``k`` near or above the item count, a graph that does not reach every
item) is answered by exact search: an approximate index never returns fewer items than exact would.
One query (``B == 1``, the server's case) takes a lean path with the same semantics: a matrix-vector product
(exact) or one FAISS call, exclusions by binary search, and a top-k over one vector.
``add`` appends items (new items from content) to both the vectors and the FAISS structure. FAISS indexes are
saved in FAISS's own binary format (no pickle); the vectors are not part of that file (they live in the
bundle's ``embeddings.safetensors``).

The interface, exact search and the top-k helpers live in :mod:`.index_base` (re-exported here).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .index_base import (  # noqa: F401 - re-exported: the interface, exact search and the top-k helpers
    ExactIndex,
    Exclude,
    ItemIndex,
    topk_rows,
    topk_vector,
)


def _faiss():  # noqa: ANN202
    try:
        import faiss
    except ImportError:
        raise ConfigError("FAISS indexes need faiss-cpu (pip install 'recembed[serve]'); or use --kind exact") \
            from None
    return faiss


def set_index_threads(threads: int) -> None:
    """OpenMP threads FAISS searches with (1 for a server answering one query per request)."""
    try:
        import faiss
    except ImportError:
        return
    faiss.omp_set_num_threads(int(threads))


class _FaissIndex(ItemIndex):
    _index: Any

    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        scores, items = self._index.search(queries, n)
        return items.astype(np.int64, copy=False), scores

    def _add(self, vectors: np.ndarray) -> None:
        self._index.add(vectors)

    def _build(self) -> None:
        self._index = self._make(_faiss())
        if not self._index.is_trained:
            self._index.train(self.vectors)
        self._index.add(self.vectors)
        self._configure()

    def _configure(self) -> None:
        pass

    def save(self, path: str | Path) -> None:
        _faiss().write_index(self._index, str(path))

    def _load(self, path: Path) -> None:
        faiss = _faiss()
        try:
            self._index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise DataError(f"unreadable FAISS index ({str(exc).splitlines()[0]})", path=path) from None
        if self._index.ntotal != len(self.vectors) or self._index.d != self.vectors.shape[1]:
            raise DataError(f"FAISS index holds {self._index.ntotal} x {self._index.d} vectors, the bundle "
                            f"{self.vectors.shape[0]} x {self.vectors.shape[1]}", path=path)
        self._configure()

    def _make(self, faiss):  # noqa: ANN001, ANN202
        raise NotImplementedError


def _take(params: dict[str, Any], defaults: dict[str, Any], kind: str) -> dict[str, Any]:
    unknown = set(params) - set(defaults)
    if unknown:
        raise ConfigError(f"{kind} index: unknown parameter(s) {sorted(unknown)}; known: {sorted(defaults)}")
    out = {**defaults, **{k: v for k, v in params.items() if v is not None}}
    for key, value in out.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{kind} index: {key} must be an integer >= 1, got {value!r}")
        out[key] = int(value)
    return out


class FlatIndex(_FaissIndex):
    """FAISS ``IndexFlatIP``: exact, FAISS's BLAS kernels."""

    kind = "flat"

    def _make(self, faiss):  # noqa: ANN001, ANN202
        return faiss.IndexFlatIP(self.dim)


class HNSWIndex(_FaissIndex):
    """FAISS ``IndexHNSWFlat`` with the inner-product metric. ``m``: graph degree; ``ef_construction``,
    ``ef_search``: candidate-list sizes at build and query time (recall vs speed)."""

    kind = "hnsw"

    def _resolve(self, params: dict[str, Any], shape: tuple[int, int]) -> dict[str, Any]:
        return _take(params, {"m": 32, "ef_construction": 200, "ef_search": 128}, self.kind)

    def _make(self, faiss):  # noqa: ANN001, ANN202
        index = faiss.IndexHNSWFlat(self.dim, self._params["m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self._params["ef_construction"]
        return index

    def _configure(self) -> None:
        self._index.hnsw.efSearch = self._params["ef_search"]


class IVFPQIndex(_FaissIndex):
    """FAISS ``IndexIVFPQ`` (inner product): ``nlist`` coarse cells, ``pq_m`` sub-quantizers of ``nbits`` bits,
    ``nprobe`` cells visited per query; ``rerank`` x the hits re-scored exactly from the stored vectors."""

    kind = "ivfpq"

    def _resolve(self, params: dict[str, Any], shape: tuple[int, int]) -> dict[str, Any]:
        n, d = shape
        pq_m = max(m for m in range(1, d + 1) if d % m == 0 and m <= max(1, d // 2))  # ~2 dims per code
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # FAISS wants >= 39 training points per cell
        nbits = max(1, min(8, int(math.log2(max(2, n // 39)))))  # >= 39 training points per PQ centroid
        out = _take(params, {"nlist": nlist, "pq_m": pq_m, "nbits": nbits, "nprobe": max(1, min(nlist, 16)),
                             "rerank": 10}, self.kind)
        if d % out["pq_m"]:
            raise ConfigError(f"ivfpq index: pq_m={out['pq_m']} must divide the dimension {d}")
        return out

    def _make(self, faiss):  # noqa: ANN001, ANN202
        p = self._params
        self._quantizer = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIVFPQ(self._quantizer, self.dim, p["nlist"], p["pq_m"], p["nbits"],
                                faiss.METRIC_INNER_PRODUCT)

    def _configure(self) -> None:
        self._index.nprobe = self._params["nprobe"]


class CodesIndex(_FaissIndex):
    """A compressed run's own FAISS index (PQ / OPQ / IVF-PQ codes, ``recembed compress``), stored by its bundle:
    searches score ``q . decoded(x)`` on the codes (no re-rank); ``nprobe`` for IVF. Not built from vectors."""

    kind = "codes"

    @classmethod
    def from_faiss(cls, index: Any, vectors: np.ndarray, params: dict[str, Any] | None = None) -> CodesIndex:
        obj = cls.__new__(cls)
        obj.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        obj._params = _take(dict(params or {}), {"nprobe": 1}, cls.kind) if params else {}
        obj._index = index
        obj._configure()
        return obj

    def _make(self, faiss):  # noqa: ANN001, ANN202
        raise ConfigError("the codes index holds a compressed run's PQ codes (`recembed compress`, then `recembed "
                          "bundle`); to build an index from vectors use flat, hnsw or ivfpq")

    def _configure(self) -> None:
        ivf = _faiss().try_extract_index_ivf(self._index)
        if ivf is not None and "nprobe" in self._params:
            ivf.nprobe = self._params["nprobe"]


INDEXES: dict[str, type[ItemIndex]] = {"exact": ExactIndex, "flat": FlatIndex, "hnsw": HNSWIndex,
                                       "ivfpq": IVFPQIndex, "codes": CodesIndex}


def index_class(kind: str) -> type[ItemIndex]:
    try:
        return INDEXES[kind]
    except KeyError:
        raise ConfigError(f"unknown index kind {kind!r}; available: {sorted(INDEXES)}") from None


def build_index(kind: str, vectors: np.ndarray, **params: Any) -> ItemIndex:
    """Build an index of ``kind`` (``exact``, ``flat``, ``hnsw``, ``ivfpq``) over ``(N, D)`` item vectors."""
    return index_class(kind)(vectors, **params)


def load_index(kind: str, path: str | Path | None, vectors: np.ndarray, params: dict[str, Any]) -> ItemIndex:
    """An index saved by :meth:`ItemIndex.save` (``exact`` needs no file: it is rebuilt)."""
    cls = index_class(kind)
    if path is None or cls is ExactIndex:
        return cls(vectors, **params)
    return cls.load(path, vectors, params)


def measure_index(index: ItemIndex, queries: np.ndarray, k: int = 10, *, reference: ItemIndex | None = None,
                  batch_size: int = 256) -> dict[str, float]:
    """Recall@k of ``index`` against exact search on ``queries``, and its throughput: one query per call (a
    server's case) and in batches. Also the exact index's one-query throughput, for comparison."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    reference = reference or ExactIndex(index.vectors)
    truth, _ = reference.search(queries, k)
    found, _ = index.search(queries, k)
    hits = sum(len(np.intersect1d(t[t >= 0], f[f >= 0])) for t, f in zip(truth, found))
    recall = hits / max(1, int((truth >= 0).sum()))

    def single_qps(idx: ItemIndex) -> float:
        t = time.perf_counter()
        for q in queries:
            idx.search(q[None], k)
        return len(queries) / (time.perf_counter() - t)

    t = time.perf_counter()
    for s in range(0, len(queries), batch_size):
        index.search(queries[s: s + batch_size], k)
    batch_qps = len(queries) / (time.perf_counter() - t)
    return {f"recall@{k}": round(recall, 4), "qps_single": round(single_qps(index), 1),
            "qps_batch": round(batch_qps, 1), "exact_qps_single": round(single_qps(reference), 1)}
