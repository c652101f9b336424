"""Multi-vector retrieval with fixed dimensional encodings (MUVERA) and CRISP-style pruning of the sets.

Reference: Dhulipala, Hadian, Jayaram, Lee, Mirrokni, "MUVERA: Multi-Vector Retrieval via Fixed Dimensional
Encodings", NeurIPS 2024. Written from the paper. A multi-vector user / query ``Q`` and item / document ``P`` are
sets of ``d``-dimensional vectors scored by Chamfer similarity ``CH(Q, P) = sum_{q in Q} max_{p in P} <q, p>``.
The FDE maps each set to one vector whose inner product approximates it:

* per repetition ``r`` (``reps`` of them), ``k_sim`` Gaussian hyperplanes (SimHash) cut R^d into ``B = 2^k_sim``
  partitions; ``phi(x)`` is the bit pattern of the signs of ``<g_i, x>``;
* an optional inner projection ``psi(x) = S x / sqrt(d_proj)`` with ``S`` random +-1 (``d_proj``; 0: identity);
* the query block of partition ``k`` is the *sum* of ``psi(q)`` over the ``q`` in ``k``; the document block the
  *average* of ``psi(p)`` over the ``p`` in ``k`` and, for an empty partition (``fill_empty``), ``psi(p)`` of the
  ``p`` whose bit pattern is nearest to ``k`` in Hamming distance;
* blocks are concatenated over partitions and repetitions (``reps * B * d_proj`` dims); an optional final
  projection to ``d_final`` dims.

Without projections each repetition's ``<F_q(Q), F_doc(P)>`` is a sum over ``q`` of an average of ``<q, p>`` over
some ``p``, so it never exceeds ``CH(Q, P)``; it equals it when every ``q`` shares its partition with its best
``p`` alone. Retrieval (:class:`MuveraIndex`): document FDEs in one FAISS inner-product index (exact flat),
the top ``candidates`` of a query's FDE re-ranked by exact Chamfer (:func:`chamfer_candidates`).

Deviations: the final projection is a Count-Sketch (each coordinate added, with a random sign, to one output
coordinate: unbiased for inner products like the paper's dense +-1 matrix, at O(D) cost per vector); partitions
are numbered by the plain binary value of the sign bits (the numbering does not change the encoding; the
empty-partition fill uses Hamming distance between bit patterns, as the paper); no ball-carving or PQ of the FDEs.

CRISP-lite (:func:`prune_sets`): after Veneroso et al., "CRISP: Clustering Multi-Vector Representations for
Denoising and Pruning" (2025), which learns clustered multi-vectors end to end; here each set is k-means-clustered
post hoc to at most ``C`` centroids (no training), shrinking documents ``m / C`` times before encoding / scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError


def _as_sets(sets: np.ndarray, lengths: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(N, m, d) float32`` padded sets and their ``(N, m)`` validity mask (``lengths``: vectors per set)."""
    x = np.ascontiguousarray(sets, dtype=np.float32)
    if x.ndim != 3:
        raise ConfigError(f"expected (N, m, d) padded vector sets, got shape {x.shape}")
    n, m, _ = x.shape
    if lengths is None:
        return x, np.ones((n, m), dtype=bool)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.shape != (n,) or lengths.min(initial=1) < 1 or lengths.max(initial=0) > m:
        raise ConfigError(f"lengths: expected {n} values from 1 to {m}")
    return x, np.arange(m)[None, :] < lengths[:, None]


