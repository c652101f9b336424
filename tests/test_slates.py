"""[Tasks] exploration on slates (`recembed slates RUN`): Thompson sampling finds items the base model ranks too
low where greedy never looks, the Laplace update is the penalised MAP, and the CLI writes its table and plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_rankers import run_main

from recembed.tasks.slate_sim import PlantedSimulator, reduce_features, sigmoid, simulate, standardise_rows
from recembed.tasks.slates import PosteriorConfig, _draw, laplace_update, run_slates


def planted_gems(seed: int = 0, users: int = 100, items: int = 100, gems: int = 6) -> PlantedSimulator:
    """Truth: a low-rank taste plus, for ``gems`` items, a large appeal shared by everyone. The base model knows
    the taste but ranks the gems mid-list for every user (their appeal is missing from its scores)."""
    rng = np.random.default_rng(seed)
    p, q = rng.standard_normal((users, 3)), rng.standard_normal((items, 3))
    taste = p @ q.T
    appeal = np.zeros(items)
    appeal[:gems] = 4.0
    probs = sigmoid(0.7 * taste + appeal - 3.5).astype(np.float32)
    base = standardise_rows(taste)
    base[:, :gems] = np.median(base, axis=1, keepdims=True)  # wrong: the gems look average to the base model
    return PlantedSimulator(probs, base, reduce_features(q, 3), np.zeros((users, items), dtype=bool), {})


def test_thompson_finds_what_greedy_never_shows() -> None:
    from recembed.tasks.slates import GreedyPolicy, ThompsonPolicy

    sim = planted_gems()
    r = run_slates(sim, rounds=40, slate=5, users_per_round=25, seeds=(0, 1), config=PosteriorConfig(explore=1.0),
                   policies=("base", "greedy", "thompson"))["policies"]
    assert r["thompson"]["final_regret_mean"] < 0.6 * r["greedy"]["final_regret_mean"], r
    assert r["thompson"]["ctr_mean"] > r["greedy"]["ctr_mean"] + 0.03, r
    # the gems: TS learns a large positive correction for them; greedy never shows them, so theirs stays at 0
    ts, greedy = ThompsonPolicy(sim, PosteriorConfig(explore=1.0)), GreedyPolicy(sim, PosteriorConfig())
    for pol in (ts, greedy):
        simulate(sim, pol, rounds=40, slate=5, users_per_round=25, seed=0)
    assert ts.learner.item_mean[:6].mean() > 1.0 and np.abs(greedy.learner.item_mean[:6]).max() < 0.1


def test_laplace_update_is_the_penalised_map() -> None:
    from scipy.optimize import minimize

    rng = np.random.default_rng(1)
    b, s, d = 3, 40, 4
    x, off = rng.standard_normal((b, s, d)), rng.standard_normal((b, s)) * 0.3
    y = (rng.random((b, s)) < 0.4).astype(float)
    w = (rng.random((b, s)) < 0.9).astype(float)
    m0 = rng.standard_normal((b, d)) * 0.2
    a = rng.standard_normal((b, d, d)) * 0.3
    p0 = a @ np.swapaxes(a, 1, 2) + np.eye(d)  # positive definite priors
    mean, precision = laplace_update(m0, p0, x, y, off, w, steps=20)
    for k in range(b):
        def loss(t: np.ndarray, k: int = k) -> float:
            z = x[k] @ t + off[k]
            return float((w[k] * (np.logaddexp(0, z) - y[k] * z)).sum() + 0.5 * (t - m0[k]) @ p0[k] @ (t - m0[k]))
        ref = minimize(loss, m0[k], method="BFGS", options={"gtol": 1e-10}).x
        np.testing.assert_allclose(mean[k], ref, atol=1e-5)
        q = sigmoid(x[k] @ mean[k] + off[k])
        np.testing.assert_allclose(precision[k], p0[k] + (x[k] * (w[k] * q * (1 - q))[:, None]).T @ x[k], atol=1e-10)
    # no data: the posterior is the prior
    m, p = laplace_update(m0, p0, x, y, off, np.zeros((b, s)))
    np.testing.assert_allclose(m, m0)
    np.testing.assert_allclose(p, p0)


def test_draws_have_the_posterior_covariance() -> None:
    precision = np.array([[4.0, 1.0], [1.0, 2.0]])
    draws = _draw(np.zeros((20000, 2)), np.tile(precision, (20000, 1, 1)), np.random.default_rng(0), 1.0)
    np.testing.assert_allclose(np.cov(draws.T), np.linalg.inv(precision), atol=0.01)


@pytest.fixture(scope="module")
def ease_run(tmp_path_factory) -> Path:  # noqa: ANN001
    out = tmp_path_factory.mktemp("slates") / "ease"
    code, text = run_main(["fit", "ease", "--data", "synthetic:tiny", "--no-progress", "--out", str(out)])
    assert code == 0, text
    return out


def test_slates_command_writes_table_and_plot(ease_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    code, text = run_main(["slates", str(ease_run), "--rounds", "8", "--slate", "4", "--users", "16",
                           "--seeds", "0,1", "--truth-rank", "4", "--out", str(out)])
    assert code == 0, text
    r = json.loads((out / "slates.json").read_text())
    assert set(r["policies"]) == {"base", "greedy", "epsilon-greedy", "thompson"}
    for p in r["policies"].values():
        assert len(p["curve_mean"]) == 8 and len(p["final_regret_per_seed"]) == 2
        assert p["final_regret_mean"] >= 0 and 0 <= p["ctr_mean"] <= 1
    assert (out / "regret.png").stat().st_size > 1000 and "thompson" in text
    code, text = run_main(["slates", str(ease_run), "--rounds", "3", "--users", "8", "--seeds", "0",
                           "--policies", "greedy,bootstrap", "--out", str(out / "b")])
    assert code == 0, text
    assert set(json.loads((out / "b" / "slates.json").read_text())["policies"]) == {"greedy", "bootstrap"}


@pytest.mark.parametrize(("args", "flag"), [(["--seeds", "0,x"], "--seeds"), (["--epsilon", "0"], "--epsilon"),
                                            (["--rounds", "0"], "--rounds"), (["--slate", "100000"], "--slate"),
                                            (["--users", "100000"], "--users"), (["--explore", "-1"], "--explore"),
                                            (["--policies", "greedy,oracle"], "--policies")])
def test_bad_flags_exit_2(ease_run: Path, args: list[str], flag: str) -> None:
    code, text = run_main(["slates", str(ease_run), "--rounds", "2", *args])
    assert code == 2 and flag in text and "Traceback" not in text, text


def test_missing_run_exits_2(tmp_path: Path) -> None:
    code, text = run_main(["slates", str(tmp_path / "nope")])
    assert code == 2 and "not a complete run directory" in text and "Traceback" not in text
