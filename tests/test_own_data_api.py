"""Own data from Python (pandas, Arrow, sparse matrices) and the data-hygiene policies: duplicates, no pair in
two split parts (a hypothesis property over every split), users with no training events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recembed.data import Dataset
from recembed.data.hygiene import apply_duplicates
from recembed.data.interactions import Interactions
from recembed.data.readers.own import DuplicatesWarning, read_own
from recembed.data.splits import make_split
from recembed.errors import ConfigError, DataError
from recembed.models import model_class
from recembed.runs import cold_users_count, fit_and_evaluate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BOOKS = {"user": "reader", "item": "book", "time": "date", "rating": "stars"}


# ------------------------------------------------------------------------------------------------
# pandas / Arrow / files agree
# ------------------------------------------------------------------------------------------------
def test_from_pandas_matches_the_csv_reader() -> None:
    pd = pytest.importorskip("pandas", reason="pandas is in the test extra")
    with pytest.warns(DuplicatesWarning, match="3 event"):
        from_files = read_own(EXAMPLES / "interactions.csv", items=EXAMPLES / "items.csv", columns=BOOKS)
    inter = pd.read_csv(EXAMPLES / "interactions.csv", parse_dates=["date"])  # datetime64 timestamps
    items = pd.read_csv(EXAMPLES / "items.csv")
    with pytest.warns(DuplicatesWarning, match="3 event"):
        from_frames = Dataset.from_pandas(inter, items=items, columns=BOOKS)
    assert from_frames.users == from_files.users and from_frames.items == from_files.items
    a, b = from_frames.interactions, from_files.interactions
    for name in ("user_idx", "item_idx", "rating", "timestamp"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert from_frames.item_titles().tolist() == from_files.item_titles().tolist()
    assert from_files.num_items == 40 and len(from_files.interactions) == 569  # 5 unread books are items too
    assert from_files.item_table.kinds == {"title": "text", "description": "text"}


def test_from_arrow_kinds_and_integer_ids() -> None:
    inter = pa.table({"user_id": [1, 1, 2, 3], "item_id": [10.0, 11.0, 10.0, 12.0]})  # pandas-style float ids
    items = pa.table({"item_id": ["10", "11", "12", "13"], "price": [1.5, None, 2.0, 3.0],
                      "colour": ["red", "blue", "red", ""], "emb": [[0.1, 0.2]] * 4})
    ds = Dataset.from_arrow(inter, items=items)
    assert ds.users.to_list() == ["1", "2", "3"] and ds.items.to_list() == ["10", "11", "12", "13"]
    assert ds.item_table.kinds == {"price": "numeric", "colour": "categorical", "emb": "vector"}
    assert np.isnan(ds.item_table["price"][1]) and ds.item_table["emb"].shape == (4, 2)


def test_missing_ids_in_frames_name_the_row() -> None:
    pd = pytest.importorskip("pandas", reason="pandas is in the test extra")
    frame = pd.DataFrame({"user_id": ["a", "b", None], "item_id": ["x", "y", "z"]})
    with pytest.raises(DataError, match=r"interactions, field 'user_id': a null where an id was expected at row 2"):
        Dataset.from_pandas(frame)
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": [1.0, np.nan]})  # a hole in integer ids
    with pytest.raises(DataError, match=r"field 'item_id': a null where an id was expected at row 1"):
        Dataset.from_pandas(frame)
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "NaN"]})  # written out and read back as text
    with pytest.raises(DataError, match=r"field 'item_id': 'NaN' where an id was expected at row 1"):
        Dataset.from_pandas(frame)
    with pytest.raises(ConfigError, match=r"unknown role\(s\) \['person'\]"):
        Dataset.from_pandas(pd.DataFrame({"u": ["a"], "i": ["x"]}), columns={"person": "u"})


def test_fit_takes_a_sparse_matrix_or_says_what_to_pass() -> None:
    rng = np.random.default_rng(0)
    m = sp.random(40, 25, density=0.2, format="csr", random_state=rng)
    m.data[:] = 1.0
    inter = Interactions.from_csr(m)
    assert (inter.csr() != m).nnz == 0 and inter.weight is None
    a = model_class("ease")().fit(m)
    b = model_class("ease")().fit(inter)
    np.testing.assert_allclose(a.score(np.arange(5)), b.score(np.arange(5)))
    weighted = Interactions.from_csr(sp.csr_array(m.multiply(3)))
    assert set(weighted.weight.tolist()) == {3.0}
    with pytest.raises(DataError, match=r"expected recembed Interactions or a scipy.sparse.*from_csr"):
        model_class("ease")().fit(m.toarray())


# ------------------------------------------------------------------------------------------------
# duplicates
# ------------------------------------------------------------------------------------------------
def test_duplicate_policies() -> None:
    u, i = np.array([0, 0, 1, 0, 1]), np.array([1, 1, 0, 1, 2])
    inter = Interactions(u, i, 2, 3, rating=np.array([1, 2, 3, 5, 4.0]), timestamp=np.array([5, 1, 2, 3, 4.0]))
    kept, n = apply_duplicates(inter, "keep")
    assert n == 2 and kept is inter
    dropped, _ = apply_duplicates(inter, "drop")
    assert dropped.item_idx.tolist() == [1, 0, 2] and dropped.timestamp.tolist() == [1, 2, 4]  # earliest kept
    summed, _ = apply_duplicates(inter, "sum")
    assert summed.weight.tolist() == [3, 1, 1] and summed.rating.tolist() == [pytest.approx(8 / 3), 3, 4]
    with pytest.raises(DataError, match="keep"):
        apply_duplicates(inter, "merge")
    table = pa.table({"user_id": ["a", "a", "b"], "item_id": ["x", "x", "y"]})
    assert len(Dataset.from_arrow(table, duplicates="keep").interactions) == 3
    with pytest.warns(DuplicatesWarning, match="1 event"):
        assert len(Dataset.from_arrow(table).interactions) == 2


# ------------------------------------------------------------------------------------------------
# no (user, item) pair in two parts, whatever the split
# ------------------------------------------------------------------------------------------------
SPECS = ("random:0.8,0.1,0.1", "random:0.5,0.25,0.25", "temporal:0.6,0.2,0.2", "loo", "cold-items:0.3",
         "drop-items:0.2")


@settings(max_examples=60, deadline=None)
@given(n_users=st.integers(2, 8), n_items=st.integers(2, 8), n=st.integers(1, 80), seed=st.integers(0, 10**6),
       spec=st.sampled_from(SPECS))
def test_no_pair_is_in_two_parts_under_any_split(n_users, n_items, n, seed, spec) -> None:
    rng = np.random.default_rng(seed)
    table = pa.table({"user_id": rng.integers(0, n_users, n).astype(str), "item_id": rng.integers(0, n_items, n)
                      .astype(str), "timestamp": rng.integers(0, 5, n).astype(float)})
    ds = Dataset.from_arrow(table, duplicates="keep")  # repeats everywhere
    split = make_split(ds, spec, seed=seed)
    assert split.overlap() == {"train&valid": 0, "train&test": 0, "valid&test": 0}
    removed = sum(split.removed_overlap.values())
    if not spec.startswith("drop-items"):  # drop-items also removes the dropped items' training events
        assert sum(split.sizes().values()) + removed == len(ds.interactions)


def test_given_split_with_a_repeated_pair_loses_it_from_test() -> None:
    from recembed.data.readers.build import dataset_from_parts

    cols = {"train": {"user_id": np.array(["a", "a", "b"], dtype=object), "item_id": np.array(["x", "y", "x"],
                                                                                                 dtype=object)},
            "test": {"user_id": np.array(["a", "b"], dtype=object), "item_id": np.array(["x", "y"], dtype=object)}}
    split = make_split(dataset_from_parts("g", cols), "given")
    assert split.sizes() == {"train": 3, "valid": 0, "test": 1} and split.removed_overlap == {"valid": 0, "test": 1}


# ------------------------------------------------------------------------------------------------
# users with no training events
# ------------------------------------------------------------------------------------------------
def test_users_without_training_events_are_counted_and_skipped_or_included(tmp_path) -> None:
    rng = np.random.default_rng(1)
    users = np.repeat([f"u{k}" for k in range(30)], 6)
    items = rng.integers(0, 20, len(users)).astype(str)
    times = np.tile(np.arange(6.0), 30)
    late = (["late1"] * 3 + ["late2"] * 2, ["1", "2", "3", "4", "5"])  # all their events after the cut
    table = pa.table({"user_id": np.concatenate([users, late[0]]), "item_id": np.concatenate([items, late[1]]),
                      "timestamp": np.concatenate([times, np.full(5, 99.0)])})
    ds = Dataset.from_arrow(table, duplicates="keep")
    split = make_split(ds, "temporal:0.8,0.1,0.1")
    assert cold_users_count(split)["test"] >= 2
    skip = fit_and_evaluate("pop", ds, split, out_dir=tmp_path / "skip").metrics
    incl = fit_and_evaluate("pop", ds, split, cold_users="include").metrics
    counts = cold_users_count(split)
    assert skip["cold_users"] == {"policy": "skip", **counts}
    assert incl["test"]["users"] == skip["test"]["users"] + counts["test"]
    from click.testing import CliRunner

    from recembed.cli.main import cli

    res = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "skip")])
    assert res.exit_code == 0 and "matches the stored test metrics: True" in " ".join(res.output.split())


def test_a_served_content_model_replays_own_data_with_its_item_table(tmp_path) -> None:
    """A bundle of a run fitted on own files rebuilds its text encoder from the same files (serve/content.py)."""
    from click.testing import CliRunner

    from recembed.cli.main import cli
    from recembed.runs import load_run
    from recembed.serve.content import encoder_for_run

    res = CliRunner().invoke(cli, ["fit", "alpharec", "--data", str(EXAMPLES / "interactions.csv"), "--items",
                                   str(EXAMPLES / "items.csv"), "--columns", "user=reader,item=book",
                                   "--text-columns", "title,description", "--encoder", "tfidf", "--set", "epochs=1",
                                   "--no-progress", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    encoder, note = encoder_for_run(load_run(tmp_path / "run"))
    assert encoder is not None, note
