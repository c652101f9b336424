"""The behaviour-sequence rankers (DIN, QIN), the multimodal CTR dataset and the paired bootstrap of AUC."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import torch
from conftest import DATA_ROOT, data_dir

from recembed.errors import ConfigError
from recembed.models.ranking.base import Ranker
from recembed.models.ranking.din import DIN, ActivationUnit
from recembed.models.ranking.qin import QIN
from recembed.models.registry import model_class
from recembed.options import FitOptions
from recembed.ranking.datasets import CTRData
from recembed.ranking.metrics import auc, paired_bootstrap_auc
from recembed.testing.ctr_fixtures import planted_content_ctr, planted_sequence_ctr

OPTS = FitOptions(seed=0, show_progress=False, threads=1)


def _fit(name: str, data: CTRData, **params) -> Ranker:
    return model_class(name)(**params).fit(data.train, schema=data.schema(), valid=data.valid, options=OPTS)


@pytest.fixture(scope="module")
def seq_data() -> CTRData:
    return planted_sequence_ctr()


@pytest.fixture(scope="module")
def content_data() -> CTRData:
    return planted_content_ctr()


@pytest.fixture(scope="module")
def din(seq_data) -> Ranker:
    return _fit("din", seq_data)


@pytest.fixture(scope="module")
def qin(content_data) -> Ranker:
    return _fit("qin", content_data)


def test_din_learns_the_category_match_that_lr_cannot(seq_data, din) -> None:
    lr = _fit("lr", seq_data)
    a_din, a_lr = din.evaluate(seq_data.test)["auc"], lr.evaluate(seq_data.test)["auc"]
    assert din.auto_resolved_["din_pairs"] == ["hist_items:item_id", "hist_cates:cate"]
    assert a_din > 0.8, a_din
    assert a_din - a_lr > 0.2, (a_din, a_lr)


def test_qin_reads_the_planted_content_signal(content_data, qin) -> None:
    """The click is an agreement of the target's content vector with the history's: QIN (content + attention)
    learns it; LR (first order) and DIN (IDs only, each item seen a few times) barely do."""
    a_qin = qin.evaluate(content_data.test)["auc"]
    a_lr = _fit("lr", content_data).evaluate(content_data.test)["auc"]
    a_din = _fit("din", content_data).evaluate(content_data.test)["auc"]
    assert qin.auto_resolved_["content_fields"] == ["content"]
    assert a_qin > 0.65, a_qin
    assert a_qin - max(a_lr, a_din) > 0.12, (a_qin, a_lr, a_din)


def test_qin_content_table_holds_the_training_items_vectors(content_data, qin) -> None:
    enc = qin.schema_.encode(content_data.train)
    table = qin.module_.content_table(0).numpy()
    items = enc.arrays["item_id"]
    np.testing.assert_array_equal(table[items], enc.arrays["content"])
    assert not table[:2].any()  # padding and the OOV bucket


@pytest.mark.parametrize("which", ["din", "qin"])
def test_save_load_round_trip_predicts_identically(which, request, tmp_path) -> None:
    model = request.getfixturevalue(which)
    data = request.getfixturevalue("seq_data" if which == "din" else "content_data")
    model.save(tmp_path / "m")
    loaded = Ranker.load(tmp_path / "m")
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict(data.test), model.predict(data.test))


def test_activation_unit_gives_padding_no_weight() -> None:
    torch.manual_seed(0)
    unit = ActivationUnit(4, (8,), "dice").eval()
    target, history = torch.randn(3, 4), torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    w = unit.weights(target, history, mask)
    assert (w[~mask] == 0).all() and (w[mask] != 0).all()
    pooled = unit(target, history, mask)
    assert torch.allclose(pooled[2], torch.zeros(4))
    history2 = history.clone()
    history2[~mask] = 99.0  # what sits in padded positions does not matter
    assert torch.allclose(unit(target, history2, mask), pooled)


def test_sequence_models_need_a_sequence_field(seq_data) -> None:
    flat = CTRData("flat", seq_data.fields[:3], seq_data.train, seq_data.valid, seq_data.test)
    for cls in (DIN, QIN):
        with pytest.raises(ConfigError, match="behaviour sequence"):
            cls().fit(flat.train, schema=flat.schema(), options=OPTS)
    with pytest.raises(ConfigError, match="din_pairs"):
        DIN(din_pairs=("hist_items",)).fit(seq_data.train, schema=seq_data.schema(), options=OPTS)


def test_paired_bootstrap_over_users() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    users = rng.integers(0, 100, n)
    y = rng.random(n) < 0.4
    good = y + rng.normal(0, 0.8, n)
    bad = y + rng.normal(0, 2.0, n)
    same = paired_bootstrap_auc(users, y, good, good, n_boot=200)
    assert same["diff"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0
    r = paired_bootstrap_auc(users, y, good, bad, n_boot=500)
    assert r["auc_a"] == pytest.approx(auc(y, good)) and r["diff"] == pytest.approx(auc(y, good) - auc(y, bad))
    assert 0 < r["ci_low"] < r["diff"] < r["ci_high"] and r["p_not_better"] == 0
    flipped = paired_bootstrap_auc(users, y, bad, good, n_boot=500)
    assert flipped["ci_high"] == pytest.approx(-r["ci_low"]) and flipped["p_not_better"] == 1
    # one replicate by hand: the rows of the drawn users, repeated as often as the user was drawn
    one = np.random.default_rng(3)
    counts = np.bincount(one.integers(0, 100, 100), minlength=100)
    rows = np.repeat(np.arange(n), counts[np.unique(users, return_inverse=True)[1]])
    expected = auc(y[rows], good[rows]) - auc(y[rows], bad[rows])
    assert paired_bootstrap_auc(users, y, good, bad, n_boot=1, seed=3, alpha=0.0)["ci_low"] == pytest.approx(expected)


def test_ml100k_ctr_mm_adds_text_vectors_and_histories() -> None:
    data_dir("ml-100k")
    text_dir = data_dir("ml-100k-text")
    from recembed.ranking.datasets import load_ctr

    base, mm = load_ctr("ml-100k-ctr", DATA_ROOT), load_ctr("ml-100k-ctr-mm", DATA_ROOT)
    assert mm.sizes() == base.sizes()
    for part in ("train", "valid", "test"):  # the same rows, labels and split as the ID-only dataset
        a, b = base.part(part), mm.part(part)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.columns["item_id"], b.columns["item_id"])
    schema = mm.schema()
    assert schema.dims == {"text_feat": 384}
    assert schema.field("hist_items").vocab_from == "item_id" and schema.lengths["hist_items"] == 20
    train = mm.train
    assert train.columns["text_feat"].shape == (len(train), 384)
    assert np.abs(train.columns["text_feat"]).sum(1).min() > 0 and train.columns["has_text"].min() == 1.0
    # the vector of an item is text_feat.npy's row that i_id_mapping.csv names "<ml id - 1>_<title>"
    feat = np.load(text_dir / "text_feat.npy")
    with open(text_dir / "i_id_mapping.csv") as fh:
        titles = {str(int(a.partition("_")[0]) + 1): (a.partition("_")[2], int(r)) for a, r in
                  list(csv.reader(fh, delimiter="\t"))[1:]}
    r = int(np.flatnonzero(train.columns["item_id"] == "1")[0])
    assert titles["1"][0] == "Toy Story"
    np.testing.assert_array_equal(train.columns["text_feat"][r], feat[titles["1"][1]])
    from recembed.data import catalog

    ds = catalog.load("ml-100k", DATA_ROOT)
    norm = lambda t: re.sub(r"[^a-z0-9]", "", str(t).lower())  # noqa: E731 -- the mapping drops punctuation
    same = [norm(ds.item_table["movie_title"][k]) == norm(titles[i][0]) for k, i in enumerate(ds.items.ids)]
    assert np.mean(same) > 0.99
    # a row's history: the user's previous ratings (time order), the last 20
    h = train.columns["hist_items"]
    lengths = np.diff(h.offsets)
    assert lengths.max() == 20 and (lengths == 0).sum() == len(np.unique(train.users))


def test_previous_items_are_the_users_earlier_ratings_in_time_order() -> None:
    from recembed.ranking.datasets import previous_items

    user = np.array([0, 1, 0, 0, 1, 0])
    item = np.array([10, 11, 12, 13, 14, 15])
    time = np.array([5, 1, 2, 9, 3, 2])  # rows 2 and 5 tie: file order decides
    order = np.argsort(time, kind="stable")
    ids = np.array([f"i{k}" for k in range(16)], dtype=object)
    h = previous_items(user, item, order, ids, max_len=2)
    rows = [list(h.values[a:b]) for a, b in zip(h.offsets[:-1], h.offsets[1:])]
    assert rows == [["i12", "i15"], [], [], ["i15", "i10"], ["i11"], ["i12"]]
