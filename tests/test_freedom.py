"""FREEDOM: conformance, cold items ranked through the frozen item-item graph, missing modalities."""

from __future__ import annotations

import numpy as np
import pytest

from recembed.data.splits import cold_items_split
from recembed.data.tables import Table
from recembed.errors import ConfigError
from recembed.models.content.freedom import FREEDOMTask, fused_item_graph, knn_graph
from recembed.models.registry import model_class
from recembed.options import FitOptions
from recembed.testing.conformance import ContentConformance
from recembed.testing.fixtures import cold_only_ndcg, planted_dataset, planted_item_table, planted_split

PARAMS = {"epochs": 20, "learning_rate": 0.01, "batch_size": 1024, "patience": 0, "embedding_dim": 32}


class TestFREEDOM(ContentConformance):
    model_name = "freedom"
    params = PARAMS



@pytest.mark.parametrize("extra", [{}, {"num_negatives": 3, "l2_weight": 1e-3}])
def test_freedom_ranks_cold_items_through_the_item_graph(extra) -> None:
    ds = planted_dataset()
    split = cold_items_split(ds.interactions, ds.users, ds.items, 0.2, seed=3)
    cold = np.flatnonzero(np.asarray(split.train.csr().sum(axis=0)).ravel() == 0)
    assert len(cold) > 20
    freedom = model_class("freedom")(**PARAMS, **extra).fit(split.train, item_table=planted_item_table())
    # the ID-only baseline as it was before BPR's defaults changed (issue #20): no L2, batch as set
    bpr = model_class("bpr")(**{k: v for k, v in PARAMS.items() if k != "embedding_dim"}, reg_weight=0.0,
                             min_steps=0).fit(split.train)
    ours, ids_only = cold_only_ndcg(freedom.score, split, cold), cold_only_ndcg(bpr.score, split, cold)
    rng = np.random.default_rng(0)
    random = cold_only_ndcg(lambda u: rng.random((len(u), ds.num_items)).astype(np.float32), split, cold)
    assert ours > 2 * random, (ours, random)
    assert ours > 2 * ids_only, (ours, ids_only)


def test_missing_modality_rows_give_finite_scores() -> None:
    split = planted_split()
    base = planted_item_table()
    n = base.num_rows
    rng = np.random.default_rng(1)
    a = np.asarray(base["content"], dtype=np.float32).copy()
    b = rng.standard_normal((n, 8)).astype(np.float32)
    a[:30] = 0.0  # items 0..29 lack modality a
    b[20:50] = 0.0  # items 20..49 lack modality b (20..29 lack both)
    table = Table(n)
    table.add("a", a, "vector")
    table.add("b", b, "vector")
    model = model_class("freedom")(**{**PARAMS, "epochs": 3, "modality_weights": "a=0.3,b=0.7"})
    model.fit(split.train, item_table=table)
    scores = model.score(np.arange(split.train.num_users))
    assert np.isfinite(scores).all()
    graph = fused_item_graph({"a": a, "b": b}, {"a": 0.3, "b": 0.7}, 5)
    sums = np.asarray(graph.sum(axis=1)).ravel()
    assert np.isfinite(graph.data).all()
    np.testing.assert_allclose(sums[50:], 1.0, rtol=1e-5)  # complete items: rows are weighted averages
    np.testing.assert_allclose(sums[:20], 1.0, rtol=1e-5)  # re-weighted over the one modality they have
    assert (sums[20:30] == 0).all()  # no content at all: no edges
    g, present = knn_graph(a, 5)
    assert not present[:30].any() and g[:, :30].nnz == 0  # absent items are nobody's neighbour


def test_pruning_is_seeded_degree_sensitive_and_renormalised() -> None:
    train = planted_split().train.csr()
    task = FREEDOMTask(train, 512, reg_weight=0.0, dropout=0.8)
    a = task.prune(np.random.default_rng(5))
    b = task.prune(np.random.default_rng(5))
    assert (a != b).nnz == 0
    num_users = train.shape[0]
    kept = a[:num_users, num_users:]
    assert kept.nnz == int(train.nnz * 0.2)
    assert (kept.multiply(train) != 0).sum() == kept.nnz  # only training edges
    du, di = np.diff(train.indptr), np.bincount(train.indices, minlength=train.shape[1])
    rows, cols = kept.nonzero()
    # low-degree edges (weight 1/sqrt(d_u d_i)) are kept more often than the average edge
    all_rows, all_cols = train.nonzero()
    assert np.mean(1 / np.sqrt(du[rows] * di[cols])) > np.mean(1 / np.sqrt(du[all_rows] * di[all_cols]))
    deg = np.asarray((kept != 0).sum(axis=1)).ravel()
    r = rows[0]
    c = cols[0]
    ideg = np.asarray((kept != 0).sum(axis=0)).ravel()
    assert kept[r, c] == pytest.approx(1 / np.sqrt(deg[r] * ideg[c]), rel=1e-5)
    assert FREEDOMTask(train, 512, reg_weight=0.0, dropout=0.0).prune(np.random.default_rng(0)) is None


def test_bad_modality_weights_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="modality_weights"):
        model_class("freedom")(modality_weights="content=abc")
    with pytest.raises(ConfigError, match="modality_weights"):
        model_class("freedom")(epochs=1, modality_weights="nosuch=1").fit(planted_split().train,
                                                                        item_table=planted_item_table())
    with pytest.raises(ConfigError, match="vector columns"):
        model_class("freedom")(epochs=1).fit(planted_split().train)


def test_resume_reproduces_uninterrupted_run(tmp_path) -> None:

    split, table = planted_split(), planted_item_table()
    params = {**PARAMS, "epochs": 4}
    full = model_class("freedom")(**params).fit(split.train, item_table=table,
                                                options=FitOptions(show_progress=False, seed=3))
    ckpt = FitOptions(show_progress=False, seed=3, checkpoint_dir=str(tmp_path / "ck"), resume=True)
    model_class("freedom")(**{**params, "epochs": 2}).fit(split.train, item_table=table, options=ckpt)
    resumed = model_class("freedom")(**params).fit(split.train, item_table=table, options=ckpt)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    np.testing.assert_array_equal(resumed.item_factors_, full.item_factors_)
    np.testing.assert_array_equal(resumed.user_factors_, full.user_factors_)

