"""Residual k-means: level ``l`` clusters what the centroids of levels ``< l`` leave unexplained.

``x ~ C_1[c_1] + C_2[c_2] + ... + C_L[c_L]``: level 1 runs k-means on the vectors, level 2 on the residuals
``x - C_1[c_1]``, and so on; an item's semantic ID is ``(c_1, ..., c_L)``. This is the training-free baseline
that RQ-VAE papers compare to (e.g. "residual k-means" / RQ-KMeans in OneRec, Deng et al. 2025, and the
k-means codebook initialisation of TIGER, Rajput et al. 2023).

k-means (:func:`kmeans`) is Lloyd's algorithm from a k-means++ start (Arthur & Vassilvitskii 2007),
vectorised in torch: distances come from one matmul per chunk of rows, centroid sums from ``index_add``.
A cluster left empty is re-seeded with the point farthest from its centroid (then the next farthest, ...).

Deviations / choices: no mini-batches (every Lloyd step sees all items; Amazon-size catalogs take seconds);
k-means++ draws one candidate per step (not the "greedy" variant); ``balanced=True`` replaces the last
assignment of each level by a capacity-constrained one (each code takes at most ``ceil(n / K)`` items,
greedily by distance), which spreads items over codes and lowers collisions at some cost in distortion.
Everything draws from a NumPy generator seeded by ``seed``, so a fit is deterministic for a seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import check
from .autoencoder import StepBar

_CHUNK_ELEMENTS = 1 << 24  # rows x centroids per distance block (64 MiB of float32)


@dataclass(frozen=True)
class RKMeansConfig:
    """Residual k-means tokenizer."""

    levels: int = 3
    """Number of code levels (residual k-means rounds)."""
    codebook: int = 256
    """Centroids per level (codes ``0 .. codebook-1``)."""
    iterations: int = 50
    """Most Lloyd iterations per level."""
    tol: float = 1e-4
    """Stop a level when its inertia falls by less than this fraction in one iteration."""
    balanced: bool = False
    """Capacity-constrained final assignment: at most ``ceil(n / codebook)`` items per code and level."""

    def __post_init__(self) -> None:
        check(self.levels >= 1, "levels", f"must be >= 1, got {self.levels}")
        check(self.codebook >= 2, "codebook", f"must be >= 2, got {self.codebook}")
        check(self.iterations >= 1, "iterations", f"must be >= 1, got {self.iterations}")
        check(self.tol >= 0, "tol", f"must be >= 0, got {self.tol}")


# ---------------------------------------------------------------------------------------------- k-means
def squared_distances(x: torch.Tensor, centroids: torch.Tensor, x_sq: torch.Tensor | None = None) -> torch.Tensor:
    """``(n, k)`` squared Euclidean distances (clamped at 0) from one matmul."""
    x_sq = (x * x).sum(1) if x_sq is None else x_sq
    d = x_sq[:, None] - 2.0 * (x @ centroids.T) + (centroids * centroids).sum(1)[None, :]
    return d.clamp_min_(0.0)


def nearest(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index ``(n,)`` of each row's nearest centroid and the squared distance ``(n,)`` to it (chunked)."""
    n = x.shape[0]
    step = max(1, _CHUNK_ELEMENTS // max(1, centroids.shape[0]))
    idx = torch.empty(n, dtype=torch.int64)
    dist = torch.empty(n, dtype=x.dtype)
    c_sq = (centroids * centroids).sum(1)
    for s in range(0, n, step):
        xb = x[s : s + step]
        d = ((xb * xb).sum(1)[:, None] - 2.0 * (xb @ centroids.T) + c_sq[None, :]).clamp_min_(0.0)
        dist[s : s + step], idx[s : s + step] = d.min(dim=1)
    return idx, dist


def kmeans_plus_plus(x: torch.Tensor, k: int, rng: np.random.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn with probability proportional to its squared distance.

    Runs in NumPy: ``k`` steps of one pass over the rows each, too small to profit from torch's threads.
    """
    xs = x.numpy()
    n = xs.shape[0]
    picks = np.empty(k, dtype=np.int64)
    picks[0] = rng.integers(n)
    d2 = ((xs - xs[picks[0]]) ** 2).sum(1, dtype=np.float64)
    for j in range(1, k):
        cum = np.cumsum(d2)
        total = float(cum[-1])
        if total <= 0.0:  # fewer distinct points than centres: duplicates (they stay empty)
            picks[j] = rng.integers(n)
        else:
            picks[j] = min(int(np.searchsorted(cum, rng.random() * total, side="right")), n - 1)
        np.minimum(d2, ((xs - xs[picks[j]]) ** 2).sum(1, dtype=np.float64), out=d2)
    return x[torch.from_numpy(picks)].clone()


def kmeans(x: torch.Tensor, k: int, *, rng: np.random.Generator, iterations: int = 50,
           tol: float = 1e-4) -> tuple[torch.Tensor, dict[str, Any]]:
    """Lloyd's k-means on ``x (n, d)`` from a k-means++ start; returns ``(centroids (k, d), facts)``."""
    x = x.float()
    centroids = kmeans_plus_plus(x, k, rng)
    prev = math.inf
    reseeded = it = 0
    for it in range(1, iterations + 1):
        assign, dist = nearest(x, centroids)
        inertia = float(dist.double().sum())
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        centroids = sums / counts.clamp_min(1)[:, None].to(x.dtype)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):
            # re-seed with the points farthest from their centroid (only points that are not on one)
            far = torch.argsort(dist, descending=True)[: len(empty)]
            far = far[dist[far] > 0]
            centroids[empty[: len(far)]] = x[far]
            reseeded += len(far)
        if (not len(empty) or not len(far)) and math.isfinite(prev) and prev - inertia <= tol * prev:
            break
        prev = inertia
    _, dist = nearest(x, centroids)
    return centroids, {"iterations": it, "inertia": float(dist.double().sum()), "reseeded": reseeded}


def balanced_assign(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Assignment with at most ``ceil(n / k)`` rows per centroid: greedy over (row, centroid) pairs by distance.

    Rows are handled in order of how much they would lose by not getting their nearest centroid, each taking
    its nearest centroid with room left. ``O(n k log k)``.
    """
    n, k = x.shape[0], centroids.shape[0]
    cap = math.ceil(n / k)
    order_rows, prefs = [], []
    step = max(1, _CHUNK_ELEMENTS // k)
    for s in range(0, n, step):
        d = squared_distances(x[s : s + step], centroids)
        pref = torch.argsort(d, dim=1)  # (b, k)
        best2 = torch.gather(d, 1, pref[:, :2]) if k > 1 else torch.gather(d, 1, pref[:, :1]).repeat(1, 2)
        order_rows.append(best2[:, 1] - best2[:, 0])
        prefs.append(pref)
    regret = torch.cat(order_rows).numpy()
    pref_all = torch.cat(prefs).numpy()
    room = np.full(k, cap, dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    for row in np.argsort(-regret, kind="stable"):
        for c in pref_all[row]:
            if room[c] > 0:
                room[c] -= 1
                out[row] = c
                break
    return torch.from_numpy(out)


# ---------------------------------------------------------------------------------------------- tokenizer
class ResidualKMeans:
    """``fit(x)`` learns ``codebooks_ (L, K, d)``; ``encode(x) -> codes (n, L)``; ``decode(codes) -> (n, d)``."""

    def __init__(self, config: RKMeansConfig | None = None) -> None:
        self.config = config or RKMeansConfig()
        self.codebooks_: torch.Tensor | None = None
        self.info_: dict[str, Any] = {}

    def fit(self, x: np.ndarray, *, seed: int = 0, progress: bool = False) -> ResidualKMeans:
        c = self.config
        rng = np.random.default_rng(seed)
        residual = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).clone()
        total = float((residual.double() ** 2).sum())
        books, levels = [], []
        bar = StepBar(progress, c.levels, "residual k-means")
        with bar:
            for level in range(c.levels):
                t = time.perf_counter()
                centroids, facts = kmeans(residual, c.codebook, rng=rng, iterations=c.iterations, tol=c.tol)
                assign = balanced_assign(residual, centroids) if c.balanced else nearest(residual, centroids)[0]
                residual -= centroids[assign]
                books.append(centroids)
                left = float((residual.double() ** 2).sum())
                levels.append({**facts, "level": level, "seconds": round(time.perf_counter() - t, 4),
                               "relative_residual": left / total if total > 0 else 0.0})
                bar.advance(f"level {level + 1}: {facts['iterations']} it, residual {left / max(total, 1e-12):.3f}")
        self.codebooks_ = torch.stack(books)
        self.info_ = {"levels": levels}
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        if self.codebooks_ is None:
            from ..errors import NotFittedError

            raise NotFittedError("ResidualKMeans.encode before fit")
        residual = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).clone()
        codes = []
        for centroids in self.codebooks_:
            assign = (balanced_assign(residual, centroids) if self.config.balanced
                      else nearest(residual, centroids)[0])
            residual -= centroids[assign]
            codes.append(assign)
        return torch.stack(codes, 1).numpy()

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Sum of each level's centroid: the reconstruction of the vectors from their codes."""
        assert self.codebooks_ is not None
        codes_t = torch.as_tensor(np.asarray(codes, dtype=np.int64))
        out = sum(self.codebooks_[lv][codes_t[:, lv]] for lv in range(codes_t.shape[1]))
        return out.numpy()