@dataclass(frozen=True)
class FDEConfig:
    dim: int
    """Dimension of the input vectors."""
    k_sim: int = 4
    """SimHash bits per repetition: 2^k_sim partitions."""
    reps: int = 10
    """Independent repetitions (concatenated)."""
    d_proj: int = 0
    """Inner projection dimension (0: none, each block keeps ``dim`` dims)."""
    d_final: int = 0
    """Final projection dimension (0: none)."""
    fill_empty: bool = True
    """Documents: fill an empty partition with the vector nearest to it in Hamming distance."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim < 1 or self.reps < 1 or not 0 <= self.k_sim <= 12 or self.d_proj < 0 or self.d_final < 0:
            raise ConfigError(f"FDE: dim, reps >= 1, k_sim in [0, 12], d_proj, d_final >= 0; got {self}")

    @property
    def block(self) -> int:
        return self.d_proj or self.dim

    @property
    def partitions(self) -> int:
        return 2 ** self.k_sim

    @property
    def raw_dim(self) -> int:
        return self.reps * self.partitions * self.block

    @property
    def out_dim(self) -> int:
        return self.d_final or self.raw_dim


class FDEEncoder:
    """Seeded fixed dimensional encodings of vector sets (:class:`FDEConfig`)."""

    def __init__(self, config: FDEConfig) -> None:
        self.config = c = config
        rng = np.random.default_rng(c.seed)
        self.planes = rng.standard_normal((c.reps, c.dim, c.k_sim)).astype(np.float32)
        self.proj = None
        if c.d_proj:
            signs = rng.integers(0, 2, (c.reps, c.dim, c.d_proj)).astype(np.float32) * 2 - 1
            self.proj = signs / np.float32(np.sqrt(c.d_proj))
        self.sketch = None
        if c.d_final:
            cols = rng.integers(0, c.d_final, c.raw_dim)
            vals = (rng.integers(0, 2, c.raw_dim) * 2 - 1).astype(np.float32)
            self.sketch = sp.csr_matrix((vals, (np.arange(c.raw_dim), cols)), shape=(c.raw_dim, c.d_final))
        b = np.arange(c.partitions)
        self.hamming = np.array([[bin(int(i) ^ int(j)).count("1") for j in b] for i in b], dtype=np.int32)

    @property
    def out_dim(self) -> int:
        return self.config.out_dim

    def encode_queries(self, sets: np.ndarray, lengths: np.ndarray | None = None, *, batch: int = 2048
                       ) -> np.ndarray:
        return self._encode(sets, lengths, document=False, batch=batch)

    def encode_documents(self, sets: np.ndarray, lengths: np.ndarray | None = None, *, batch: int = 2048
                         ) -> np.ndarray:
        return self._encode(sets, lengths, document=True, batch=batch)

    def _encode(self, sets: np.ndarray, lengths: np.ndarray | None, *, document: bool, batch: int) -> np.ndarray:
        x, mask = _as_sets(sets, lengths)
        if x.shape[2] != self.config.dim:
            raise ConfigError(f"FDE: vectors of dimension {x.shape[2]}, the encoder's is {self.config.dim}")
        out = np.empty((len(x), self.out_dim), dtype=np.float32)
        for s in range(0, len(x), batch):
            raw = self._raw(x[s: s + batch], mask[s: s + batch], document)
            out[s: s + batch] = raw if self.sketch is None else np.asarray((self.sketch.T @ raw.T).T)
        return out

    def _raw(self, x: np.ndarray, mask: np.ndarray, document: bool) -> np.ndarray:
        c = self.config
        n, m, _ = x.shape
        weights = 1 << np.arange(c.k_sim)
        blocks = []
        for r in range(c.reps):
            code = ((x @ self.planes[r]) > 0).astype(np.int64) @ weights if c.k_sim else np.zeros((n, m), np.int64)
            y = x if self.proj is None else x @ self.proj[r]  # (n, m, block)
            onehot = (code[..., None] == np.arange(c.partitions)) & mask[..., None]  # (n, m, B)
            hot = onehot.astype(np.float32)
            sums = np.matmul(hot.transpose(0, 2, 1), y)  # (n, B, block): per-partition sums
            if document:
                counts = hot.sum(axis=1)  # (n, B)
                sums /= np.maximum(counts, 1.0)[..., None]
                if c.fill_empty:
                    empty = counts == 0
                    if empty.any():
                        dist = np.where(mask[..., None], self.hamming[code], np.iinfo(np.int32).max)  # (n, m, B)
                        nearest = dist.argmin(axis=1)  # (n, B): ties -> the first vector
                        fill = np.take_along_axis(y, nearest[..., None], axis=1)  # (n, B, block)
                        sums = np.where(empty[..., None], fill, sums)
            blocks.append(sums.reshape(n, -1))
        return np.concatenate(blocks, axis=1)


# --------------------------------------------------------------------------------------------
# Chamfer similarity
# --------------------------------------------------------------------------------------------
def _pad_with_first(block: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Padding rows replaced by each set's first vector: a repeated vector leaves every max unchanged, so the
    scores need no mask."""
    return block if mask.all() else np.where(mask[..., None], block, block[:, :1, :])


