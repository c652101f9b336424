"""[Tasks] relevance cut-offs (`recembed cutoff RUN`): the map is calibrated on validation, higher thresholds give
fewer and more precise results, the baselines match the cut-off's result count, bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_rankers import run_main

from recembed.tasks.cutoff import FEATURES, CutoffModel, features


@pytest.fixture(scope="module")
def ease_run(tmp_path_factory) -> Path:  # noqa: ANN001
    out = tmp_path_factory.mktemp("cutoff") / "ease"
    code, text = run_main(["fit", "ease", "--data", "synthetic:tiny", "--split", "random:0.7,0.15,0.15",
                           "--no-progress", "--out", str(out)])
    assert code == 0, text
    return out


def test_logistic_map_recovers_a_planted_logit() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20000, len(FEATURES)))
    w = np.array([1.5, 0.0, -1.0, 0.0, 0.5, 0.0])
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-(x @ w - 1.0)))).astype(float)
    m = CutoffModel.fit(x, y)
    np.testing.assert_allclose(m.weights[:-1] * 1.0 / m.std, w, atol=0.08)  # standardised back to raw units
    p = m.predict(x)
    assert abs(p.mean() - y.mean()) < 0.005  # logistic regression matches the base rate (with a bias)


def test_features_of_a_candidate_block() -> None:
    scores = np.array([[3.0, 2.0, 1.0]])
    x = features(scores, np.array([[0, 2, 1]]), np.array([4]), np.array([10, 0, 5]))
    np.testing.assert_allclose(x[:, 1], [0, 1, 2])  # gap to the best
    np.testing.assert_allclose(x[:, 3], np.log1p([0, 1, 2]))  # log rank
    np.testing.assert_allclose(x[:, 5], np.log1p([10, 5, 0]))  # the items' training counts
    assert np.isclose(x[:, 2].mean(), 0) and np.allclose(x[:, 4], np.log1p(4))


def test_cutoff_command_is_calibrated_and_monotone(ease_run: Path, tmp_path: Path) -> None:
    code, text = run_main(["cutoff", str(ease_run), "--candidates", "30", "--out", str(tmp_path / "c")])
    assert code == 0, text
    r = json.loads((tmp_path / "c" / "cutoff.json").read_text())
    assert (tmp_path / "c" / "cutoff.png").is_file()
    calib = r["valid_calibration"]
    total = sum(b["count"] for b in calib)
    assert abs(sum(b["mean_prob"] * b["count"] for b in calib) / total
               - sum(b["rate"] * b["count"] for b in calib) / total) < 0.01  # calibrated in the mean
    counts = [row["cutoff"]["mean_count"] for row in r["rows"]]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]  # higher threshold, fewer results
    for row in r["rows"]:  # the baselines are matched to the cut-off's result count
        assert row["top_k"]["k"] == max(1, round(row["cutoff"]["mean_count"]))
        assert abs(row["global_score"]["mean_count"] - row["cutoff"]["mean_count"]) <= 1.0


def test_bad_input_exits_2(tmp_path: Path, ease_run: Path) -> None:
    code, text = run_main(["cutoff", str(tmp_path / "nope")])
    assert code == 2 and "not a complete run directory" in text
    code, text = run_main(["cutoff", str(ease_run), "--candidates", "1"])
    assert code == 2 and "--candidates" in text
