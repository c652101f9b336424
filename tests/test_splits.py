"""Splitters (random, temporal, leave-one-out, cold items), split hashing, save/load, spec strings,
and the ml-100k split RecBole produced."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recembed.data.dataset import Dataset
from recembed.data.interactions import Interactions
from recembed.data.splits import (
    Split,
    cold_items_split,
    leave_one_out,
    make_split,
    parse_split_spec,
    random_split,
    read_split_dir,
    temporal_split,
)
from recembed.data.vocab import Vocabulary
from recembed.errors import ConfigError, DataError

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True)
PARTS = ("train", "valid", "test")


def make_data(counts: list[int], num_items: int = 30, seed: int = 0, ties: bool = False):
    """Users with the given event counts; timestamps are the event ids (or heavily tied)."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(users)  # users' events interleaved in file order
    n = len(users)
    items = rng.integers(0, num_items, n)
    ts = rng.integers(0, 4, n).astype(float) if ties else rng.permutation(n).astype(float)
    inter = Interactions(users, items, len(counts), num_items, timestamp=ts)
    return inter, Vocabulary.from_range(len(counts), "user"), Vocabulary.from_range(num_items, "item")


def event_ids(split: Split, name: str) -> np.ndarray:
    """With timestamps = event ids (make_data without ties), the events a part holds."""
    return getattr(split, name).timestamp.astype(np.int64)


def assert_partition(inter: Interactions, split: Split) -> None:
    """Every event lands in exactly one part, with its user and item intact."""
    ids = np.concatenate([event_ids(split, p) for p in PARTS])
    assert sorted(ids.tolist()) == list(range(len(inter)))
    order = np.argsort(inter.timestamp)
    for p in PARTS:
        part = getattr(split, p)
        src = order[event_ids(split, p)]
        np.testing.assert_array_equal(part.user_idx, inter.user_idx[src])
        np.testing.assert_array_equal(part.item_idx, inter.item_idx[src])


def per_user(part: Interactions, num_users: int) -> np.ndarray:
    return np.bincount(part.user_idx, minlength=num_users)


def recbole_counts(n: int, ratios: tuple[float, ...]) -> list[int]:
    """RecBole 1.2 ``Dataset._calcu_split_ids`` (group_by=user, RS)."""
    tot = sum(ratios)
    ratios = [r / tot for r in ratios]
    cnt = [int(ratios[i] * n) for i in range(len(ratios))]
    cnt[0] = n - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * n < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


# ==============================================================================================
# random
# ==============================================================================================
RATIOS = [
    (0.8, 0.1, 0.1),
    (0.6, 0.2, 0.2),
    (0.7, 0.15, 0.15),
    (0.5, 0.25, 0.25),
    (0.9, 0.05, 0.05),
    (0.8, 0.0, 0.2),
]


