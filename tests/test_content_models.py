"""Content models rank items they never saw in training, from content alone."""

from __future__ import annotations

import numpy as np
import pytest

from recembed.data.splits import cold_items_split
from recembed.errors import ConfigError
from recembed.evaluation.ranking import evaluate
from recembed.models.registry import model_class
from recembed.testing.fixtures import planted_dataset, planted_item_table


def _cold_ndcg(model, split, cold: np.ndarray) -> float:  # noqa: ANN001
    """NDCG@10 of the test items when only the cold items are candidates."""
    def score(users: np.ndarray) -> np.ndarray:
        s = model.score(users)
        mask = np.full(s.shape[1], -np.inf, dtype=np.float32)
        mask[cold] = 0
        return s + mask

    return evaluate(score, split.test.csr(), split.train.csr(), ks=(10,)).summary["ndcg@10"]


def test_vbpr_ranks_cold_items_by_content_where_ids_cannot() -> None:
    ds = planted_dataset()
    table = planted_item_table()
    split = cold_items_split(ds.interactions, ds.users, ds.items, 0.2, seed=3)
    cold = np.flatnonzero(np.asarray(split.train.csr().sum(axis=0)).ravel() == 0)
    assert len(cold) > 20
    params = {"epochs": 30, "learning_rate": 0.01, "batch_size": 1024, "patience": 0}
    vbpr = model_class("vbpr")(**params).fit(split.train, item_table=table)
    bpr = model_class("bpr")(**params).fit(split.train)
    ours, ids_only = _cold_ndcg(vbpr, split, cold), _cold_ndcg(bpr, split, cold)
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
