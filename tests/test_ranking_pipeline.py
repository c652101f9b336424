"""[Rank] rankers on interaction data (implicit CTR rows from a split) and retrieve-then-rank (`recembed pipeline`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_rankers import run_main

from recembed.data import catalog
from recembed.data.splits import make_split
from recembed.ranking.implicit import ctr_from_split, fields_for, pair_frame

SPLIT = "random:0.8,0.1,0.1"


class _Result:
    def __init__(self, exit_code: int, output: str) -> None:
        self.exit_code, self.output = exit_code, output


def _invoke(args: list[str]) -> _Result:
    """The real entry point (``main``: a RecembedError is exit code 2 with a message), via test_rankers.run_main."""
    return _Result(*run_main([*args, "--no-progress"]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:  # noqa: ANN001
    root = tmp_path_factory.mktemp("pipeline")
    out = {"ease": root / "ease", "deepfm": root / "deepfm", "other": root / "deepfm-other"}
    for args in (["fit", "ease", "--data", "synthetic:tiny", "--split", SPLIT, "--out", str(out["ease"])],
                 ["fit", "deepfm", "--data", "synthetic:tiny", "--split", SPLIT, "--out", str(out["deepfm"]),
                  "--set", "epochs=3"],
                 ["fit", "deepfm", "--data", "synthetic:tiny", "--split", "random:0.7,0.1,0.2",
                  "--out", str(out["other"]), "--set", "epochs=1"]):
        res = _invoke(args)
        assert res.exit_code == 0, res.output
    return out


def test_implicit_rows_are_clicks_and_unseen_non_clicks() -> None:
    ds = catalog.load("synthetic:tiny")
    split = make_split(ds, SPLIT, seed=2020)
    data = ctr_from_split(ds, split, negatives=3, seed=1)
    names = [f.name for f in data.fields]
    assert names[:2] == ["user_id", "item_id"] and {"category", "tags", "price"} <= set(names)
    assert "title" not in names  # text columns are not fields (encode them first)
    every = set()
    for p in ("train", "valid", "test"):
        part = getattr(split, p)
        every |= set(zip(ds.users.ids[part.user_idx], ds.items.ids[part.item_idx]))
    for p in ("train", "valid", "test"):
        frame = data.part(p)
        assert len(frame) == 4 * len(getattr(split, p)) and frame.labels.sum() == len(getattr(split, p))
        neg = frame.labels == 0
        pairs = set(zip(frame.columns["user_id"][neg], frame.columns["item_id"][neg]))
        assert not pairs & every  # a non-click is never an interaction of any part
    # pair_frame builds the same columns for arbitrary pairs (what the pipeline scores)
    rows = pair_frame(ds, data.fields, np.array([0, 1]), np.array([5, 7]))
    assert list(rows.columns["item_id"]) == list(ds.items.ids[[5, 7]])
    assert list(rows.columns["category"]) == list(ds.item_table["category"][[5, 7]])
    assert fields_for(ds) == data.fields


def test_pipeline_reports_both_stages(runs: dict[str, Path], tmp_path: Path) -> None:
    res = _invoke(["pipeline", "--retriever", str(runs["ease"]), "--ranker", str(runs["deepfm"]),
                   "--candidates", "30", "--ks", "10", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert m["candidates"] == 30 and m["users"] > 0
    for part in ("retriever_alone", "pipeline"):
        assert 0.0 <= m[part]["ndcg@10"] <= 1.0 and 0.0 <= m[part]["recall@10"] <= 1.0
    # recall within the candidates can only be what the retriever put there: at K = candidates they are equal
    res = _invoke(["pipeline", "--retriever", str(runs["ease"]), "--ranker", str(runs["deepfm"]),
                   "--candidates", "10", "--ks", "10", "--out", str(tmp_path / "q")])
    assert res.exit_code == 0, res.output
    q = json.loads((tmp_path / "q" / "metrics.json").read_text())
    assert q["pipeline"]["recall@10"] == pytest.approx(q["retriever_alone"]["recall@10"])


@pytest.mark.parametrize(("which", "extra", "fragment"), [
    ("other", [], "the pipeline needs both on the same data and split"),
    ("deepfm", ["--ks", "50", "--candidates", "20"], "--ks: 50 is above --candidates 20"),
])
def test_pipeline_refuses_mismatched_stages(runs: dict[str, Path], which: str, extra: list[str],
                                             fragment: str) -> None:
    res = _invoke(["pipeline", "--retriever", str(runs["ease"]), "--ranker", str(runs[which]), *extra])
    assert res.exit_code == 2, res.output
    assert fragment in " ".join(res.output.split()) and "Traceback" not in res.output


@pytest.mark.parametrize(("args", "fragment"), [
    (["fit", "deepfm", "--data", "ml-100k-ctr", "--split", "loo", "--out", "x"], "--split: ml-100k-ctr is a CTR dataset"),
    (["fit", "ease", "--data", "ml-100k-ctr", "--out", "x"], "ml-100k-ctr is a CTR dataset, for the rankers"),
    (["fit", "deepfm", "--data", "synthetic:tiny", "--set", "valid_metric=ndcg@10", "--out", "x"],
     "valid_metric: a CTR model validates on one of"),
    (["fit", "deepfm", "--data", "synthetic:tiny", "--monitor-test", "--out", "x"], "--monitor-test: deepfm is a CTR"),
])
def test_ranker_fit_bad_input(args: list[str], fragment: str, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    res = _invoke(args)
    assert res.exit_code == 2, res.output
    assert fragment in " ".join(res.output.split()) and "Traceback" not in res.output
