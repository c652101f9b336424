"""[Rank] a ranker fitted on its retriever's own candidates (`recembed fit deepfm --retriever RUN`), the pipeline's
`--refit`, and the service passing the retrieval scores to such a ranker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ranking_pipeline import SPLIT, _invoke

from recembed.data import catalog
from recembed.errors import DataError
from recembed.ranking.candidates import ctr_from_candidates, top_candidates
from recembed.ranking.implicit import (
    ACTIVITY_FIELDS,
    PAIR_FIELDS,
    RETRIEVAL_GAP,
    RETRIEVAL_RANK,
    RETRIEVAL_SCORE,
    EncodedPairs,
    PairFeatures,
    activity,
    pair_frame,
    retrieval_columns,
)
from recembed.ranking.pipeline import index_map
from recembed.ranking.runs import load_ranker_run
from recembed.ranking.schema import Frame, Ragged
from recembed.runs import load_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:  # noqa: ANN001
    root = tmp_path_factory.mktemp("candidates")
    out = {n: root / n for n in ("ease", "pop", "deepfm", "bundle")}
    for args in (["fit", "ease", "--data", "synthetic:tiny", "--split", SPLIT, "--out", str(out["ease"])],
                 ["fit", "pop", "--data", "synthetic:tiny", "--split", SPLIT, "--out", str(out["pop"])],
                 ["fit", "deepfm", "--data", "synthetic:tiny", "--retriever", str(out["ease"]), "--candidates", "40",
                  "--out", str(out["deepfm"]), "--set", "epochs=3", "--threads", "1"],
                 ["bundle", str(out["ease"]), "--ranker", str(out["deepfm"]), "--candidates", "40",
                  "--out", str(out["bundle"])]):
        res = _invoke(args)
        assert res.exit_code == 0, res.output
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=3, max_size=3), min_size=1, max_size=5))
def test_retrieval_columns_rank_and_gap(rows: list[list[float]]) -> None:
    scores = np.asarray(rows)
    cols = retrieval_columns(scores)
    rank = np.expm1(cols[RETRIEVAL_RANK]).round().astype(int).reshape(scores.shape)
    gap = cols[RETRIEVAL_GAP].reshape(scores.shape)
    for r in range(len(scores)):
        assert sorted(rank[r]) == list(range(3))  # a permutation of places
        order = np.argsort(-scores[r], kind="stable")
        assert list(rank[r][order]) == [0, 1, 2]  # place 0 = the best score
        assert (gap[r] >= 0).all() and gap[r][order[0]] == 0
    np.testing.assert_array_equal(cols[RETRIEVAL_SCORE], scores.ravel())


def test_top_candidates_are_best_first_and_skip_excluded() -> None:
    import scipy.sparse as sp

    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.3, 0.2, 0.8, 0.1]], dtype=np.float32)
    exclude = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0]]))
    items, sc = top_candidates(scores.copy(), exclude, 2)
    np.testing.assert_array_equal(items, [[3, 2], [2, 0]])
    np.testing.assert_allclose(sc, [[0.7, 0.5], [0.8, 0.3]])


def test_frame_concat() -> None:
    a = Frame({"x": np.array([1, 2]), "t": Ragged.from_lists([["a"], ["b", "c"]])}, np.array([1.0, 0.0]),
              np.array(["u", "v"], dtype=object))
    b = Frame({"x": np.array([3]), "t": Ragged.from_lists([["d", "e"]])}, np.array([1.0]), np.array(["w"], dtype=object))
    c = Frame.concat([a, b])
    assert list(c.columns["x"]) == [1, 2, 3] and list(c.labels) == [1, 0, 1] and list(c.users) == ["u", "v", "w"]
    t = c.columns["t"]
    assert [list(t.values[t.offsets[i]: t.offsets[i + 1]]) for i in range(3)] == [["a"], ["b", "c"], ["d", "e"]]


@pytest.mark.parametrize("folds", [0, 2])
def test_rows_are_the_retrievers_candidates_labelled_by_held_out_items(runs: dict[str, Path], folds: int) -> None:
    run = load_run(runs["ease"])
    ds = catalog.load("synthetic:tiny")
    data = ctr_from_candidates(ds, run, candidates=15, seed=3, folds=folds)
    names = [f.name for f in data.fields]
    assert set(PAIR_FIELDS) | set(ACTIVITY_FIELDS) <= set(names) and names[:2] == ["user_id", "item_id"]
    split = run.split
    ids = lambda part: set(zip(run.users.ids[part.user_idx], run.items.ids[part.item_idx]))  # noqa: E731
    train, valid, test = ids(split.train), ids(split.valid), ids(split.test)
    fit_valid = Frame.concat([data.train, data.valid]) if folds == 0 else data.valid
    pairs = list(zip(fit_valid.columns["user_id"], fit_valid.columns["item_id"]))
    assert not set(pairs) & train  # candidates are outside the user's training items
    assert [p in valid for p in pairs] == list(fit_valid.labels.astype(bool))  # clicks = validation items
    assert len(pairs) == 15 * len(set(run.users.ids[split.valid.user_idx]))
    test_pairs = list(zip(data.test.columns["user_id"], data.test.columns["item_id"]))
    assert not set(test_pairs) & (train | valid)
    assert [p in test for p in test_pairs] == list(data.test.labels.astype(bool))
    # rank 0 has no gap; counts are the training part's
    first = data.test.columns[RETRIEVAL_RANK] == 0
    assert first.sum() == len(set(run.users.ids[split.test.user_idx])) and (data.test.columns[RETRIEVAL_GAP][first]
                                                                              == 0).all()
    counts = np.bincount(split.train.item_idx, minlength=len(run.items))
    item_rows = run.items.index(list(data.test.columns["item_id"]))
    np.testing.assert_allclose(data.test.columns["item_train_count"], np.log1p(counts[item_rows]))
    if folds:  # out-of-fold rows: every click is a training interaction the refitted retriever did not see
        tp = list(zip(data.train.columns["user_id"], data.train.columns["item_id"]))
        assert all(p in train for p, y in zip(tp, data.train.labels) if y == 1)


def test_the_fitted_ranker_records_its_retriever_and_the_pipeline_refits(runs: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    config = json.loads((runs["deepfm"] / "config.json").read_text())
    assert config["data"]["retriever"]["model"] == "ease" and config["data"]["candidates"] == 40
    assert config["data"]["split"] == SPLIT and "negatives" not in config["data"]
    m = json.loads((runs["deepfm"] / "metrics.json").read_text())
    assert m["test"]["auc"] > 0.55  # it learnt to order the candidates (at least by their retrieval score)
    res = _invoke(["pipeline", "--retriever", str(runs["ease"]), "--ranker", str(runs["deepfm"]), "--candidates", "40",
                   "--ks", "10", "--refit", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    p = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert p["refit"] is True and {"retriever_alone", "retriever_refit_alone", "pipeline"} <= set(p)
    assert p["retriever_refit_alone"] != p["retriever_alone"]  # the refitted retriever saw the validation part
    # another retriever's scores would mean something else to this ranker
    res = _invoke(["pipeline", "--retriever", str(runs["pop"]), "--ranker", str(runs["deepfm"])])
    assert res.exit_code == 2 and "'ease' retriever" in res.output


@pytest.mark.parametrize("args, message", [
    (["--candidates", "20"], "only with --retriever"),
    (["--retriever-folds", "2"], "only with --retriever"),
    (["--retriever", "{ease}", "--negatives", "3"], "--negatives: with --retriever"),
    (["--retriever", "{ease}", "--retriever-folds", "1"], "--retriever-folds"),
    (["--retriever", "{deepfm}"], "--retriever"),
])
def test_bad_retriever_flags_exit_2(runs: dict[str, Path], tmp_path: Path, args: list[str], message: str) -> None:
    args = [a.format(**{k: str(v) for k, v in runs.items()}) for a in args]
    res = _invoke(["fit", "deepfm", "--data", "synthetic:tiny", "--split", SPLIT, *args, "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and message in res.output, res.output


def test_flags_for_rankers_only(tmp_path: Path) -> None:
    res = _invoke(["fit", "ease", "--data", "synthetic:tiny", "--split", SPLIT, "--retriever", str(tmp_path),
                   "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--retriever: only for the CTR rankers" in res.output
    res = _invoke(["fit", "deepfm", "--data", "ml-100k-ctr", "--retriever", str(tmp_path), "--out",
                   str(tmp_path / "r")])
    assert res.exit_code == 2 and "--retriever" in res.output


def test_a_ranker_reading_scores_needs_them(runs: dict[str, Path]) -> None:
    rk = load_ranker_run(runs["deepfm"]).model
    ds = catalog.load("synthetic:tiny")
    with pytest.raises(DataError, match="count the retriever's training interactions"):
        PairFeatures.from_dataset(ds, rk.schema_.fields)
    run = load_run(runs["ease"])
    um, im = index_map(run.users, ds.users, "user"), index_map(run.items, ds.items, "item")
    feats = PairFeatures.from_dataset(ds, rk.schema_.fields, activity(run.split.train, um, im, ds.num_users,
                                                                       ds.num_items))
    pairs = EncodedPairs(feats, rk.schema_)
    with pytest.raises(DataError, match="retrieval_score"):
        pairs.arrays(np.array([0]), np.array([1]))


def test_the_service_passes_the_retrieval_scores(runs: dict[str, Path]) -> None:
    """The bundled ranker's probabilities for a user's candidates are its offline prediction on rows carrying the
    service's own retrieval scores of those candidates (rank / gap among them) and the training counts."""
    from recembed.serve.bundle_read import load_bundle
    from recembed.serve.service import RecService, ServiceOptions

    svc = RecService(load_bundle(runs["bundle"]), ServiceOptions())
    run, rk = load_run(runs["ease"]), load_ranker_run(runs["deepfm"]).model
    ds = catalog.load("synthetic:tiny")
    um, im = index_map(run.users, ds.users, "user"), index_map(run.items, ds.items, "item")
    counts = activity(run.split.train, um, im, ds.num_users, ds.num_items)
    reordered = 0
    for user in ("u0", "u3", "u17"):
        items, stages = svc.recommend_user_staged(user, k=10)
        assert stages["stages"] == ["retrieve", "rank"] and stages["candidates"] == 40
        # the service's candidates: recompute them as it does (retrieval order), then the offline rows
        u = int(run.users.index([user])[0])
        scores = np.asarray(run.model.score(np.array([u]))[0], dtype=np.float64).copy()
        for part in (run.split.train, run.split.valid, run.split.test):
            scores[part.item_idx[part.user_idx == u]] = -np.inf
        order = np.argsort(-scores, kind="stable")[:40]
        frame = pair_frame(ds, rk.schema_.fields, np.repeat(um[u], 40), im[order],
                           pair=retrieval_columns(scores[order][None, :]), counts=counts)
        probs = rk.predict(frame)
        top = np.argsort(-probs, kind="stable")[:10]
        assert [it["item_id"] for it in items] == [str(run.items.ids[order[j]]) for j in top]
        np.testing.assert_allclose([it["probability"] for it in items], probs[top], atol=1e-5)
        reordered += [it["item_id"] for it in items] != [str(run.items.ids[j]) for j in order[:10]]
    assert reordered >= 1


def test_importance_rebuilds_the_candidate_rows(runs: dict[str, Path]) -> None:
    from test_rankers import run_main

    code, output = run_main(["importance", str(runs["deepfm"]), "--repeats", "1", "--threads", "1"])
    assert code == 0, output
    imp = json.loads((runs["deepfm"] / "importance.json").read_text())
    assert "retrieval_score" in json.dumps(imp)  # the pair fields are permuted like any other