def test_recbole_reference_sanity():
    assert recbole_counts(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert recbole_counts(5, (0.8, 0.1, 0.1)) == [3, 1, 1]  # 0.5 events -> 1 each, train keeps 3
    assert recbole_counts(3, (0.8, 0.1, 0.1)) == [1, 1, 1]
    assert recbole_counts(2, (0.8, 0.1, 0.1)) == [1, 0, 1]  # train would drop below 1: valid gets none
    assert recbole_counts(1, (0.8, 0.1, 0.1)) == [1, 0, 0]


@SETTINGS
@given(st.lists(st.integers(1, 40), min_size=1, max_size=25), st.sampled_from(RATIOS), st.integers(0, 2**31))
def test_random_split_counts_follow_recbole_and_partition(counts, ratios, seed):
    assert sum(ratios) == 1.0
    inter, users, items = make_data(counts, seed=seed % 1000)
    split = random_split(inter, users, items, ratios, seed=seed)
    assert_partition(inter, split)
    got = np.stack([per_user(getattr(split, p), len(counts)) for p in PARTS], axis=1)
    expected = np.array([recbole_counts(n, ratios) for n in counts])
    np.testing.assert_array_equal(got, expected)


def test_random_split_two_ratios_means_no_validation():
    inter, users, items = make_data([10, 20, 5])
    split = random_split(inter, users, items, (0.8, 0.2))
    assert len(split.valid) == 0
    assert per_user(split.test, 3).tolist() == [2, 4, 1]
    assert split.spec == "random:0.8,0,0.2"


def test_random_split_is_seeded():
    inter, users, items = make_data([12] * 40, num_items=50)
    a = random_split(inter, users, items, seed=1)
    b = random_split(inter, users, items, seed=1)
    c = random_split(inter, users, items, seed=2)
    assert a.content_hash() == b.content_hash()
    for p in PARTS:
        np.testing.assert_array_equal(event_ids(a, p), event_ids(b, p))
    assert not np.array_equal(np.sort(event_ids(a, "test")), np.sort(event_ids(c, "test")))
    assert a.content_hash() != c.content_hash()


def test_random_split_is_random_within_user():
    """Not a time split in disguise: test events are not always each user's latest."""
    inter, users, items = make_data([10] * 30)
    split = random_split(inter, users, items, seed=3)
    last = {u: max(inter.timestamp[inter.user_idx == u]) for u in range(30)}
    latest_in_test = sum(t == last[u] for u, t in zip(split.test.user_idx, split.test.timestamp))
    assert latest_in_test < 30


@pytest.mark.parametrize(
    "ratios", [(0.8, 0.1), (0.5, 0.5, 0.5), (0.0, 0.5, 0.5), (1.1, -0.1, 0.0), (0.7, 0.1, 0.1, 0.1)]
)
def test_bad_ratios(ratios):
    inter, users, items = make_data([5, 5])
    with pytest.raises(ConfigError):
        random_split(inter, users, items, ratios)
    with pytest.raises(ConfigError):
        temporal_split(inter, users, items, ratios)


# ==============================================================================================
# temporal
# ==============================================================================================
@SETTINGS
@given(
    st.lists(st.integers(1, 30), min_size=1, max_size=20),
    st.sampled_from(RATIOS),
    st.booleans(),
    st.integers(0, 1000),
)
def test_temporal_split_orders_parts_in_time(counts, ratios, ties, seed):
    inter, users, items = make_data(counts, seed=seed, ties=ties)
    split = temporal_split(inter, users, items, ratios)
    n = len(inter)
    sizes = split.sizes()
    assert sizes["train"] == int(np.floor(ratios[0] * n))
    assert sizes["valid"] == int(np.floor(ratios[1] * n))
    assert sum(sizes.values()) == n
    ts = [getattr(split, p).timestamp for p in PARTS]
    for earlier, later in itertools.pairwise(ts):
        if len(earlier) and len(later):
            assert earlier.max() <= later.min()
    if len(ts[0]) and len(ts[2]):
        assert ts[0].max() <= ts[2].min()
    if not ties:
        assert_partition(inter, split)


def test_temporal_split_ties_go_in_file_order():
    inter = Interactions(np.zeros(10, int), np.arange(10), 1, 10, timestamp=np.ones(10))
    split = temporal_split(
        inter, Vocabulary.from_range(1, "user"), Vocabulary.from_range(10), (0.8, 0.1, 0.1)
    )
    assert split.train.item_idx.tolist() == list(range(8))
    assert split.valid.item_idx.tolist() == [8]
    assert split.test.item_idx.tolist() == [9]


def test_temporal_split_needs_timestamps():
    inter = Interactions(np.array([0, 0]), np.array([0, 1]), 1, 2)
    with pytest.raises(DataError) as info:
        temporal_split(inter, Vocabulary.from_range(1, "user"), Vocabulary.from_range(2))
    assert info.value.field == "timestamp"


# ==============================================================================================
# leave one out
# ==============================================================================================
@SETTINGS
@given(st.lists(st.integers(1, 8), min_size=1, max_size=20), st.booleans(), st.integers(0, 1000))
def test_leave_one_out(counts, ties, seed):
    inter, users, items = make_data(counts, seed=seed, ties=ties)
    split = leave_one_out(inter, users, items)
    # reference: per user, events by (time, file position)
    expected = {p: set() for p in PARTS}
    for u, n in enumerate(counts):
        ev = sorted(np.flatnonzero(inter.user_idx == u), key=lambda k: (inter.timestamp[k], k))
        assert len(ev) == n
        if n >= 3:
            expected["test"].add(ev[-1])
            expected["valid"].add(ev[-2])
            expected["train"].update(ev[:-2])
        elif n == 2:  # two events: one to test, one kept for training
            expected["test"].add(ev[1])
            expected["train"].add(ev[0])
        else:  # one event: stays in train
            expected["train"].add(ev[0])
    for p in PARTS:
        part = getattr(split, p)
        assert len(part) == len(expected[p])
        # events are identified by (user, item, timestamp) multisets
        got = sorted(zip(part.user_idx.tolist(), part.item_idx.tolist(), part.timestamp.tolist()))
        want = sorted(
            (int(inter.user_idx[k]), int(inter.item_idx[k]), float(inter.timestamp[k])) for k in expected[p]
        )
        assert got == want, p
    assert split.spec == "loo"


def test_leave_one_out_short_users_explicit():
    # user 0: 1 event; user 1: 2 events; user 2: 3 events (out of time order in the file)
    inter = Interactions(
        np.array([2, 1, 0, 2, 1, 2]),
        np.array([0, 1, 2, 3, 4, 5]),
        3,
        6,
        timestamp=np.array([30.0, 5.0, 1.0, 10.0, 4.0, 20.0]),
    )
    split = leave_one_out(inter, Vocabulary.from_range(3, "user"), Vocabulary.from_range(6))
    assert sorted(zip(split.test.user_idx.tolist(), split.test.item_idx.tolist())) == [(1, 1), (2, 0)]
    assert list(zip(split.valid.user_idx.tolist(), split.valid.item_idx.tolist())) == [(2, 5)]
    assert sorted(zip(split.train.user_idx.tolist(), split.train.item_idx.tolist())) == [
        (0, 2),
        (1, 4),
        (2, 3),
    ]


# ==============================================================================================
# cold items
# ==============================================================================================
@SETTINGS
@given(
    st.lists(st.integers(1, 15), min_size=2, max_size=20),
    st.sampled_from([0.1, 0.2, 0.5, 0.9]),
    st.integers(0, 1000),
)
def test_cold_items_never_in_train(counts, fraction, seed):
    inter, users, items = make_data(counts, num_items=25, seed=seed)
    split = cold_items_split(inter, users, items, fraction, seed=seed)
    assert_partition(inter, split)
    train_items = set(split.train.item_idx.tolist())
    valid_items = set(split.valid.item_idx.tolist())
    test_items = set(split.test.item_idx.tolist())
    assert not train_items & valid_items
    assert not train_items & test_items
    assert not valid_items & test_items
    present = int((inter.item_counts() > 0).sum())
    n_cold = max(2, round(fraction * present))
    assert len(valid_items) + len(test_items) == min(n_cold, present)
    # every event of a cold item left training
    for i in valid_items | test_items:
        assert (split.train.item_idx != i).all()


def test_cold_items_seeded_and_fraction_checked():
    inter, users, items = make_data([10] * 20, num_items=40)
    a = cold_items_split(inter, users, items, 0.2, seed=5)
    assert a.content_hash() == cold_items_split(inter, users, items, 0.2, seed=5).content_hash()
    assert a.content_hash() != cold_items_split(inter, users, items, 0.2, seed=6).content_hash()
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ConfigError):
            cold_items_split(inter, users, items, bad)


