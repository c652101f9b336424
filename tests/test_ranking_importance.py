"""Feature importance and selection for the CTR rankers: permutation importance finds the one informative field
of planted data and scores the noise fields ~0; the OutRank-style ranking puts it first and a random
high-cardinality id low (where plain MI puts that id first); the exact expected MI agrees with permutations; the
per-field width / drop option (``field_dims``) trains, saves and loads, and configs saved without it load as
before; the size search keeps the signal and drops noise; ``recembed importance`` writes importance.json and
exits 2 on a bad run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA_ROOT, data_dir
from test_rankers import run_main

from recembed.models.ranking.base import Ranker
from recembed.models.registry import model_class
from recembed.options import FitOptions
from recembed.ranking.importance import permutation_importance
from recembed.ranking.selection import association, expected_mutual_information, rank_fields
from recembed.ranking.size_search import ladders, ranker_trial, size_search

QUIET = FitOptions(seed=0, show_progress=False, threads=1)
SMALL = {"epochs": 20, "patience": 3, "learning_rate": 3e-3, "batch_size": 128, "min_steps": 0, "embedding_dim": 8,
         "hidden_units": (32,)}
NOISE = ("noise", "x", "tags", "rid")
_FIT: dict[str, object] = {}


def planted_main_effect(seed: int = 0, rows: int = 4000):  # noqa: ANN201
    """Click = sigmoid(2.5 * w[signal]) for a 10-level ``signal`` field (w: +-1); noise: a 10-level categorical,
    a numeric, 1-3 tags of 6, and ``rid``, a random id of ``rows / 2`` values (high cardinality, no signal)."""
    from recembed.ranking.datasets import CTRData
    from recembed.ranking.schema import Field, Frame, Ragged

    rng = np.random.default_rng(seed)
    s = rng.integers(10, size=rows)
    w = np.where(np.arange(10) % 2 == 0, 1.0, -1.0)
    labels = (rng.random(rows) < 1 / (1 + np.exp(-2.5 * w[s]))).astype(np.float32)
    tags = Ragged.from_lists([[f"t{t}" for t in rng.choice(6, size=k, replace=False)]
                              for k in rng.integers(1, 4, size=rows)])
    users = np.asarray([f"u{v}" for v in rng.integers(30, size=rows)], dtype=object)
    cols = {"signal": np.asarray([f"s{v}" for v in s], dtype=object),
            "noise": np.asarray([f"n{v}" for v in rng.integers(10, size=rows)], dtype=object),
            "x": rng.standard_normal(rows), "tags": tags,
            "rid": np.asarray([f"r{v}" for v in rng.integers(rows // 2, size=rows)], dtype=object)}
    frame = Frame(cols, labels, users)
    order = rng.permutation(rows)
    cut1, cut2 = int(rows * 0.8), int(rows * 0.9)
    train, valid, test = (frame.take(np.sort(p)) for p in (order[:cut1], order[cut1:cut2], order[cut2:]))
    fields = [Field("signal", "categorical"), Field("noise", "categorical"), Field("x", "numeric"),
              Field("tags", "tags"), Field("rid", "categorical")]
    return CTRData("planted-main", fields, train, valid, test)


def fitted(field_dims: str = ""):  # noqa: ANN201
    if field_dims not in _FIT:
        data = planted_main_effect()
        _FIT[field_dims] = model_class("deepfm")(**SMALL, field_dims=field_dims).fit(
            data.train, schema=data.schema(), valid=data.valid, options=QUIET)
    return _FIT[field_dims]


def test_permutation_importance_finds_the_signal_and_scores_noise_near_zero() -> None:
    data = planted_main_effect()
    res = permutation_importance(fitted(), data.test, repeats=3, seed=0)
    by = {r["field"]: r for r in res["fields"]}
    assert res["fields"][0]["field"] == "signal" and set(by) == {"signal", *NOISE}
    assert by["signal"]["auc_drop"]["mean"] > 0.2 and by["signal"]["logloss_rise"]["mean"] > 0.05
    assert by["signal"]["gauc_drop"]["mean"] > 0.1
    for name in NOISE:
        assert abs(by[name]["auc_drop"]["mean"]) < 0.03, (name, by[name]["auc_drop"])
    assert len(by["signal"]["auc_drop"]["values"]) == 3 and by["signal"]["auc_drop"]["std"] >= 0
    again = permutation_importance(fitted(), data.test, repeats=3, seed=0)  # seeded: the same numbers
    assert again["fields"] == res["fields"]


def test_a_dropped_field_has_exactly_zero_importance() -> None:
    data = planted_main_effect()
    res = permutation_importance(fitted("noise:0,tags:0"), data.test, repeats=2)
    by = {r["field"]: r for r in res["fields"]}
    for name in ("noise", "tags"):
        assert by[name]["auc_drop"]["values"] == [0.0, 0.0] and by[name]["logloss_rise"]["mean"] == 0.0
    assert by["signal"]["auc_drop"]["mean"] > 0.2


def test_outrank_puts_the_signal_first_and_a_random_id_low() -> None:
    data = planted_main_effect()
    schema = data.schema()
    ranked = rank_fields(schema, data.train)
    order = [r["field"] for r in ranked["fields"]]
    assert order[0] == "signal", order
    by = {r["field"]: r for r in ranked["fields"]}
    assert order.index("rid") >= 2 and abs(by["rid"]["ami"]) < 0.01 and by["rid"]["distinct"] > 1000
    plain = [r["field"] for r in rank_fields(schema, data.train, score="mi")["fields"]]
    # uncorrected MI ranks the random id right after the signal, ahead of every other noise field: the
    # correction is what ranks it low
    assert plain.index("rid") == 1 and order.index("rid") > 1
    tokens = rank_fields(schema, data.train, ragged="tokens")
    assert [r["field"] for r in tokens["fields"]][0] == "signal"


def test_expected_mutual_information_matches_permutations() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.integers(6, size=60), (rng.random(60) < 0.3).astype(float)
    table = association(x, y)
    perms = [association(x, rng.permutation(y))["mi"] for _ in range(3000)]
    emi = expected_mutual_information(np.bincount(x), np.bincount(y.astype(int)))
    assert emi == pytest.approx(table["expected_mi"])
    assert emi == pytest.approx(np.mean(perms), rel=0.05)
    unique = association(np.arange(200), (rng.random(200) < 0.5).astype(float))
    assert unique["mi"] == pytest.approx(unique["expected_mi"]) and abs(unique["ami"]) < 1e-9


def test_field_dims_trains_saves_and_loads(tmp_path) -> None:
    data = planted_main_effect()
    full, narrow = fitted(), fitted("signal:2,rid:0")
    assert narrow.num_parameters() < full.num_parameters()
    keys = narrow.module_.state_dict()
    assert "embedding.tables.signal.proj.weight" in keys and not any(".rid." in k for k in keys)
    narrow.save(tmp_path / "m")
    loaded = Ranker.load(tmp_path / "m")
    assert loaded.config.field_dims == "signal:2,rid:0"
    np.testing.assert_array_equal(loaded.predict(data.test), narrow.predict(data.test))
    # a model saved before field_dims existed (no key in model.json) loads as it was trained
    full.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "model.json").read_text())
    del meta["config"]["field_dims"]
    (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
    np.testing.assert_array_equal(Ranker.load(tmp_path / "old").predict(data.test), full.predict(data.test))


@pytest.mark.parametrize(("spec", "named"), [("nosuch:0", "no field 'nosuch'"), ("signal", "FIELD:WIDTH"),
                                             ("signal:0,noise:0,x:0,tags:0,rid:0", "every field is dropped")])
def test_field_dims_bad_values_are_named(spec: str, named: str) -> None:
    from recembed.errors import ConfigError

    data = planted_main_effect(rows=400)
    with pytest.raises(ConfigError, match=named):
        model_class("deepfm")(**SMALL, field_dims=spec).fit(data.train, schema=data.schema(), options=QUIET)


def test_guided_size_search_keeps_the_signal_and_drops_noise() -> None:
    data = planted_main_effect()
    schema = data.schema()
    order = ["rid", "noise", "tags", "x", "signal"]  # least important first
    fit = ranker_trial("deepfm", data, SMALL, QUIET)
    res = size_search(fit, schema.names(), ladders(schema, 8, widths=(0,)), 8, strategy="guided", order=order,
                      tol=0.005)
    assert res["widths"]["signal"] == 8 and sum(res["widths"][n] == 0 for n in NOISE) >= 2, res["widths"]
    assert res["selected"]["valid_auc"] >= res["threshold"]
    assert res["selected"]["parameters"] < res["reference"]["parameters"] and res["fits"] == len(res["steps"]) + 1


def test_cli_importance_writes_json_and_refuses_bad_run_dirs(tmp_path) -> None:
    data_dir("ml-100k")
    out = tmp_path / "run"
    code, text = run_main(["fit", "deepfm", "--data", "ml-100k-ctr", "--data-root", str(DATA_ROOT), "--out",
                           str(out), "--no-progress", "--threads", "1", "--set", "epochs=1", "--set",
                           "embedding_dim=4", "--set", "hidden_units=16"])
    assert code == 0, text
    code, text = run_main(["importance", str(out), "--repeats", "2", "--threads", "1", "--data-root", str(DATA_ROOT)])
    assert code == 0, text
    got = json.loads((out / "importance.json").read_text())
    fields = [r["field"] for r in got["permutation"]["fields"]]
    assert sorted(fields) == sorted(["user_id", "item_id", "age", "gender", "occupation", "zip3", "genres", "year"])
    assert got["part"] == "test" and got["permutation"]["repeats"] == 2 and got["outrank"]["fields"]
    assert (out / "importance.png").stat().st_size > 0 and "item_id" in text
    (tmp_path / "empty").mkdir()
    for bad, named in ((tmp_path / "nothere", "no such run directory"), (tmp_path / "empty", "no config.json")):
        code, text = run_main(["importance", str(bad)])
        assert code == 2 and named in text and "Traceback" not in text, text
