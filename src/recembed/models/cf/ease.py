"""EASE: Embarrassingly Shallow Autoencoders for sparse data.

Reference: Harald Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.

Closed form for binary X (users x items) and L2 weight lambda:

    G = X^T X + lambda I,   P = G^{-1},   B_ij = -P_ij / P_jj,   B_jj = 0,   score(u) = x_u B

G is symmetric positive definite, so P is computed with a Cholesky factorisation in place (LAPACK
potrf + potri) rather than a general inverse: one dense ``I x I`` matrix in memory, about a third of
the flops of ``np.linalg.inv``. The default lambda is RecBole's (250); the paper tunes it per
dataset. Memory is planned before anything is allocated: a catalog too large for the machine raises
:class:`~recembed.errors.ResourceError` with the numbers, instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from ..._compute import HAVE_TORCH, spmm, torch
from ...config import check
from ...errors import ResourceError
from ...options import FitOptions
from ...tuning.space import Float
from .. import _memory
from ..base import HistoryRecommender


@dataclass(frozen=True)
class EASEConfig:
    l2: float = 250.0
    """L2 weight lambda added to the Gram matrix's diagonal."""
    dtype: Literal["auto", "float32", "float64"] = "auto"
    """Precision of the inversion; ``auto``: float64 when memory allows, else float32."""

    #: ``recembed tune ease``: what the search varies (docs/tuning.md); closed form, so no pruning
    SEARCH_SPACE: ClassVar[dict[str, Any]] = {
        "l2": Float(1.0, 5000.0, log=True, doc="lambda; the paper tunes it per dataset over 1e2-1e4"),
    }

    def __post_init__(self) -> None:
        check(self.l2 > 0, "l2", f"must be > 0, got {self.l2}")


SCIPY_LAPACK_MAX_ITEMS = 32768
#: n with n * n < 2**31: LP64 LAPACK addresses the dense matrix with 32-bit offsets. torch's in-place Cholesky
#: inverse worked at 40,981 items (gowalla) and died with SIGSEGV at 57,289 (amazon-beauty-cf) here.
LAPACK_MAX_ITEMS = 46340


def _spd_inverse_inplace(g: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite C-ordered matrix, overwriting ``g``.

    With torch (MKL) the Cholesky factorisation and inverse run in place on the column-major view of
    ``g`` (no second matrix in memory). Without torch, SciPy's LAPACK potrf + potri are used; that
    path is limited to ``SCIPY_LAPACK_MAX_ITEMS`` (SciPy's bundled 32-bit-index OpenBLAS crashed in
    potri at 40,981 items here).
    """
    if HAVE_TORCH:
        col_major = torch.from_numpy(g).T  # g is symmetric: its transpose view is the same matrix
        _, info = torch.linalg.cholesky_ex(col_major, out=(col_major, torch.empty((), dtype=torch.int32)))
        if int(info) != 0:
            raise np.linalg.LinAlgError(f"Gram matrix is not positive definite (cholesky info={int(info)})")
        torch.cholesky_inverse(col_major, out=col_major)
        return g
    if g.shape[0] > SCIPY_LAPACK_MAX_ITEMS:
        raise ResourceError(f"EASE over {g.shape[0]:,} items needs torch installed (pip install torch)")
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (g,))
    c, info = potrf(g.T, lower=True, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"Gram matrix is not positive definite (potrf info={info})")
    inv, info = potri(c, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inversion failed (potri info={info})")
    # only the lower triangle is valid: mirror it, a block of columns at a time (bounded memory)
    n = inv.shape[0]
    step = 1024
    for j0 in range(0, n, step):
        j1 = min(n, j0 + step)
        blk = inv[j0:j1, j0:j1]
        blk[:] = np.tril(blk) + np.tril(blk, -1).T
        inv[j0:j1, j1:] = inv[j1:, j0:j1].T
    return inv.T


def dense_gram(x: sp.csr_matrix, dtype: type, block: int = 2048) -> np.ndarray:
    """``X^T X`` as a dense C-ordered ``(I, I)`` array, built a block of columns at a time.

    A single sparse ``X^T X`` holds every co-occurring item pair (on gowalla several GiB of indices and
    values) next to its dense copy, roughly doubling the peak; per block only that block's pairs exist.
    """
    xf = sp.csr_matrix(x, dtype=dtype)
    xt = xf.T.tocsr()
    xc = xf.tocsc()
    n = xf.shape[1]
    g = np.empty((n, n), dtype=dtype)
    for j0 in range(0, n, block):
        j1 = min(n, j0 + block)
        g[:, j0:j1] = (xt @ xc[:, j0:j1]).toarray()
    return g


class EASE(HistoryRecommender):
    name = "ease"
    Config = EASEConfig

    weights_: np.ndarray  # (I, I) float32, zero diagonal

    def _fit_matrix(self, x: sp.csr_matrix, options: FitOptions) -> None:
        n = x.shape[1]
        if n > LAPACK_MAX_ITEMS:
            raise ResourceError(f"{self.name.upper()} over {n:,} items: the dense {n:,} x {n:,} inversion exceeds "
                                f"32-bit LAPACK indexing (at most {LAPACK_MAX_ITEMS:,} items; it crashed the process "
                                "at 57,289); use itemknn or gfcf, or filter the catalog")
        dtype = self.config.dtype
        if dtype == "auto":
            # float64 work matrix plus the float32 result, or float32 throughout
            dtype = "float64" if n * n * 12 * 1.1 <= _memory.budget_bytes(options) else "float32"
        itemsize = 8 if dtype == "float64" else 4
        _memory.require(
            int(n * n * (itemsize + (4 if itemsize == 8 else 0)) * 1.1), options,
            f"EASE over {n:,} items (a dense {n:,} x {n:,} {dtype} Gram matrix)",
            "use itemknn or gfcf, or filter the catalog",
        )
        g = dense_gram(x, np.float64 if dtype == "float64" else np.float32)
        self._add_to_gram(g)
        g[np.diag_indices(n)] += self.config.l2
        p = _spd_inverse_inplace(g)
        diag = np.diag(p).copy()
        p /= -diag[None, :]
        p[np.diag_indices(n)] = 0.0
        self.weights_ = p.astype(np.float32, copy=False)

    def _add_to_gram(self, g: np.ndarray) -> None:
        """Hook for variants that add to ``X^T X`` in place before the ridge term (CEASE: item content)."""

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        return spmm(rows, self.weights_)

    def _matrix_state(self) -> dict[str, Any]:
        return {"weights": self.weights_}