def chamfer(queries: np.ndarray, docs: np.ndarray, q_lengths: np.ndarray | None = None,
            d_lengths: np.ndarray | None = None, *, batch: int = 4096) -> np.ndarray:
    """Exact Chamfer similarity of every query set with every document set: ``(nq, N) float32`` (documents in
    blocks of ``batch``: one BLAS product of all query vectors with a block's vectors, a max, a sum)."""
    q, qm = _as_sets(queries, q_lengths)
    d, dm = _as_sets(docs, d_lengths)
    nq, mq, dim = q.shape
    flat_q = (q * qm[..., None]).reshape(nq * mq, dim).T.copy()  # padded query vectors are 0: they add 0
    out = np.empty((nq, len(d)), dtype=np.float32)
    for s in range(0, len(d), batch):
        block = _pad_with_first(d[s: s + batch], dm[s: s + batch])
        sims = (block.reshape(-1, dim) @ flat_q).reshape(len(block), d.shape[1], nq, mq).max(axis=1)
        out[:, s: s + batch] = sims.sum(axis=2).T
    return out


def chamfer_candidates(queries: np.ndarray, docs: np.ndarray, candidates: np.ndarray,
                       q_lengths: np.ndarray | None = None, d_lengths: np.ndarray | None = None) -> np.ndarray:
    """Exact Chamfer of query ``i`` with the documents ``candidates[i]`` (``(nq, K)`` ids): ``(nq, K)``."""
    q, qm = _as_sets(queries, q_lengths)
    d, dm = _as_sets(docs, d_lengths)
    cand = np.asarray(candidates, dtype=np.int64)
    out = np.empty(cand.shape, dtype=np.float32)
    for i in range(len(q)):
        block = _pad_with_first(d[cand[i]], dm[cand[i]])
        out[i] = (block @ q[i][qm[i]].T).max(axis=1).sum(axis=1)  # (K, md, mq') -> (K,)
    return out


