"""Content models rank items they never saw in training, from content alone."""

from __future__ import annotations

import numpy as np
import pytest

from recembed.data.splits import cold_items_split
from recembed.errors import ConfigError
from recembed.evaluation.ranking import evaluate
from recembed.models.registry import model_class
from recembed.testing.fixtures import cold_only_ndcg, planted_dataset, planted_item_table

CONTENT_PARAMS = {
    "vbpr": {"epochs": 30, "learning_rate": 0.01, "batch_size": 1024, "patience": 0},
    "bm3": {"epochs": 30, "learning_rate": 0.01, "batch_size": 512, "patience": 0, "dropout": 0.5},
    "cease": {"l2": 50.0, "content_weight": 20.0},
    "mgcn": {"epochs": 20, "learning_rate": 0.01, "batch_size": 1024, "patience": 0, "embedding_dim": 32},
}


@pytest.mark.parametrize("name", sorted(CONTENT_PARAMS))
def test_content_model_ranks_cold_items_where_ids_cannot(name: str) -> None:
    ds = planted_dataset()
    table = planted_item_table()
    split = cold_items_split(ds.interactions, ds.users, ds.items, 0.2, seed=3)
    cold = np.flatnonzero(np.asarray(split.train.csr().sum(axis=0)).ravel() == 0)
    assert len(cold) > 20
    params = CONTENT_PARAMS[name]
    model = model_class(name)(**params).fit(split.train, item_table=table)
    bpr = model_class("bpr")(**CONTENT_PARAMS["vbpr"]).fit(split.train)
    ours, ids_only = cold_only_ndcg(model.score, split, cold), cold_only_ndcg(bpr.score, split, cold)
    rng = np.random.default_rng(0)
    random = evaluate(lambda u: rng.random((len(u), ds.num_items)).astype(np.float32) +
                      np.where(np.isin(np.arange(ds.num_items), cold), 0, -np.inf).astype(np.float32),
                      split.test.csr(), split.train.csr(), ks=(10,)).summary["ndcg@10"]
    assert ours > 2 * random, (ours, random)
    assert ours > 2 * ids_only, (ours, ids_only)  # BPR's cold-item factors are untrained noise


def test_vbpr_without_content_is_a_clear_error() -> None:
    ds = planted_dataset()
    split = cold_items_split(ds.interactions, ds.users, ds.items, 0.2, seed=3)
    with pytest.raises(ConfigError, match="vector columns"):
        model_class("vbpr")(epochs=1).fit(split.train)
    with pytest.raises(ConfigError, match="nosuch"):
        model_class("vbpr")(epochs=1, features="nosuch").fit(split.train, item_table=planted_item_table())


def test_metrics_json_ranks_cold_items_among_cold_items_only(tmp_path) -> None:  # noqa: ANN001
    from recembed.runs import cold_test_items, fit_and_evaluate

    ds = planted_dataset()
    ds.item_table = planted_item_table()
    split = cold_items_split(ds.interactions, ds.users, ds.items, 0.4, seed=3)
    cold = cold_test_items(split)
    assert cold.sum() >= 40 and not (cold & (split.train.item_counts() > 0)).any()
    rand = fit_and_evaluate("random", ds, split, out_dir=tmp_path / "random").metrics
    vbpr = fit_and_evaluate("vbpr", ds, split, params={"epochs": 30, "learning_rate": 0.01, "batch_size": 1024,
                                                       "patience": 0}).metrics
    for m in (rand, vbpr):
        assert m["test_cold"]["candidate_items"] == int(cold.sum())
        assert set(m["test"]) - {"candidate_items"} <= set(m["test_cold"])
    # a random order among C candidates has expected Recall@K = K / C
    c = int(cold.sum())
    assert rand["test_cold"]["recall@10"] == pytest.approx(10 / c, rel=0.35)
    assert vbpr["test_cold"]["ndcg@10"] > 1.4 * rand["test_cold"]["ndcg@10"]
    # only cold candidates compete, so the same lists rank better than in the mixed (all-items) ranking
    assert vbpr["test_cold"]["recall@10"] >= vbpr["test"]["recall@10"]
    import json

    assert json.loads((tmp_path / "random" / "metrics.json").read_text())["test_cold"] == rand["test_cold"]


def test_no_test_cold_section_without_cold_items() -> None:
    from recembed.runs import fit_and_evaluate
    from recembed.testing.fixtures import planted_split

    ds = planted_dataset()
    split = planted_split()
    assert not ((split.train.item_counts() == 0) & (split.test.item_counts() > 0)).any()
    assert "test_cold" not in fit_and_evaluate("pop", ds, split).metrics


def test_cease_without_content_is_ease_and_content_changes_it() -> None:
    ds = planted_dataset()
    split = cold_items_split(ds.interactions, ds.users, ds.items, 0.2, seed=3)
    table = planted_item_table()
    ease = model_class("ease")(l2=50.0).fit(split.train)
    same = model_class("cease")(l2=50.0, content_weight=0.0).fit(split.train, item_table=table)
    np.testing.assert_allclose(same.weights_, ease.weights_, atol=1e-6)
    cold = np.flatnonzero(split.train.item_counts() == 0)
    assert np.abs(ease.weights_[:, cold]).max() == 0  # EASE cannot reach items it never saw
    cease = model_class("cease")(l2=50.0, content_weight=20.0).fit(split.train, item_table=table)
    assert np.abs(cease.weights_[:, cold]).max() > 0
    with pytest.raises(ConfigError, match="vector columns"):
        model_class("cease")().fit(split.train)
