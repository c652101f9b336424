"""GF-CF: graph filtering collaborative filtering.

Reference: Shen et al., "How Powerful is Graph Convolution for Recommendation?", CIKM 2021.

With binary X (users x items), degrees d_u, d_i and R = D_u^{-1/2} X D_i^{-1/2}:

    linear filter:        P = R^T R                                   (item-item, sparse)
    ideal low-pass:       V = top-``num_factors`` right singular vectors of R  (I x f)
    score(u) = x_u P + alpha * x_u D_i^{-1/2} V V^T D_i^{1/2}

No training loop; the SVD dominates the fit. ``svd_solver="arpack"`` is exact (SciPy ``svds``);
``"randomized"`` (Halko et al. 2011, with power iterations) is faster on large catalogs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..._compute import rows_times, spmm
from ...config import check
from ...options import FitOptions
from ..base import HistoryRecommender


@dataclass(frozen=True)
class GFCFConfig:
    alpha: float = 0.3
    """Weight of the ideal low-pass filter (the paper's default)."""
    num_factors: int = 256
    """Singular vectors kept by the ideal low-pass filter (the paper's default)."""
    svd_solver: Literal["arpack", "randomized"] = "arpack"
    """How to compute the top singular vectors."""
    power_iterations: int = 6
    """Power iterations of the randomized solver."""

    def __post_init__(self) -> None:
        check(self.alpha >= 0, "alpha", f"must be >= 0, got {self.alpha}")
        check(self.num_factors >= 1, "num_factors", f"must be >= 1, got {self.num_factors}")


def _inv_sqrt(d: np.ndarray) -> np.ndarray:
    out = np.zeros_like(d, dtype=np.float64)
    nz = d > 0
    out[nz] = d[nz] ** -0.5
    return out


def randomized_right_singular_vectors(
    a: sp.csr_matrix, k: int, *, oversample: int = 32, power_iterations: int = 6, seed: int = 0
) -> np.ndarray:
    """Approximate top-``k`` right singular vectors of ``a`` as an ``(n_cols, k)`` array."""
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    q = rng.standard_normal((n, k + oversample))
    at = a.T.tocsr()
    for _ in range(power_iterations):
        q, _ = np.linalg.qr(at @ (a @ q))
    y = a @ q  # (m, l)
    _, _, vt_small = np.linalg.svd(y, full_matrices=False)
    return (q @ vt_small.T)[:, :k]


def normalised_adjacency(x: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """``R = D_u^{-1/2} X D_i^{-1/2}`` (float64 CSR) of a binary ``x`` and the item degrees ``d_i``."""
    xb = sp.csr_matrix(x, dtype=np.float64)
    du = np.asarray(xb.sum(axis=1)).ravel()
    di = np.asarray(xb.sum(axis=0)).ravel()
    return sp.csr_matrix(sp.diags(_inv_sqrt(du)) @ xb @ sp.diags(_inv_sqrt(di))), di


def ideal_low_pass_basis(r: sp.csr_matrix, num_factors: int, solver: str, power_iterations: int,
                         seed: int) -> np.ndarray:
    """Top right singular vectors of ``r`` as an ``(n_items, f)`` array (``f = 0`` gives an empty basis)."""
    f = min(num_factors, min(r.shape) - 1)
    if f < 1:
        return np.zeros((r.shape[1], 0))
    if solver == "arpack":
        rng = np.random.default_rng(seed)
        _, _, vt = spla.svds(r, k=f, v0=rng.standard_normal(min(r.shape)), solver="arpack")
        return vt.T
    return randomized_right_singular_vectors(r, f, power_iterations=power_iterations, seed=seed)


class GFCF(HistoryRecommender):
    name = "gfcf"
    Config = GFCFConfig

    linear_: sp.csr_matrix  # (I, I) R^T R
    left_: np.ndarray  # (I, f) D_i^{-1/2} V
    right_: np.ndarray  # (f, I) V^T D_i^{1/2}

    def _fit_matrix(self, x: sp.csr_matrix, options: FitOptions) -> None:
        r, di = normalised_adjacency(x)
        self.linear_ = sp.csr_matrix(r.T @ r, dtype=np.float32)
        v = ideal_low_pass_basis(r, self.config.num_factors if self.config.alpha else 0,
                                 self.config.svd_solver, self.config.power_iterations, options.seed)
        self.left_ = (v * _inv_sqrt(di)[:, None]).astype(np.float32)
        self.right_ = (v * np.sqrt(di)[:, None]).T.astype(np.float32) * np.float32(self.config.alpha)

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        rows = sp.csr_matrix(rows, dtype=np.float32)
        scores = rows_times(rows, self.linear_, self, "_dense_linear")
        if self.left_.shape[1]:
            scores += spmm(rows, self.left_) @ self.right_
        return scores.astype(np.float32, copy=False)

    def _matrix_state(self) -> dict[str, Any]:
        return {"linear": self.linear_, "left": self.left_, "right": self.right_}
