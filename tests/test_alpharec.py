"""AlphaRec: conformance, cold (zero-shot) items ranked from their language vectors, missing vectors."""

from __future__ import annotations

import numpy as np

from recembed.data.splits import cold_items_split
from recembed.data.tables import Table
from recembed.evaluation.ranking import evaluate
from recembed.models.registry import model_class
from recembed.testing.conformance import ContentConformance
from recembed.testing.fixtures import cold_only_ndcg, planted_dataset, planted_item_table, planted_split

PARAMS = {"epochs": 40, "learning_rate": 0.01, "batch_size": 1024, "patience": 0, "num_negatives": 64,
          "temperature": 0.05, "hidden_dim": 32, "embedding_dim": 32}


class TestAlphaRec(ContentConformance):
    model_name = "alpharec"
    params = PARAMS


    def test_embed_history_reproduces_training_users(self, fitted) -> None:
        model, split = fitted
        train = split.train.csr()
        users = np.array([0, 5, 42])
        emb = model.embed_history([train[u].indices for u in users])
        np.testing.assert_allclose(emb, model.user_embeddings()[users], atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(model.item_embeddings(), axis=1), 1.0, atol=1e-5)
        assert np.isfinite(model.embed_history([[]])).all()


def test_alpharec_ranks_cold_items_from_language_vectors() -> None:
    ds = planted_dataset()
    split = cold_items_split(ds.interactions, ds.users, ds.items, 0.2, seed=3)
    cold = np.flatnonzero(np.asarray(split.train.csr().sum(axis=0)).ravel() == 0)
    assert len(cold) > 20
    ours = model_class("alpharec")(**PARAMS).fit(split.train, item_table=planted_item_table())
    bpr = model_class("bpr")(epochs=30, learning_rate=0.01, batch_size=1024, patience=0).fit(split.train)
    rng = np.random.default_rng(0)
    a = cold_only_ndcg(ours.score, split, cold)
    b = cold_only_ndcg(bpr.score, split, cold)
    r = cold_only_ndcg(lambda u: rng.random((len(u), ds.num_items)).astype(np.float32), split, cold)
    print(f"cold ndcg@10: alpharec {a:.4f}, bpr {b:.4f}, random {r:.4f}")
    assert a > 2 * r, (a, r)
    assert a > 2 * b, (a, b)  # BPR's cold-item factors are untrained noise


def test_missing_language_vectors_give_finite_scores() -> None:
    split = planted_split()
    content = np.array(planted_item_table()["content"], dtype=np.float32)
    content[::3] = 0.0  # every third item has no language vector
    table = Table(len(content))
    table.add("text_feat", content, "vector")
    model = model_class("alpharec")(**{**PARAMS, "epochs": 3}).fit(split.train, item_table=table)
    assert np.isfinite(model.score(np.arange(split.train.num_users))).all()
    assert np.isfinite(model.item_embeddings()).all()
    assert np.isfinite(model.embed_history([[0, 3, 6]])).all()  # a history of only zero-vector items


def test_cold_items_borrow_neighbour_layers_in_the_mixed_ranking() -> None:
    """In a ranking over all items, a cold item's lone layer-0 vector loses to warm items' graph-smoothed ones;
    borrowing its content neighbours' propagated layers puts it back in the running (warm items unchanged)."""
    ds = planted_dataset()
    split = cold_items_split(ds.interactions, ds.users, ds.items, 0.2, seed=3)
    table = planted_item_table()
    ndcg = {}
    models = {}
    for mode in ("layer0", "neighbours"):
        models[mode] = model_class("alpharec")(**PARAMS, cold_items=mode).fit(split.train, item_table=table)
        ndcg[mode] = evaluate(models[mode].score, split.test.csr(), split.train.csr(), ks=(10,)).summary["ndcg@10"]
    assert ndcg["neighbours"] > 1.5 * ndcg["layer0"], ndcg
    warm = split.train.item_counts() > 0
    np.testing.assert_allclose(models["neighbours"].item_embeddings()[warm],
                               models["layer0"].item_embeddings()[warm], atol=1e-6)
