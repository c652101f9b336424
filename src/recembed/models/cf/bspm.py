"""BSPM: blurring-sharpening process models for collaborative filtering.

Reference: Choi, Hong, Lee, Kang and Park, "Blurring-Sharpening Process Models for Collaborative
Filtering", SIGIR 2023 (reference code: github.com/jeongwhanchoi/BSPM).

With binary X (users x items), R = D_u^{-1/2} X D_i^{-1/2}, the linear filter P = R^T R and the
ideal low-pass filter L = D_i^{-1/2} V V^T D_i^{1/2} (V: top ``factor_dim`` right singular vectors
of R), a user's history row r is processed by three ODEs, each solved over a fixed grid of
``k`` steps up to time ``t``:

    blurring:       ds/dt = s P - s       s(0) = r            -> b = s(t_b)
    ideal low-pass: ds/dt = s L - s       s(0) = r            -> l = s(t_idl)
    sharpening:     ds/dt = - s P         s(0) = b + beta l   -> the scores s(t_s)

``final_sharpening=True`` is the paper's early merge (BSPM-EM: the low-pass output enters the
sharpening); ``False`` is the late merge (BSPM-LM: scores = sharpen(b) + beta l).
``t_point_combination`` averages the states at every grid point of blurring and sharpening
instead of taking the last one. With one Euler step of length 1 blurring gives r P and the ideal
low-pass gives r L, which is GF-CF's pair of filters; sharpening then subtracts multiples of
higher powers of P.

Deviations from the reference code: the solvers are written out here (Euler, or classical RK4;
torchdiffeq's "rk4" is the 3/8 rule, which on these linear autonomous ODEs gives the identical
degree-4 Taylor step); P is applied as R^T (R s) instead of a dense I x I matrix unless the
catalog is small (dense P within 256 MiB); items without training interactions get
D_i^{1/2} = 0 instead of the reference's division by zero.

Defaults by the data's density (not in the paper, whose scripts set each dataset by hand): ``factor_dim``,
``idl_beta``, ``solver_shr`` and ``t_s`` left unset take the reference code's ML-1M setting (256 factors,
beta 0.3, one Euler step to t = 1) on data at least ``DENSE_DENSITY`` (1%) dense, and its Gowalla setting (448
factors, beta 0.2, RK4 to t = 2.5) on sparser data: on ml-100k (6.3% dense) the first gives test NDCG@10 0.2181
and the second 0.1887; on amazon-beauty-cf (0.01%) 0.0184 and 0.0238, on tiktok-mm and gowalla (0.08%) the
second is the better too (benchmarks/RESULTS.md). The values used are recorded in ``config.json`` under
``auto_resolved``; a value set explicitly is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from ..._compute import DENSE_LIMIT_BYTES, HAVE_TORCH, torch_csr
from ...config import check
from ...options import FitOptions
from ..base import HistoryRecommender
from .gfcf import _inv_sqrt, ideal_low_pass_basis, normalised_adjacency

Solver = Literal["euler", "rk4"]
STATE_BYTES = 16 * 2**20  # ~100 gowalla users: smaller chunks measured faster (cache), 4.1 s vs 9.1 s at 256 MiB
DENSE_DENSITY = 0.01  # interactions / (users x items) at or above which the dense (ML-1M) setting is used
#: the reference code's per-dataset settings of the density-dependent fields (see the header)
SETTINGS: dict[str, dict[str, Any]] = {
    "dense": {"factor_dim": 256, "idl_beta": 0.3, "solver_shr": "euler", "t_s": 1.0},
    "sparse": {"factor_dim": 448, "idl_beta": 0.2, "solver_shr": "rk4", "t_s": 2.5},
}


@dataclass(frozen=True)
class BSPMConfig:
    factor_dim: int | None = None
    """Singular vectors kept by the ideal low-pass filter (unset: 256 on data >= 1% dense, else 448)."""
    idl_beta: float | None = None
    """Weight of the ideal low-pass output (unset: 0.3 on data >= 1% dense, else 0.2)."""
    t_idl: float = 1.0
    """End time of the ideal low-pass ODE."""
    k_idl: int = 1
    """Steps of the ideal low-pass ODE."""
    solver_idl: Solver = "euler"
    """Ideal low-pass solver (``euler`` or ``rk4``)."""
    t_b: float = 1.0
    """End time of the blurring ODE."""
    k_b: int = 1
    """Steps of the blurring ODE."""
    solver_blr: Solver = "euler"
    """Blurring solver (``euler`` or ``rk4``)."""
    t_s: float | None = None
    """End time of the sharpening ODE (unset: 1.0 on data >= 1% dense, else 2.5)."""
    k_s: int = 1
    """Steps of the sharpening ODE."""
    solver_shr: Solver | None = None
    """Sharpening solver (unset: ``euler`` on data >= 1% dense, else ``rk4``)."""
    final_sharpening: bool = True
    """Early merge (the low-pass output is sharpened too) rather than late merge."""
    sharpening_off: bool = False
    """Blurring (and the low-pass filter) only."""
    t_point_combination: bool = False
    """Average the states at every grid point instead of taking the last one."""
    svd_solver: Literal["arpack", "randomized"] = "arpack"
    """Truncated SVD for the low-pass basis: ARPACK (exact) or randomized (faster on large catalogs)."""
    power_iterations: int = 6
    """Power iterations of the randomized SVD."""

    #: saves written before the density-dependent defaults (2026-12-03) used the dense setting
    FORMER_DEFAULTS: ClassVar[dict[str, Any]] = dict(SETTINGS["dense"])

    def __post_init__(self) -> None:
        check(self.factor_dim is None or self.factor_dim >= 0, "factor_dim", f"must be >= 0, got {self.factor_dim}")
        check(self.idl_beta is None or self.idl_beta >= 0, "idl_beta", f"must be >= 0, got {self.idl_beta}")
        for name in ("t_idl", "t_b", "t_s"):
            value = getattr(self, name)
            check(value is None or value > 0, name, f"must be > 0, got {value}")
        for name in ("k_idl", "k_b", "k_s"):
            check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("solver_idl", "solver_blr", "solver_shr"):
            check(getattr(self, name) in ("euler", "rk4") or (name == "solver_shr" and self.solver_shr is None),
                  name,
                  f"must be 'euler' or 'rk4', got {getattr(self, name)!r}")


def integrate(f: Callable[[Any], Any], y0: Any, t_end: float, steps: int, method: Solver) -> list[Any]:
    """Fixed-grid solution of ``dy/dt = f(y)``: the states at the ``steps`` grid points after 0."""
    h = t_end / steps
    y, out = y0, []
    for _ in range(steps):
        if method == "euler":
            y = y + h * f(y)
        else:
            k1 = f(y)
            k2 = f(y + (h / 2) * k1)
            k3 = f(y + (h / 2) * k2)
            k4 = f(y + h * k3)
            y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(y)
    return out


class BSPM(HistoryRecommender):
    name = "bspm"
    Config = BSPMConfig

    norm_: sp.csr_matrix  # (U, I) R = D_u^{-1/2} X D_i^{-1/2}
    left_: np.ndarray  # (I, f) D_i^{-1/2} V
    right_: np.ndarray  # (f, I) V^T D_i^{1/2}

    def _fit_matrix(self, x: sp.csr_matrix, options: FitOptions) -> None:
        self.settings_ = c = self._resolved(x)
        r, di = normalised_adjacency(x)
        self.norm_ = sp.csr_matrix(r, dtype=np.float32)
        uses_idl = c.idl_beta > 0 and c.factor_dim > 0
        v = ideal_low_pass_basis(r, c.factor_dim if uses_idl else 0, c.svd_solver, c.power_iterations,
                                 options.seed)
        self.left_ = (v * _inv_sqrt(di)[:, None]).astype(np.float32)
        self.right_ = np.ascontiguousarray((v * np.sqrt(di)[:, None]).T, dtype=np.float32)

    def _resolved(self, x: sp.csr_matrix) -> BSPMConfig:
        """The config with its unset density-dependent fields filled in for ``x`` (recorded in
        ``auto_resolved_``)."""
        density = x.nnz / max(1, x.shape[0] * x.shape[1])
        setting = SETTINGS["dense" if density >= DENSE_DENSITY else "sparse"]
        chosen = {k: v for k, v in setting.items() if getattr(self.config, k) is None}
        for key, value in chosen.items():
            self._record_resolved(key, value)
        return dataclasses.replace(self.config, **chosen)

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.settings_ = self._resolved(self.user_items_)  # a save keeps the training rows, so the same choice

    # --- the filters, on states held transposed: (num_items, B) -------------------------------
    def _operators(self) -> tuple[Callable[[Any], Any], Callable[[Any], Any], Callable[[np.ndarray], Any]]:
        """``(apply P, apply L, to_state)`` on torch tensors (MKL sparse kernels) or, without torch, NumPy /
        SciPy arrays; the same arithmetic either way."""
        key = (self.norm_, HAVE_TORCH)
        cached = getattr(self, "_ops", None)
        if cached is not None and cached[0][0] is key[0] and cached[0][1] == key[1]:
            return cached[1]
        r = self.norm_
        n = r.shape[1]
        left_t = np.ascontiguousarray(self.left_.T)  # (f, I)
        right_t = np.ascontiguousarray(self.right_.T)  # (I, f)
        dense_p = np.asarray((r.T @ r).toarray(), dtype=np.float32) if n * n * 4 <= DENSE_LIMIT_BYTES else None
        if HAVE_TORCH:
            import torch

            to_state = torch.from_numpy
            left_t, right_t = torch.from_numpy(left_t), torch.from_numpy(right_t)
            if dense_p is not None:
                dense_p = torch.from_numpy(dense_p)
            else:
                mr, mrt = torch_csr(r), torch_csr(sp.csr_matrix(r.T))
        else:
            to_state = np.asarray
            mr, mrt = r, sp.csr_matrix(r.T)

        def apply_p(s: Any) -> Any:
            return dense_p @ s if dense_p is not None else mrt @ (mr @ s)

        def apply_l(s: Any) -> Any:
            return right_t @ (left_t @ s)

        self._ops = (key, (apply_p, apply_l, to_state))
        return apply_p, apply_l, to_state

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        rows = sp.csr_matrix(rows, dtype=np.float32)
        # a solver holds ~6 (num_items, B) states: process the rows in chunks of about STATE_BYTES each
        chunk = max(1, STATE_BYTES // (4 * max(self.norm_.shape)))
        if rows.shape[0] <= chunk:
            return self._score_chunk(rows)
        return np.concatenate([self._score_chunk(rows[i : i + chunk]) for i in range(0, rows.shape[0], chunk)])

    def _score_chunk(self, rows: sp.csr_matrix) -> np.ndarray:
        c = self.settings_
        apply_p, apply_l, to_state = self._operators()
        r0 = to_state(np.ascontiguousarray(rows.toarray().T))
        blurred = integrate(lambda s: apply_p(s) - s, r0, c.t_b, c.k_b, c.solver_blr)
        use_idl = c.idl_beta > 0 and self.left_.shape[1] > 0
        idl = (integrate(lambda s: apply_l(s) - s, r0, c.t_idl, c.k_idl, c.solver_idl)[-1] * c.idl_beta
               if use_idl else None)
        if c.sharpening_off:
            states = blurred
        else:
            start = blurred[-1] + idl if (idl is not None and c.final_sharpening) else blurred[-1]
            sharpened = integrate(lambda s: -apply_p(s), start, c.t_s, c.k_s, c.solver_shr)
            states = blurred + sharpened if c.t_point_combination else sharpened
        out = sum(states[1:], states[0]) / len(states) if c.t_point_combination else states[-1]
        # the reference adds the low-pass output at the end unless it already went into sharpening
        if idl is not None and (c.sharpening_off or not c.final_sharpening):
            out = out + idl
        return np.ascontiguousarray(np.asarray(out).T, dtype=np.float32)

    def _matrix_state(self) -> dict[str, Any]:
        return {"norm": self.norm_, "left": self.left_, "right": self.right_}

