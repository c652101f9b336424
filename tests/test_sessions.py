"""[Tasks] session-based recommendation: the P@K / MRR@K protocol against a brute-force reference, the session kNN
models on a planted transition that popularity cannot find, the CLI's session path (a run, bad inputs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from recembed.evaluation.sessions import evaluate_sessions, target_ranks
from recembed.models.registry import SESSION_MODELS, model_class
from recembed.tasks.sessions import SessionTask, all_prefixes, session_interactions
from recembed.training.sequences import Sequences


def brute_force(scores: np.ndarray, targets: np.ndarray, k: int) -> tuple[float, float]:
    hits, rr = [], []
    for s, t in zip(scores, targets):
        top = np.argsort(-s, kind="stable")[:k]  # all items ranked, ties to the lower index, nothing excluded
        where = np.flatnonzero(top == t)
        hits.append(len(where) > 0)
        rr.append(1.0 / (where[0] + 1) if len(where) else 0.0)
    return float(np.mean(hits)), float(np.mean(rr))


def test_p_and_mrr_match_a_brute_force_reference() -> None:
    rng = np.random.default_rng(0)
    n, items = 203, 60
    scores = rng.integers(0, 8, size=(n, items)).astype(np.float32)  # many ties
    scores[::7] = rng.normal(size=(len(scores[::7]), items))
    targets = rng.integers(0, items, size=n)
    targets[5] = -1  # an item outside the catalog: a miss
    prefixes = [rng.integers(0, items, size=rng.integers(1, 6)) for _ in range(n)]
    calls: list[int] = []

    def scorer(block: list[np.ndarray]) -> np.ndarray:  # blocks arrive in order: rows start .. start + len
        start = sum(calls)
        calls.append(len(block))
        return scores[start : start + len(block)]

    result = evaluate_sessions(scorer, prefixes, targets, ks=(5, 20), batch_size=17)
    assert max(calls) == 17 and sum(calls) == n
    for k in (5, 20):
        p, mrr = brute_force(scores, targets, k)
        assert result.summary[f"p@{k}"] == pytest.approx(p) and result.summary[f"hit@{k}"] == pytest.approx(p)
        assert result.summary[f"mrr@{k}"] == pytest.approx(mrr)
    assert result.ranks[5] == items + 1 and result.summary["prefixes"] == n
    assert target_ranks(np.array([[1.0, np.nan, 1.0]]), np.array([2]))[0] == 2  # NaN last, tie to index 0


def planted_sessions(seed: int = 0) -> tuple[Sequences, list[np.ndarray], np.ndarray, int]:
    """Random sessions over popular items 0..39; item 100 + j, whenever clicked, is followed by 150 + j (rare)."""
    rng = np.random.default_rng(seed)
    popular = np.arange(40)
    p = 1.0 / (1 + popular)
    p /= p.sum()
    sessions = []
    for s in range(1500):
        sess = list(rng.choice(popular, size=rng.integers(2, 6), p=p))
        if s % 5 == 0:
            j = rng.integers(0, 20)
            at = rng.integers(0, len(sess) + 1)
            sess[at:at] = [100 + j, 150 + j]
        sessions.append(sess)
    prefixes, targets = [], []
    for j in range(20):  # test: a popular click or two, then the planted item
        prefixes.append(np.array([*rng.choice(popular, size=rng.integers(0, 3), p=p), 100 + j]))
        targets.append(150 + j)
    return Sequences.from_lists(sessions), prefixes, np.array(targets), 200


@pytest.mark.parametrize("name", sorted(SESSION_MODELS))
def test_each_knn_model_learns_a_planted_transition_that_popularity_cannot(name: str, tmp_path: Path) -> None:
    seqs, prefixes, targets, n_items = planted_sessions()
    train = session_interactions(seqs, n_items)
    model = model_class(name)(k=50, block_size=8).fit(train)
    ours = evaluate_sessions(model.score_histories, prefixes, targets).summary
    pop = model_class("pop")().fit(train)
    base = evaluate_sessions(pop.score_histories, prefixes, targets).summary
    assert base["p@20"] == 0.0
    assert ours["p@20"] == 1.0 and ours["mrr@20"] > 0.2, ours  # the prefix's popular clicks may rank first
    scores = model.score_histories(prefixes)
    assert scores.shape == (20, n_items) and scores.dtype == np.float32
    again = type(model).load(model.save(tmp_path / name))  # the saved form scores the same
    np.testing.assert_array_equal(again.score_histories(prefixes), scores)
    assert np.all(np.isfinite(model.score(np.arange(3))))  # known sessions, from their own clicks


def test_stan_decays_prefer_the_recent_click_and_the_nearby_item() -> None:
    # neighbour sessions: 1 -> 2 -> 3 -> ... ; after the prefix [5, 1] the nearby follow-up of 1 beats that of 5
    sessions = [[5, 6, 7, 8, 9, 10, 1, 2]] * 3 + [[1, 2, 11, 12, 13, 14, 15, 16]] * 3
    model = model_class("stan")(lambda1=1.0, lambda3=1.0).fit(session_interactions(Sequences.from_lists(sessions), 20))
    s = model.score_histories([[5, 1]])[0]
    assert s[2] > s[6] and s[2] > s[16]


def test_all_prefixes_and_the_validation_cut() -> None:
    seqs = Sequences.from_lists([[1, 2, 3], [4, 5], [6, 7, 8, 9]])
    prefixes, targets = all_prefixes(seqs)
    assert [p.tolist() for p in prefixes] == [[1], [1, 2], [4], [6], [6, 7], [6, 7, 8]]
    assert targets.tolist() == [2, 3, 5, 7, 8, 9]
    from recembed.data.vocab import Vocabulary

    task = SessionTask("t", Vocabulary.from_range(10), seqs, [], np.zeros(0, dtype=np.int64))
    v = task.validation(0.34)
    assert v.train.num_users == 2 and v.test_targets.tolist() == [7, 8, 9]
    train, valid = task.held_out_last(0.34)
    assert len(valid) == 1 and valid.item_idx.tolist() == [9] and len(train) == 8


def write_session_root(root: Path) -> Path:
    seqs, prefixes, targets, _ = planted_sessions()
    folder = root / "diginetica-session"
    folder.mkdir(parents=True)
    lines = [" ".join(str(i + 1) for i in seqs.items[seqs.indptr[u]: seqs.indptr[u + 1]]) for u in
             range(seqs.num_users)]
    (folder / "train_sessions.txt").write_text("\n".join(lines) + "\n")
    rows = ["prefix\ttarget"] + [" ".join(str(i + 1) for i in p) + f"\t{t + 1}" for p, t in zip(prefixes, targets)]
    (folder / "test_prefix_target.tsv").write_text("\n".join(rows) + "\n")
    return root


def run_main(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from recembed.cli.main import main

    old = sys.argv
    sys.argv = ["recembed", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())


def test_cli_fits_a_session_model_and_the_run_recommends(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_session_root(tmp_path / "data")
    run = tmp_path / "run"
    code, text = run_main(["fit", "vsknn", "--data", "diginetica-session", "--data-root", str(root), "--out",
                           str(run), "--ks", "10,20", "--set", "k=50"], capsys)
    assert code == 0, text
    m = json.loads((run / "metrics.json").read_text())
    assert m["task"] == "session" and m["test"]["p@20"] == 1.0 and m["test"]["prefixes"] == 20
    assert {"fit_seconds", "eval_seconds", "peak_rss_mb"} <= set(m) and "P@20" in text and "100.00" in text
    code, text = run_main(["recommend", str(run), "--history", "101", "--k", "3"], capsys)  # item id 101 = idx 100
    assert code == 0 and "151" in text, text
    # the service: POST /v1/recommendations with a session, from the run's bundle
    from fastapi.testclient import TestClient

    from recembed.serve.app import AppConfig, create_app

    code, text = run_main(["bundle", str(run), "--out", str(tmp_path / "bundle")], capsys)
    assert code == 0, text
    with TestClient(create_app(AppConfig(bundle=str(tmp_path / "bundle")))) as client:
        r = client.post("/v1/recommendations", json={"history": ["3", "101"], "k": 5})
    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["item_id"] == "151", r.json()


@pytest.mark.parametrize("args, needle", [
    (["fit", "vsknn", "--data", "ml-100k"], "--data"),
    (["fit", "vsknn", "--data", "diginetica-session", "--split", "loo"], "--split"),
    (["fit", "stan", "--data", "diginetica-session", "--set", "lambda1=-1"], "lambda1"),
    (["fit", "sknn", "--data", "diginetica-session", "--set", "kk=3"], "kk"),
    (["fit", "vsknn", "--data", "diginetica-session", "--set", "weighting=cubic"], "weighting"),
    (["fit", "bpr", "--data", "diginetica-session"], "anonymous session"),
])
def test_cli_bad_session_inputs_exit_2_naming_the_flag(args: list[str], needle: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    root = write_session_root(tmp_path / "data")
    code, text = run_main([*args, "--data-root", str(root), "--out", str(tmp_path / "run")], capsys)
    assert code == 2, text
    assert needle in text and "Traceback" not in text, text
