"""The CLI contract: fit writes RUN_DIR/metrics.json; evaluate, recommend, similar, compare read it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from recembed.cli.main import cli


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    runner = CliRunner()
    for model in ("pop", "ease"):
        res = runner.invoke(cli, ["fit", model, "--data", "synthetic:tiny", "--out", str(out / model), "--no-progress"])
        assert res.exit_code == 0, res.output
    return out


def test_fit_writes_metrics_contract(runs) -> None:
    m = json.loads((runs / "ease" / "metrics.json").read_text())
    for part in ("test", "valid"):
        for key in ("ndcg@10", "recall@10", "ndcg@20", "recall@20"):
            assert 0 <= m[part][key] <= 1
    for key in ("split_hash", "fit_seconds", "eval_seconds", "peak_rss_mb"):
        assert key in m
    assert m["test"]["ndcg@10"] > json.loads((runs / "pop" / "metrics.json").read_text())["test"]["ndcg@10"]
    assert json.loads((runs / "pop" / "metrics.json").read_text())["split_hash"] == m["split_hash"]
    assert (runs / "ease" / "model" / "model.safetensors").exists()


def test_evaluate_rescores_identically(runs) -> None:
    res = CliRunner().invoke(cli, ["evaluate", str(runs / "ease")])
    assert res.exit_code == 0, res.output
    assert "matches the stored test metrics: True" in res.output


def test_evaluate_part_and_json(runs, tmp_path) -> None:
    out = tmp_path / "scores.json"
    res = CliRunner().invoke(cli, ["evaluate", str(runs / "ease"), "--part", "test", "--json", str(out)])
    assert res.exit_code == 0, res.output
    got, stored = json.loads(out.read_text()), json.loads((runs / "ease" / "metrics.json").read_text())
    assert "valid" not in got and got["settings"] == {}
    assert got["test"]["ndcg@10"] == pytest.approx(stored["test"]["ndcg@10"], abs=1e-9)


def test_evaluate_refuses_settings_that_shape_the_model(runs) -> None:
    runner = CliRunner()
    before = (runs / "ease" / "metrics.json").read_text()
    res = runner.invoke(cli, ["evaluate", str(runs / "ease"), "--set", "l2=5"])
    assert res.exit_code != 0 and "l2" in res.output and "cannot change after ease is fitted" in res.output
    res = runner.invoke(cli, ["evaluate", str(runs / "ease"), "--write", "--part", "test"])
    assert res.exit_code != 0 and "--write" in res.output
    assert (runs / "ease" / "metrics.json").read_text() == before


def test_recommend_prints_titles(runs) -> None:
    res = CliRunner().invoke(cli, ["recommend", str(runs / "ease"), "--user", "u3", "--k", "5"])
    assert res.exit_code == 0, res.output
    assert "top 5 for user u3" in res.output and "score" in res.output


def test_recommend_unknown_user_is_a_clear_error(runs) -> None:
    res = CliRunner().invoke(cli, ["recommend", str(runs / "ease"), "--user", "nobody"])
    assert res.exit_code != 0
    assert "nobody" in str(res.exception) or "nobody" in res.output


def test_compare_runs_significance(runs) -> None:
    res = CliRunner().invoke(cli, ["compare", str(runs / "pop"), str(runs / "ease"), "--metric", "ndcg@10"])
    assert res.exit_code == 0, res.output
    assert "p(t-test)" in res.output


def test_unknown_model_and_bad_set(tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["fit", "nosuchmodel", "--data", "synthetic:tiny", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "nosuchmodel" in str(res.exception)
    res = runner.invoke(cli, ["fit", "ease", "--data", "synthetic:tiny", "--set", "l2=abc",
                              "--out", str(tmp_path / "y")])
    assert res.exit_code != 0 and "l2" in str(res.exception)
    assert not (tmp_path / "y" / "metrics.json").exists()


def test_datasets_lists_catalog() -> None:
    res = CliRunner().invoke(cli, ["datasets"])
    assert res.exit_code == 0
    for name in ("ml-100k", "gowalla", "synthetic", "amazon-beauty-cf"):
        assert name in res.output


def test_monitor_test_refuses_selection_on_test(tmp_path) -> None:
    runner = CliRunner()
    args = ["fit", "bpr", "--data", "synthetic:tiny", "--split", "random:0.8,0,0.2", "--no-progress",
            "--set", "epochs=2", "--monitor-test"]
    res = runner.invoke(cli, [*args, "--out", str(tmp_path / "a")])
    assert res.exit_code != 0 and "select_best=false" in str(res.exception)
    res = runner.invoke(cli, [*args, "--set", "select_best=false", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    history = json.loads((tmp_path / "b" / "history.json").read_text())
    assert m["training"]["weights"] == "last epoch" and m["training"]["history_metrics_on"] == "test (monitor only)"
    assert "valid_ndcg@10" in history[-1] and "valid_recall@10" in history[-1]


def test_encode_writes_features(tmp_path) -> None:
    from recembed.encoders import ItemFeatures

    res = CliRunner().invoke(cli, ["encode", "--data", "synthetic:tiny", "--encoder", "tfidf", "--dim", "16",
                                   "--text-columns", "title,description", "--fields", "category,tags,price",
                                   "--out", str(tmp_path / "f")])
    assert res.exit_code == 0, res.output
    feats = ItemFeatures.load(tmp_path / "f")
    assert feats.dims()["text"] == 16 and "fields" in feats and feats.num_items == 200
    info = json.loads((tmp_path / "f" / "encode.json").read_text())
    assert info["items"] == 200 and info["items_per_second"] > 0


def test_fit_takes_features_and_text_columns(tmp_path) -> None:
    import numpy as np

    vec = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float16)  # float16 storage is widened
    np.save(tmp_path / "img.npy", vec)
    runner = CliRunner()
    res = runner.invoke(cli, ["encode", "--data", "synthetic:tiny", "--encoder", "tfidf", "--dim", "12",
                              "--text-columns", "title", "--out", str(tmp_path / "enc")])
    assert res.exit_code == 0, res.output
    base = ["fit", "vbpr", "--data", "synthetic:tiny", "--no-progress", "--set", "epochs=2"]
    res = runner.invoke(cli, [*base, "--features", f"image={tmp_path / 'img.npy'}", "--features", str(tmp_path / "enc"),
                              "--text-columns", "title,description", "--encoder", "tfidf",
                              "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "content added: image, text, tfidf_text" in " ".join(res.output.split())
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data"]["text_columns"] == "title,description" and len(cfg["data"]["features"]) == 2
    # bad specs name the problem
    res = runner.invoke(cli, [*base, "--features", "image=", "--out", str(tmp_path / "bad1")])
    assert res.exit_code != 0 and "NAME=PATH" in str(res.exception)
    np.save(tmp_path / "big.npy", np.zeros((999, 4), dtype=np.float32))
    res = runner.invoke(cli, [*base, "--features", f"x={tmp_path / 'big.npy'}", "--out", str(tmp_path / "bad2")])
    assert res.exit_code != 0 and "big.npy" in str(res.exception) and "999 rows" in str(res.exception)
    assert not (tmp_path / "bad2" / "metrics.json").exists()