# ==============================================================================================
# hashing, save / load, merge
# ==============================================================================================
def small_split() -> Split:
    inter, users, items = make_data([6, 4, 8, 3], num_items=10, seed=4)
    return random_split(inter, users, items, seed=4)


def test_save_then_read_split_dir_reproduces_the_hash(tmp_path):
    split = small_split()
    out = split.save(tmp_path / "s")
    for name in ("train.tsv", "valid.tsv", "test.tsv", "split.json"):
        assert (out / name).is_file()
    meta = json.loads((out / "split.json").read_text())
    assert meta["hash"] == split.content_hash()
    assert {p: meta[p] for p in PARTS} == split.sizes()
    assert meta["spec"] == split.spec
    back = read_split_dir(out, split.users, split.items)
    assert back.content_hash() == split.content_hash()
    assert back.sizes() == split.sizes()
    assert (out / "train.tsv").read_text().splitlines()[0] == "user_id\titem_id"


def test_save_with_empty_validation(tmp_path):
    split = small_split().merge_valid()
    assert len(split.valid) == 0
    back = read_split_dir(split.save(tmp_path / "m"), split.users, split.items)
    assert len(back.valid) == 0
    assert back.content_hash() == split.content_hash()


def test_content_hash_changes_when_one_pair_moves():
    split = small_split()
    h = split.content_hash()
    moved = Split(
        split.train.subset(np.arange(1, len(split.train))),
        split.valid,
        Interactions.concat([split.test, split.train.subset(np.array([0]))]),
        split.users,
        split.items,
    )
    assert len(moved.train) + len(moved.test) == len(split.train) + len(split.test)
    assert moved.content_hash() != h
    to_valid = Split(
        split.train.subset(np.arange(1, len(split.train))),
        Interactions.concat([split.valid, split.train.subset(np.array([0]))]),
        split.test,
        split.users,
        split.items,
    )
    assert to_valid.content_hash() not in (h, moved.content_hash())


def test_content_hash_sees_a_move_across_a_part_boundary():
    """Moving the largest train pair to valid, whose pairs are all larger: the concatenated sorted keys
    are the same bytes, so the hash must separate the parts."""
    u, i = Vocabulary.from_range(1, "user"), Vocabulary.from_range(3)

    def part(items):
        return Interactions(np.zeros(len(items), int), np.array(items, dtype=int), 1, 3)

    a = Split(part([0, 1]), part([2]), part([]), u, i)
    b = Split(part([0]), part([1, 2]), part([]), u, i)
    c = Split(part([0]), part([]), part([1, 2]), u, i)
    assert len({a.content_hash(), b.content_hash(), c.content_hash()}) == 3