# --------------------------------------------------------------------------------------------
# retrieval and pruning
# --------------------------------------------------------------------------------------------
class MuveraIndex:
    """Document FDEs in one FAISS ``IndexFlatIP``; :meth:`search` re-ranks the FDE top ``candidates`` by Chamfer."""

    def __init__(self, docs: np.ndarray, encoder: FDEEncoder, lengths: np.ndarray | None = None) -> None:
        from ..serve.index import _faiss

        self.docs, self.mask = _as_sets(docs, lengths)
        self.lengths = self.mask.sum(axis=1)
        self.encoder = encoder
        fde = encoder.encode_documents(self.docs, self.lengths)
        self.index = _faiss().IndexFlatIP(fde.shape[1])
        self.index.add(fde)

    @property
    def fde_bytes_per_doc(self) -> int:
        return 4 * self.encoder.out_dim

    def search(self, queries: np.ndarray, k: int, *, candidates: int = 1000, q_lengths: np.ndarray | None = None,
               rerank: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (nq, k), scores (nq, k))``, best first: the FDE top ``candidates``, then exact Chamfer."""
        q, qm = _as_sets(queries, q_lengths)
        fq = self.encoder.encode_queries(q, qm.sum(axis=1))
        n = min(max(k, candidates if rerank else k), len(self.docs))
        scores, ids = self.index.search(fq, n)
        if not rerank:
            return ids[:, :k], scores[:, :k]
        exact = chamfer_candidates(q, self.docs, ids, qm.sum(axis=1), self.lengths)
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(ids, order, axis=1), np.take_along_axis(exact, order, axis=1)


def prune_sets(sets: np.ndarray, max_vectors: int, lengths: np.ndarray | None = None, *, iters: int = 8,
               seed: int = 0, normalize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """CRISP-lite: k-means each set down to at most ``max_vectors`` centroids (sets that small stay as they are).
    Returns ``(centroids (N, C, d), lengths (N,))``; ``normalize`` rescales centroids to unit norm."""
    x, mask = _as_sets(sets, lengths)
    n, m, d = x.shape
    c = int(max_vectors)
    if c < 1:
        raise ConfigError(f"max_vectors: expected >= 1, got {max_vectors}")
    if m <= c:
        return x.copy(), mask.sum(axis=1)
    rng = np.random.default_rng(seed)
    lens = mask.sum(axis=1)
    # initial centroids: C distinct valid vectors of each set, chosen at random
    keys = np.where(mask, rng.random((n, m)), 2.0)
    start = np.argsort(keys, axis=1)[:, :c]
    cent = np.take_along_axis(x, start[..., None], axis=1)  # (n, c, d)
    valid = np.arange(c)[None, :] < np.minimum(lens, c)[:, None]
    for _ in range(iters):
        dist = (np.einsum("nmd,nmd->nm", x, x)[..., None] - 2 * np.matmul(x, cent.transpose(0, 2, 1))
                + np.einsum("ncd,ncd->nc", cent, cent)[:, None, :])
        dist = np.where(valid[:, None, :], dist, np.inf)
        assign = dist.argmin(axis=2)  # (n, m)
        hot = ((assign[..., None] == np.arange(c)) & mask[..., None]).astype(np.float32)
        counts = hot.sum(axis=1)  # (n, c)
        sums = np.matmul(hot.transpose(0, 2, 1), x)  # (n, c, d)
        cent = np.where(counts[..., None] > 0, sums / np.maximum(counts, 1.0)[..., None], cent)
    if normalize:
        cent /= np.maximum(np.linalg.norm(cent, axis=2, keepdims=True), 1e-12)
    return np.ascontiguousarray(cent, dtype=np.float32), np.minimum(lens, c)


def planted_sets(num_docs: int, num_queries: int, *, doc_vectors: int = 16, query_vectors: int = 16, dim: int = 64,
                 topics: int = 1000, topics_per_doc: int = 3, noise: float = 0.7, seed: int = 0
                 ) -> dict[str, Any]:
    """Synthetic multi-vector sets with structure: each document draws its unit vectors around a few of
    ``topics`` random unit centres (Gaussian ``noise``); each query copies some vectors of a random target
    document (with noise) and adds vectors of that document's topics. Returns ``docs``, ``doc_lengths``,
    ``queries``, ``query_lengths``, ``targets``."""
    rng = np.random.default_rng(seed)

    def unit(a: np.ndarray) -> np.ndarray:
        return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)

    centres = unit(rng.standard_normal((topics, dim)))
    doc_topics = rng.integers(0, topics, (num_docs, topics_per_doc))
    pick = np.take_along_axis(doc_topics, rng.integers(0, topics_per_doc, (num_docs, doc_vectors)), axis=1)
    docs = np.empty((num_docs, doc_vectors, dim), dtype=np.float32)
    for s in range(0, num_docs, 8192):  # bounded temporaries
        e = min(num_docs, s + 8192)
        docs[s:e] = unit(centres[pick[s:e]] + noise * rng.standard_normal((e - s, doc_vectors, dim)) / np.sqrt(dim))
    doc_lengths = rng.integers(doc_vectors // 2, doc_vectors + 1, num_docs)
    targets = rng.integers(0, num_docs, num_queries)
    half = query_vectors // 2
    copies = docs[targets[:, None], rng.integers(0, doc_vectors // 2, (num_queries, half))]
    copies = unit(copies + 0.5 * noise * rng.standard_normal(copies.shape) / np.sqrt(dim))
    qt = np.take_along_axis(doc_topics[targets], rng.integers(0, topics_per_doc, (num_queries, query_vectors - half)),
                            axis=1)
    rest = unit(centres[qt] + noise * rng.standard_normal((num_queries, query_vectors - half, dim)) / np.sqrt(dim))
    queries = np.concatenate([copies, rest], axis=1)
    return {"docs": docs, "doc_lengths": doc_lengths, "queries": queries,
            "query_lengths": np.full(num_queries, query_vectors), "targets": targets}
