"""On ml-100k with the PEERS.md split, the closed-form baselines match RecBole 1.2.1 / Cornac."""

from __future__ import annotations

import pytest
from conftest import DATA_ROOT, data_dir

from recembed.data.catalog import load
from recembed.data.splits import make_split
from recembed.runs import evaluate_split, fit_and_evaluate

# ../shared/benchmarks/PEERS.md (test metrics, full ranking)
PEERS = {
    "ease": {"ndcg@10": 0.3295, "recall@10": 0.2805, "ndcg@20": 0.3465, "recall@20": 0.3998},  # RecBole EASE
    "itemknn": {"ndcg@10": 0.2833, "recall@10": 0.2469, "ndcg@20": 0.3041, "recall@20": 0.3668},  # RecBole
    "pop": {"ndcg@10": 0.1418, "recall@10": 0.1278, "ndcg@20": 0.1500, "recall@20": 0.1792},  # Cornac MostPop
}


@pytest.fixture(scope="module")
def ml100k_split():
    folder = data_dir("ml-100k")
    ds = load("ml-100k", root=DATA_ROOT)
    return ds, make_split(ds, str(folder / "splits" / "random-80-10-10"))


def test_given_split_loads_exactly(ml100k_split) -> None:
    ds, split = ml100k_split
    assert (ds.num_users, ds.num_items) == (943, 1682)
    assert split.sizes() == {"train": 80808, "valid": 9596, "test": 9596}
    assert split.overlap() == {"train&valid": 0, "train&test": 0, "valid&test": 0}
    # every rating of the dataset is in exactly one part
    assert sum(split.sizes().values()) == len(ds.interactions)


@pytest.mark.parametrize("model", sorted(PEERS))
def test_matches_peer_within_tolerance(ml100k_split, model) -> None:
    ds, split = ml100k_split
    result = fit_and_evaluate(model, ds, split, ks=(10, 20))
    for metric, peer in PEERS[model].items():
        assert result.metrics["test"][metric] == pytest.approx(peer, abs=0.005), metric
    assert result.metrics["test"]["users"] == 943


def test_test_masks_validation_items(ml100k_split) -> None:
    ds, split = ml100k_split
    result = fit_and_evaluate("ease", ds, split, ks=(50,))
    train, valid = split.train.csr(), split.valid.csr()
    for row, u in enumerate(result.test.users[:100]):
        shown = set(result.test.topk[row].tolist())
        assert not shown & set(train[u].indices.tolist())
        assert not shown & set(valid[u].indices.tolist())
    # validation ranks over train-masked items only: validation positives can appear there
    vres = evaluate_split(result.model, split, "valid", ks=(50,))
    assert vres.summary["recall@50"] > 0.3