def test_content_hash_ignores_event_order_and_spec():
    split = small_split()
    rev = Split(
        *(getattr(split, p).subset(np.arange(len(getattr(split, p)))[::-1]) for p in PARTS),
        split.users,
        split.items,
        spec="something else",
    )
    assert rev.content_hash() == split.content_hash()


def test_content_hash_depends_on_vocabularies():
    split = small_split()
    other_items = Vocabulary([str(i) for i in range(len(split.items))][::-1], name="item")
    relabelled = Split(split.train, split.valid, split.test, split.users, other_items)
    assert relabelled.content_hash() != split.content_hash()


def test_split_parts_must_share_the_vocabularies():
    split = small_split()
    with pytest.raises(DataError):
        Split(
            split.train,
            split.valid,
            Interactions.empty(len(split.users) + 1, len(split.items)),
            split.users,
            split.items,
        )


def test_merge_valid_and_overlap():
    split = small_split()
    merged = split.merge_valid()
    assert len(merged.train) == len(split.train) + len(split.valid)
    assert merged.test is split.test
    assert merged.spec == split.spec + ":merge-valid"
    u, i = Vocabulary.from_range(2, "user"), Vocabulary.from_range(3)
    ov = Split(
        Interactions(np.array([0, 0, 1]), np.array([0, 1, 2]), 2, 3),
        Interactions(np.array([0]), np.array([1]), 2, 3),
        Interactions(np.array([0, 1, 1]), np.array([1, 2, 0]), 2, 3),
        u,
        i,
    )
    assert ov.overlap() == {"train&valid": 1, "train&test": 2, "valid&test": 1}


# ==============================================================================================
# spec strings
# ==============================================================================================
def test_parse_split_spec(tmp_path):
    assert parse_split_spec("random:0.8,0.1,0.1") == ("random", (0.8, 0.1, 0.1))
    assert parse_split_spec(" temporal:0.7,0.3 ") == ("temporal", (0.7, 0.3))
    assert parse_split_spec("cold-items:0.2") == ("cold-items", (0.2,))
    assert parse_split_spec("loo") == ("loo", ())
    assert parse_split_spec("given") == ("given", ())
    assert parse_split_spec("given:merge-valid") == ("given:merge-valid", ())
    assert parse_split_spec(str(tmp_path)) == ("dir", ())
    for bad in ("random:a,b", "bogus", "loo:3", str(tmp_path / "missing")):
        with pytest.raises(ConfigError):
            parse_split_spec(bad)


def test_make_split_dispatch(tmp_path):
    inter, users, items = make_data([6, 5, 7], num_items=12)
    ds = Dataset("toy", users, items, inter)
    assert make_split(ds).spec == "random:0.8,0.1,0.1"  # no given split: random
    assert make_split(ds, "loo").spec == "loo"
    assert make_split(ds, "temporal:0.5,0.25,0.25").spec == "temporal:0.5,0.25,0.25"
    assert make_split(ds, "cold-items:0.3").spec == "cold-items:0.3"
    with pytest.raises(ConfigError):
        make_split(ds, "given")
    saved = make_split(ds, "random:0.6,0.2,0.2", seed=9).save(tmp_path / "d")
    assert (
        make_split(ds, str(saved)).content_hash()
        == make_split(ds, "random:0.6,0.2,0.2", seed=9).content_hash()
    )
    ds.given_split = make_split(ds, "loo")
    assert make_split(ds) is ds.given_split
    assert make_split(ds, "given:merge-valid").spec == "loo:merge-valid"


# ==============================================================================================
# the ml-100k split RecBole produced
# ==============================================================================================
def shared_data_root() -> Path:
    root = Path(os.environ.get("RECEMBED_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (root / "ml-100k").is_dir():
        pytest.skip(f"shared dataset 'ml-100k' not found under {root} (set RECEMBED_DATA_ROOT)")
    return root


def test_ml100k_given_split_loads_with_recbole_counts():
    from recembed.data import catalog

    root = shared_data_root()
    split_dir = root / "ml-100k" / "splits" / "random-80-10-10"
    if not split_dir.is_dir():
        pytest.skip(f"split files not found at {split_dir}")
    ds = catalog.load("ml-100k", root=root)
    split = make_split(ds, str(split_dir))
    assert split.sizes() == {"train": 80808, "valid": 9596, "test": 9596}
    assert (len(split.users), len(split.items)) == (943, 1682)
    assert split.overlap() == {"train&valid": 0, "train&test": 0, "valid&test": 0}
    # the per-user counts RecBole produced are exactly the rule random_split implements
    ours = random_split(ds.interactions, ds.users, ds.items, (0.8, 0.1, 0.1), seed=2020)
    for p in PARTS:
        np.testing.assert_array_equal(per_user(getattr(split, p), 943), per_user(getattr(ours, p), 943))
