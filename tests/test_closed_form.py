"""Closed-form models equal their papers' formulas computed naively on small random data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recembed.data.interactions import Interactions
from recembed.errors import ResourceError
from recembed.models.cf.ease import EASE
from recembed.models.cf.gfcf import GFCF, randomized_right_singular_vectors
from recembed.models.cf.itemknn import ItemKNN
from recembed.options import FitOptions


def _random_interactions(seed: int = 0, users: int = 60, items: int = 40, density: float = 0.15) -> Interactions:
    rng = np.random.default_rng(seed)
    x = rng.random((users, items)) < density
    x[np.arange(users), rng.integers(0, items, users)] = True  # nobody empty
    u, i = np.nonzero(x)
    return Interactions(u, i, users, items)


@pytest.mark.parametrize("torch_backend", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ease_equals_textbook_formula(dtype, torch_backend, monkeypatch) -> None:
    import recembed.models.cf.ease as ease_module

    if torch_backend and not ease_module.HAVE_TORCH:
        pytest.skip("torch is not installed")
    monkeypatch.setattr(ease_module, "HAVE_TORCH", torch_backend)
    inter = _random_interactions()
    x = inter.csr().toarray().astype(np.float64)
    lam = 7.0
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    model = EASE(l2=lam, dtype=dtype).fit(inter)
    np.testing.assert_allclose(model.weights_, b, atol=1e-4 if dtype == "float32" else 1e-9)
    np.testing.assert_allclose(model.score(np.arange(5)), x[:5] @ b, atol=1e-4)


def test_ease_refuses_what_memory_cannot_hold() -> None:
    inter = _random_interactions(items=400, users=50, density=0.05)
    with pytest.raises(ResourceError, match=r"EASE over 400 items .* GiB"):
        EASE().fit(inter, options=FitOptions(memory_budget_mb=0))


@pytest.mark.parametrize("k,shrink", [(5, 0.0), (10, 3.0), (100, 0.0)])
def test_itemknn_equals_definition(k, shrink) -> None:
    inter = _random_interactions(1)
    x = inter.csr().toarray().astype(np.float64)
    norms = np.sqrt((x ** 2).sum(axis=0))
    sim = (x.T @ x) / (norms[:, None] * norms[None, :] + shrink + 1e-6)
    np.fill_diagonal(sim, 0.0)
    w = np.zeros_like(sim)
    kk = min(k, sim.shape[0] - 1)
    for j in range(sim.shape[1]):  # keep the k largest per target column
        top = np.argsort(-sim[:, j], kind="stable")[:kk]
        w[top, j] = sim[top, j]
    w[w < 0] = 0
    model = ItemKNN(k=k, shrink=shrink).fit(inter)
    got = model.similarity_.toarray()
    # ties at the k-th value may pick different neighbours: compare the kept mass per column
    np.testing.assert_allclose(np.sort(got, axis=0)[-kk:], np.sort(w, axis=0)[-kk:], atol=1e-5)
    np.testing.assert_allclose(model.score(np.arange(4)), x[:4] @ got, atol=1e-5)


def test_gfcf_equals_dense_formula() -> None:
    inter = _random_interactions(2)
    x = inter.csr().toarray().astype(np.float64)
    du, di = x.sum(1), x.sum(0)
    r = x / np.sqrt(du)[:, None] / np.sqrt(di)[None, :]
    f, alpha = 8, 0.3
    _, _, vt = np.linalg.svd(r)
    v = vt[:f].T
    expected = x @ (r.T @ r) + alpha * x @ np.diag(di ** -0.5) @ v @ v.T @ np.diag(di ** 0.5)
    model = GFCF(num_factors=f, alpha=alpha).fit(inter)
    np.testing.assert_allclose(model.score(np.arange(x.shape[0])), expected, atol=1e-4)


def _bspm_expected(x: np.ndarray, f: int, cfg: dict) -> np.ndarray:
    """BSPM written as matrix polynomials: one step of each solver on dy/dt = y A is y (I + hA) (Euler) or
    y (I + hA + (hA)^2/2 + (hA)^3/6 + (hA)^4/24) (RK4)."""
    du, di = x.sum(1), x.sum(0)
    r = x / np.sqrt(du)[:, None] / np.sqrt(di)[None, :]
    p = r.T @ r
    _, _, vt = np.linalg.svd(r)
    v = vt[:f].T
    low = np.diag(di ** -0.5) @ v @ v.T @ np.diag(di ** 0.5)
    eye = np.eye(x.shape[1])

    def step(a: np.ndarray, h: float, solver: str) -> np.ndarray:
        ha = h * a
        if solver == "euler":
            return eye + ha
        return eye + ha + ha @ ha / 2 + ha @ ha @ ha / 6 + ha @ ha @ ha @ ha / 24

    def solve(y0: np.ndarray, a: np.ndarray, t: float, k: int, solver: str) -> list[np.ndarray]:
        out, y = [], y0
        for _ in range(k):
            y = y @ step(a, t / k, solver)
            out.append(y)
        return out

    blurred = solve(x, p - eye, cfg["t_b"], cfg["k_b"], cfg["solver_blr"])
    idl = cfg["idl_beta"] * solve(x, low - eye, 1.0, 1, "euler")[-1]
    start = blurred[-1] + idl if cfg["final_sharpening"] else blurred[-1]
    sharpened = solve(start, -p, cfg["t_s"], cfg["k_s"], cfg["solver_shr"])
    states = blurred + sharpened if cfg["t_point_combination"] else sharpened
    out = np.mean(states, axis=0) if cfg["t_point_combination"] else states[-1]
    return out if cfg["final_sharpening"] else out + idl


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("dense_p", [True, False])
@pytest.mark.parametrize("cfg", [
    # the reference code's gowalla setting (BSPM-EM, RK4 sharpening to t = 2.5)
    {"idl_beta": 0.2, "t_b": 1.0, "k_b": 1, "solver_blr": "euler", "t_s": 2.5, "k_s": 1, "solver_shr": "rk4",
     "final_sharpening": True, "t_point_combination": False},
    # late merge, several Euler steps, every time point averaged
    {"idl_beta": 0.3, "t_b": 1.5, "k_b": 3, "solver_blr": "euler", "t_s": 1.2, "k_s": 2, "solver_shr": "euler",
     "final_sharpening": False, "t_point_combination": True},
    {"idl_beta": 0.1, "t_b": 1.0, "k_b": 2, "solver_blr": "rk4", "t_s": 0.8, "k_s": 2, "solver_shr": "rk4",
     "final_sharpening": True, "t_point_combination": True},
])
def test_bspm_equals_matrix_polynomials(cfg, dense_p, backend, monkeypatch) -> None:  # noqa: ANN001
    import recembed.models.cf.bspm as bspm_module

    if backend == "torch" and not bspm_module.HAVE_TORCH:
        pytest.skip("torch is not installed")
    monkeypatch.setattr(bspm_module, "HAVE_TORCH", backend == "torch")
    if not dense_p:  # the factored R^T (R s) product that large catalogs use
        monkeypatch.setattr(bspm_module, "DENSE_LIMIT_BYTES", 0)
    inter = _random_interactions(4)
    x = inter.csr().toarray().astype(np.float64)
    f = 8
    model = bspm_module.BSPM(factor_dim=f, **cfg).fit(inter)
    np.testing.assert_allclose(model.score(np.arange(x.shape[0])), _bspm_expected(x, f, cfg), atol=2e-4)


def test_bspm_without_sharpening_is_gfcf() -> None:
    from recembed.models.cf.bspm import BSPM

    inter = _random_interactions(5)
    gfcf = GFCF(num_factors=8, alpha=0.3).fit(inter)
    bspm = BSPM(factor_dim=8, idl_beta=0.3, sharpening_off=True).fit(inter)
    users = np.arange(inter.num_users)
    np.testing.assert_allclose(bspm.score(users), gfcf.score(users), atol=1e-4)


def test_randomized_svd_recovers_subspace() -> None:
    rng = np.random.default_rng(3)
    a = sp.csr_matrix(rng.random((80, 50)) * (rng.random((80, 50)) < 0.3))
    v = randomized_right_singular_vectors(a, 5, power_iterations=8)
    _, _, vt = np.linalg.svd(a.toarray())
    # same subspace: projections agree
    np.testing.assert_allclose(np.abs(v.T @ vt[:5].T).sum(axis=1), np.ones(5), atol=0.05)


def test_ease_refuses_catalogs_past_32_bit_lapack_indexing(monkeypatch) -> None:  # noqa: ANN001
    """Past n * n >= 2**31 the in-place Cholesky segfaulted (57,289 items): refuse with a clear error instead."""
    import recembed.models.cf.ease as ease_module
    from recembed.testing.fixtures import planted_split

    split = planted_split()
    monkeypatch.setattr(ease_module, "LAPACK_MAX_ITEMS", split.train.num_items - 1)
    with pytest.raises(ResourceError, match=r"32-bit LAPACK"):
        ease_module.EASE().fit(split.train)
