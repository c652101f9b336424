"""Sequential models: the sequence pipeline, causal masking, leave-one-out, histories, cold items."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recembed.data.interactions import Interactions
from recembed.data.readers.formats import read_sequence_file
from recembed.data.splits import drop_items_split
from recembed.errors import DataError
from recembed.models.registry import model_class
from recembed.options import FitOptions
from recembed.runs import evaluate_split
from recembed.testing.conformance import RecommenderConformance
from recembed.testing.fixtures import planted_sequences
from recembed.training.sequences import MaskedItemTask, PrefixTask, Sequences, prefixes, windows

QUIET = FitOptions(show_progress=False, threads=1)
# min_steps 0: batch 64 as set (the default, 50 steps an epoch, would shrink it to 8 on these 400 users)
FAST = {"patience": 0, "learning_rate": 5e-3, "batch_size": 64, "embedding_dim": 32, "max_len": 20, "min_steps": 0}


# -- the pipeline ---------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), min_size=0, max_size=40), min_size=1, max_size=8),
       st.integers(2, 9))
def test_windows_hold_every_transition_once(lists: list[list[int]], size: int) -> None:
    seqs = Sequences.from_lists(lists)
    w = windows(seqs, size, stride=size - 1)
    assert w.shape[1] == size
    got = sorted((int(a), int(b)) for row in w for a, b in zip(row[:-1], row[1:]) if a > 0)
    want = sorted((a + 1, b + 1) for s in lists for a, b in zip(s[:-1], s[1:]))
    assert got == want
    # right-aligned: a window's real items are contiguous and end at the last column
    for row in w:
        real = np.flatnonzero(row > 0)
        assert real[-1] == size - 1 and np.all(np.diff(real) == 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), min_size=0, max_size=40), min_size=1, max_size=8),
       st.integers(2, 9))
def test_masked_windows_partition_items(lists: list[list[int]], size: int) -> None:
    w = windows(Sequences.from_lists(lists), size)
    got = sorted(int(t) for t in w.ravel() if t > 0)
    # every item once, except a user's oldest items when they would form a window of one
    want_max = sorted(i + 1 for s in lists if len(s) >= 2 for i in s)
    assert set(got) <= set(want_max) and len(got) >= len(want_max) - sum(len(s) >= 2 for s in lists)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), min_size=0, max_size=30), min_size=1, max_size=8),
       st.integers(1, 9))
def test_prefixes_are_every_history_and_next_item(lists: list[list[int]], max_len: int) -> None:
    rows = prefixes(Sequences.from_lists(lists), max_len)
    want = sorted((tuple([0] * max(0, max_len - t) + [i + 1 for i in s[max(0, t - max_len):t]]), s[t] + 1)
                  for s in lists for t in range(1, len(s)))
    got = sorted((tuple(int(x) for x in r[:-1]), int(r[-1])) for r in rows)
    assert got == want
    task = PrefixTask(Sequences.from_lists([[1, 2, 3], [4, 5]]), max_len, 2, 10)
    batches = list(task.batches(0, np.random.default_rng(0)))
    assert sum(int((b.targets > 0).sum()) for b in batches) == 3
    assert all((b.targets[:, :-1] == 0).all() and (b.inputs[:, -1] > 0).all() for b in batches)


def test_last_and_extend() -> None:
    seqs = Sequences.from_lists([[4, 5, 6], [], [7]])
    np.testing.assert_array_equal(seqs.last(np.array([0, 1, 2]), 2), [[6, 7], [0, 0], [0, 8]])
    extra = Interactions(np.array([2, 0, 0]), np.array([1, 2, 3]), 3, 10, timestamp=np.array([0.0, 5.0, 1.0]))
    ext = seqs.extend(extra)
    assert ext.items[ext.indptr[0]:ext.indptr[1]].tolist() == [4, 5, 6, 3, 2]  # extra in its time order
    assert ext.items[ext.indptr[2]:ext.indptr[3]].tolist() == [7, 1]


def test_masked_task_always_masks_something() -> None:
    seqs = Sequences.from_lists([list(range(10)), [3, 4], [5, 6, 7]])
    task = MaskedItemTask(seqs, max_len=6, batch_size=8, num_items=10, mask_prob=0.01, last_prob=0.0)
    for epoch in range(5):
        for batch in task.batches(epoch, np.random.default_rng(epoch)):
            assert ((batch.targets > 0).sum(1) >= 1).all()
            masked = batch.inputs == 11
            assert torch.equal(masked, batch.targets > 0)


def test_leave_one_out_by_position(tmp_path: Path) -> None:
    path = tmp_path / "seq.txt"
    path.write_text("u1 a b c d\nu2 e f\nu3 g\n")
    ds = read_sequence_file(path)
    split = ds.given_split

    def items_of(part: Interactions, user: str) -> list[str]:
        u = int(ds.users.index([user])[0])
        return [str(x) for x in ds.items.lookup(part.item_idx[part.user_idx == u])]

    assert items_of(split.test, "u1") == ["d"] and items_of(split.valid, "u1") == ["c"]
    assert sorted(items_of(split.train, "u1")) == ["a", "b"]
    assert items_of(split.test, "u2") == ["f"] and items_of(split.valid, "u2") == []  # two events: no validation
    assert items_of(split.train, "u3") == ["g"] and items_of(split.test, "u3") == []


def test_leave_one_out_on_amazon_seq() -> None:
    from conftest import DATA_ROOT, data_dir

    from recembed.data import catalog

    folder = data_dir("amazon-seq")
    ds = catalog.load("amazon-seq", DATA_ROOT)
    split = ds.given_split
    lines = (folder / "Beauty.txt").read_text().splitlines()[:200]
    seqs = Sequences.from_interactions(split.train)
    for line in lines:
        user, *items = line.split()
        u = int(ds.users.index([user])[0])
        train = ds.items.lookup(seqs.items[seqs.indptr[u]:seqs.indptr[u + 1]]).tolist()
        assert train == items[:-2]
        assert ds.items.lookup(split.valid.item_idx[split.valid.user_idx == u]).tolist() == [items[-2]]
        assert ds.items.lookup(split.test.item_idx[split.test.user_idx == u]).tolist() == [items[-1]]


def test_drop_items_split_removes_training_events_only() -> None:
    split = planted_sequences().given_split
    dropped = drop_items_split(split, 0.2, seed=3)
    gone = (split.train.item_counts() > 0) & (dropped.train.item_counts() == 0)
    assert gone.sum() > 0 and (split.test.item_counts()[gone] > 0).all()
    assert len(dropped.test) == len(split.test) and len(dropped.valid) == len(split.valid)
    assert len(dropped.train) == len(split.train) - int(split.train.item_counts()[gone].sum())


# -- causal masking ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "unisrec", "comirec"])
def test_causal_masking(name: str) -> None:
    ds = planted_sequences()
    model = model_class(name)(epochs=1, **FAST).fit(ds.given_split.train, options=QUIET, item_table=ds.item_table)
    module = model.module_
    tokens = torch.tensor([[0, 0, 3, 9, 14, 2, 7, 11], [5, 6, 7, 8, 9, 10, 11, 12]])
    changed = tokens.clone()
    changed[:, 5] = 40
    with torch.no_grad():
        a, b = module.encode(tokens), module.encode(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])  # earlier positions never see a later item
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_bert4rec_is_bidirectional() -> None:
    ds = planted_sequences()
    model = model_class("bert4rec")(epochs=1, **FAST).fit(ds.given_split.train, options=QUIET)
    tokens = torch.tensor([[0, 0, 3, 9, 14, 2, 7, 11]])
    changed = tokens.clone()
    changed[:, 6] = 40
    with torch.no_grad():
        a, b = model.module_.encode(tokens), model.module_.encode(changed)
    assert not torch.allclose(a[:, :6], b[:, :6])
    assert torch.equal(torch.from_numpy(model._context_tokens(model.sequences_, np.array([0])))[0, -1],
                       torch.tensor(ds.num_items + 1))  # inference reads the mask token last


# -- the conformance suite on planted sequences ------------------------------------------------------
class SequentialConformance(RecommenderConformance):
    """Conformance for sequential models on :func:`planted_sequences` (leave-one-out; the test history goes on
    through the validation item); they must rank the next item far better than popularity."""

    min_gain_over_pop: ClassVar[float] = 3.0

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls):  # noqa: ANN201
        ds = planted_sequences()
        split = ds.given_split
        model = model_class(cls.model_name)(**cls.params).fit(split.train, options=QUIET, valid=split.valid,
                                                              item_table=ds.item_table)
        return model, split

    def _ndcg(self, model, split) -> float:  # noqa: ANN001
        return evaluate_split(model, split, "test", ks=(10,)).summary["ndcg@10"]

    def test_history_scores_match_known_users(self, fitted) -> None:  # noqa: ANN001
        model, split = fitted
        seqs = Sequences.from_interactions(split.train)
        users = np.array([0, 5, 9])
        lists = [seqs.items[seqs.indptr[u]:seqs.indptr[u + 1]].tolist() for u in users]
        np.testing.assert_allclose(model.score_histories(lists), model.score(users), rtol=1e-4, atol=1e-4)
        after = model.scorer_after(split.valid)(users)
        with_valid = [h + split.valid.item_idx[split.valid.user_idx == u].tolist() for h, u in zip(lists, users)]
        np.testing.assert_allclose(model.score_histories(with_valid), after, rtol=1e-4, atol=1e-4)

    def test_recommend_history(self, fitted) -> None:  # noqa: ANN001
        model, _ = fitted
        items, scores = model.recommend_history([3, 4, 5], k=5)
        assert items.shape == (5,) and not {3, 4, 5} & set(items.tolist())
        assert np.all(np.diff(scores) <= 1e-6)
        with pytest.raises(DataError, match="out of range"):
            model.recommend_history([model.num_items_ + 3])


class TestSASRec(SequentialConformance):
    model_name = "sasrec"
    params: ClassVar[dict[str, Any]] = {"epochs": 25, **FAST}


class TestGRU4Rec(SequentialConformance):
    model_name = "gru4rec"
    params: ClassVar[dict[str, Any]] = {"epochs": 25, **FAST}


class TestBERT4Rec(SequentialConformance):
    model_name = "bert4rec"
    # the Cloze task learns strict order slowly (attention to a neighbour has to be found through learned
    # absolute positions; the loss plateaus, then drops): more steps at a smaller step size than the others
    params: ClassVar[dict[str, Any]] = {**FAST, "epochs": 60, "embedding_dim": 64, "batch_size": 32,
                                        "learning_rate": 1e-3}


class TestUniSRec(SequentialConformance):
    model_name = "unisrec"
    params: ClassVar[dict[str, Any]] = {"epochs": 25, **FAST}


def test_sampled_softmax_learns() -> None:
    ds = planted_sequences()
    split = ds.given_split
    model = model_class("sasrec")(epochs=25, num_negatives=20, **FAST).fit(split.train, options=QUIET)
    pop = model_class("pop")().fit(split.train)
    ours = evaluate_split(model, split, "test", ks=(10,)).summary["ndcg@10"]
    base = evaluate_split(pop, split, "test", ks=(10,)).summary["ndcg@10"]
    assert ours > 3 * base, (ours, base)


# -- items never seen in training ------------------------------------------------------------------
def test_text_model_recommends_unseen_items() -> None:
    """UniSRec places held-out items from their content (the planted group); ID-only SASRec cannot."""
    ds = planted_sequences()
    split = drop_items_split(ds.given_split, 0.3, seed=1)
    cold = (split.train.item_counts() == 0) & (split.test.item_counts() > 0)

    def cold_ndcg(model) -> float:  # noqa: ANN001
        result = evaluate_split(model, split, "test", ks=(10,), candidates=cold)
        return result.summary["ndcg@10"]

    text_only = model_class("unisrec")(epochs=60, use_id=False, **FAST).fit(split.train, options=QUIET,
                                                                          item_table=ds.item_table)
    text_id = model_class("unisrec")(epochs=60, use_id=True, **FAST).fit(split.train, options=QUIET,
                                                                        item_table=ds.item_table)
    ids = model_class("sasrec")(epochs=25, **FAST).fit(split.train, options=QUIET)
    rand = model_class("random")().fit(split.train)
    floor = cold_ndcg(rand)
    assert cold_ndcg(text_only) > 2.5 * floor, (cold_ndcg(text_only), floor)
    assert cold_ndcg(text_id) > 2.5 * floor, (cold_ndcg(text_id), floor)
    assert cold_ndcg(text_only) > 2 * cold_ndcg(ids)


# -- the CLI --------------------------------------------------------------------------------------
def test_cli_recommend_history(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from recembed.cli.main import cli

    ds = planted_sequences()
    lines = []
    seqs = Sequences.from_interactions(ds.interactions)
    for u in range(ds.num_users):
        items = ds.items.lookup(seqs.items[seqs.indptr[u]:seqs.indptr[u + 1]])
        lines.append(" ".join([str(ds.users.lookup(u)), *map(str, items)]))
    data = tmp_path / "planted.txt"
    data.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(cli, ["fit", "sasrec", "--data", str(data), "--out", str(out), "--no-progress",
                              "--threads", "1", *sum((["--set", f"{k}={v}"] for k, v in FAST.items()), []),
                              "--set", "epochs=3"])
    assert res.exit_code == 0, res.output
    first = str(ds.items.lookup(0))
    res = runner.invoke(cli, ["recommend", str(out), "--history", f"{first},{ds.items.lookup(1)}", "--k", "3"])
    assert res.exit_code == 0, res.output
    assert "top 3 after a history of 2 items" in res.output
    res = runner.invoke(cli, ["recommend", str(out), "--history", "no-such-item"])
    assert res.exit_code != 0 and "no-such-item" in str(res.exception)
    res = runner.invoke(cli, ["recommend", str(out), "--user", str(ds.users.lookup(0)), "--k", "3"])
    assert res.exit_code == 0, res.output
    # a model with per-user parameters says it cannot
    bpr_out = tmp_path / "bpr"
    res = runner.invoke(cli, ["fit", "bpr", "--data", str(data), "--out", str(bpr_out), "--no-progress",
                              "--set", "epochs=1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["recommend", str(bpr_out), "--history", first])
    assert res.exit_code != 0 and "cannot score an arbitrary history" in res.output

