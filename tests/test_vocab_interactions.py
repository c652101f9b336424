"""Vocabulary and Interactions: index mapping, CSR views, histories, subset/concat, validation."""

from __future__ import annotations

import numpy as np
import pytest

from recembed.data.interactions import Interactions
from recembed.data.vocab import Vocabulary
from recembed.errors import DataError, UnknownIdError


# ==============================================================================================
# Vocabulary
# ==============================================================================================
class TestVocabulary:
    def test_from_values_first_appearance_order_across_arrays(self):
        v = Vocabulary.from_values(["b", "a", None, "b", "c"], np.array(["d", "a", "e"]), name="item")
        assert v.to_list() == ["b", "a", "c", "d", "e"]  # nulls dropped, first appearance kept
        assert len(v) == 5
        assert v.ids.tolist() == ["b", "a", "c", "d", "e"]

    def test_integer_ids_become_strings(self):
        v = Vocabulary.from_values(np.array([30, 10, 30, 20]), name="user")
        assert v.to_list() == ["30", "10", "20"]
        assert v.index([20, "30"]).tolist() == [2, 0]
        assert 10 in v and "10" in v and "40" not in v

    def test_from_range(self):
        v = Vocabulary.from_range(4, "user")
        assert v.to_list() == ["0", "1", "2", "3"]
        assert v.index(["3", "0"]).tolist() == [3, 0]

    def test_duplicate_and_null_ids_are_rejected(self):
        with pytest.raises(DataError, match="duplicate ids"):
            Vocabulary(["a", "b", "a"], name="item")
        with pytest.raises(DataError, match="missing"):
            Vocabulary(["a", None], name="item")

    def test_unknown_ids_error_policy(self):
        v = Vocabulary(["a", "b", "c"], name="user")
        with pytest.raises(UnknownIdError) as info:
            v.index(["a", "zz", "b", "q"], source="ratings.csv")
        exc = info.value
        assert isinstance(exc, DataError) and isinstance(exc, KeyError)
        msg = str(exc)
        assert msg.startswith("2 user id(s) in ratings.csv"), msg
        assert "'zz'" in msg and "'q'" in msg and "[1, 3]" in msg

    def test_unknown_ids_ignore_policy(self):
        v = Vocabulary(["a", "b", "c"], name="user")
        out = v.index(["c", "zz", "a"], unknown="ignore")
        assert out.dtype == np.int64
        assert out.tolist() == [2, -1, 0]

    def test_bad_policy(self):
        v = Vocabulary(["a"])
        with pytest.raises(ValueError, match="policy"):
            v.index(["a"], unknown="drop")  # type: ignore[arg-type]

    def test_lookup(self):
        v = Vocabulary(["x", "y", "z"], name="item")
        assert v.lookup(1) == "y"
        assert v.lookup(np.int64(2)) == "z"
        np.testing.assert_array_equal(v.lookup(np.array([[2, 0], [1, 1]])), [["z", "x"], ["y", "y"]])
        assert v.lookup(np.array([], dtype=np.int64)).tolist() == []
        for bad in (3, -1):
            with pytest.raises(IndexError):
                v.lookup(bad)
        with pytest.raises(IndexError):
            v.lookup([0, 3])
        with pytest.raises(IndexError):
            v.lookup([-1])

    def test_content_hash_and_equality(self):
        a = Vocabulary(["a", "b"], name="item")
        assert a.content_hash() == Vocabulary(["a", "b"], name="item").content_hash()
        assert a == Vocabulary(["a", "b"], name="user")  # equality is about ids
        assert a.content_hash() != Vocabulary(["b", "a"], name="item").content_hash()
        assert a.content_hash() != Vocabulary(["a", "b"], name="user").content_hash()
        assert a.content_hash() != Vocabulary(["a", "b", "c"], name="item").content_hash()
        assert a != Vocabulary(["b", "a"])


# ==============================================================================================
# Interactions
# ==============================================================================================
def make(users, items, nu=4, ni=5, **kw) -> Interactions:
    return Interactions(np.array(users), np.array(items), nu, ni, **kw)


class TestInteractionsValidation:
    @pytest.mark.parametrize(
        "users, items, field",
        [
            ([0, 4], [0, 1], "user_idx"),
            ([0, -1], [0, 1], "user_idx"),
            ([0, 1], [5, 1], "item_idx"),
            ([0, 1], [0, -2], "item_idx"),
        ],
    )
    def test_out_of_range_indices(self, users, items, field):
        with pytest.raises(DataError) as info:
            make(users, items)
        assert info.value.field == field
        assert field in str(info.value)

    def test_index_that_would_wrap_in_int32_is_out_of_range(self):
        with pytest.raises(DataError, match="user_idx"):
            Interactions(np.array([2**32 + 1], dtype=np.int64), np.array([0]), 10, 3)

    def test_fractional_index_is_rejected(self):
        with pytest.raises(DataError, match="item_idx"):
            Interactions(np.array([0]), np.array([1.5]), 10, 3)

    def test_length_mismatch(self):
        with pytest.raises(DataError):
            make([0, 1, 2], [0, 1])
        with pytest.raises(DataError) as info:
            make([0, 1], [0, 1], rating=np.array([1.0]))
        assert info.value.field == "rating"

    @pytest.mark.parametrize("name", ["rating", "timestamp", "weight"])
    def test_nan_value_names_the_field(self, name):
        values = np.array([1.0, 2.0, np.nan])
        with pytest.raises(DataError) as info:
            make([0, 1, 2], [0, 1, 2], **{name: values})
        assert info.value.field == name
        assert f"field '{name}'" in str(info.value)
        assert "interaction 2" in str(info.value)

    def test_arrays_are_read_only_copies(self):
        u = np.array([0, 1], dtype=np.int32)
        r = np.array([1.0, 2.0], dtype=np.float32)
        inter = Interactions(u, np.array([0, 0]), 2, 1, rating=r)
        u[0] = 1
        r[0] = 9
        assert inter.user_idx.tolist() == [0, 1]
        assert inter.rating.tolist() == [1.0, 2.0]
        with pytest.raises(ValueError):
            inter.user_idx[0] = 1
        assert inter.user_idx.dtype == np.int32 and inter.item_idx.dtype == np.int32

    def test_empty(self):
        e = Interactions.empty(3, 4)
        assert len(e) == 0
        assert e.csr().shape == (3, 4) and e.csr().nnz == 0
        indptr, items = e.histories()
        assert indptr.tolist() == [0, 0, 0, 0] and len(items) == 0


class TestCsr:
    # user 0: items 1, 1, 3 ; user 2: item 0 twice, item 4 ; user 1 and 3: nothing
    U = (0, 2, 0, 2, 0, 2)
    I = (1, 0, 1, 4, 3, 0)
    R = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)

    def test_binary_collapses_duplicates(self):
        inter = make(self.U, self.I, rating=np.array(self.R))
        m = inter.csr()
        assert m.shape == (4, 5) and m.dtype == np.float32
        expected = np.zeros((4, 5))
        expected[0, [1, 3]] = 1
        expected[2, [0, 4]] = 1
        np.testing.assert_array_equal(m.toarray(), expected)
        assert m.has_sorted_indices
        assert inter.num_duplicates() == 2
        assert inter.user_counts().tolist() == [2, 0, 2, 0]  # distinct items
        assert inter.item_counts().tolist() == [2, 2, 0, 1, 1]  # events, duplicates counted

    def test_count(self):
        m = make(self.U, self.I).csr("count")
        assert m[0, 1] == 2 and m[2, 0] == 2 and m[0, 3] == 1 and m[2, 4] == 1
        assert m.sum() == 6

    def test_rating_is_the_last_value_in_file_order(self):
        m = make(self.U, self.I, rating=np.array(self.R)).csr("rating")
        assert m[0, 1] == 3.0 and m[2, 0] == 6.0 and m[0, 3] == 5.0 and m[2, 4] == 4.0
        assert m.nnz == 4

    def test_weight(self):
        m = make([1, 1], [2, 3], weight=np.array([0.5, 0.25])).csr("weight")
        assert m[1, 2] == 0.5 and m[1, 3] == 0.25

    def test_missing_column_and_bad_kind(self):
        inter = make(self.U, self.I)
        with pytest.raises(DataError) as info:
            inter.csr("rating")
        assert info.value.field == "rating"
        with pytest.raises(ValueError):
            inter.csr("sum")

    def test_matches_dense_reference_on_random_data(self):
        rng = np.random.default_rng(11)
        nu, ni, n = 30, 20, 400
        u, i = rng.integers(0, nu, n), rng.integers(0, ni, n)
        r = rng.integers(1, 6, n).astype(float)
        inter = Interactions(u, i, nu, ni, rating=r)
        count = np.zeros((nu, ni))
        last = np.zeros((nu, ni))
        for a, b, c in zip(u, i, r):
            count[a, b] += 1
            last[a, b] = c
        np.testing.assert_array_equal(inter.csr("count").toarray(), count)
        np.testing.assert_array_equal(inter.csr("binary").toarray(), (count > 0).astype(float))
        np.testing.assert_array_equal(inter.csr("rating").toarray(), last)
        assert inter.num_duplicates() == n - int((count > 0).sum())
        keys = inter.pairs_key()
        assert keys.dtype == np.int64
        assert len(np.unique(keys)) == int((count > 0).sum())


class TestHistories:
    def test_time_order_with_ties_in_file_order(self):
        # user 0: events at t = 5, 1, 5, 3 (items 10, 11, 12, 13) -> 11, 13, 10, 12
        inter = Interactions(
            np.array([0, 1, 0, 0, 1, 0]),
            np.array([10, 20, 11, 12, 21, 13]) - 10,
            2,
            12,
            timestamp=np.array([5.0, 2.0, 1.0, 5.0, 2.0, 3.0]),
        )
        indptr, items = inter.histories()
        assert indptr.tolist() == [0, 4, 6]
        assert (items[:4] + 10).tolist() == [11, 13, 10, 12]
        assert (items[4:] + 10).tolist() == [20, 21]  # tie: file order

    def test_without_timestamps_file_order(self):
        inter = make([1, 0, 1, 1], [4, 3, 2, 0])
        indptr, items = inter.histories()
        assert indptr.tolist() == [0, 1, 4, 4, 4]
        assert items.tolist() == [3, 4, 2, 0]

    def test_random_against_reference(self):
        rng = np.random.default_rng(3)
        n, nu, ni = 300, 12, 40
        u, i = rng.integers(0, nu, n), rng.integers(0, ni, n)
        t = rng.integers(0, 5, n).astype(float)  # many ties
        inter = Interactions(u, i, nu, ni, timestamp=t)
        indptr, items = inter.histories()
        for user in range(nu):
            ev = [k for k in range(n) if u[k] == user]
            ev.sort(key=lambda k: (t[k], k))
            assert items[indptr[user] : indptr[user + 1]].tolist() == [int(i[k]) for k in ev]


class TestSubsetConcat:
    def test_subset_by_mask_and_index(self):
        inter = make([0, 1, 2, 3], [0, 1, 2, 3], rating=np.array([1.0, 2, 3, 4]), timestamp=np.arange(4.0))
        a = inter.subset(np.array([True, False, True, False]))
        assert a.user_idx.tolist() == [0, 2] and a.rating.tolist() == [1.0, 3.0]
        assert (a.num_users, a.num_items) == (4, 5)
        assert a.weight is None
        b = inter.subset(np.array([3, 0]))
        assert b.item_idx.tolist() == [3, 0] and b.timestamp.tolist() == [3.0, 0.0]

    def test_concat(self):
        a = make([0, 1], [0, 1], rating=np.array([1.0, 2.0]))
        b = make([2], [4], rating=np.array([5.0]))
        c = Interactions.concat([a, b])
        assert c.user_idx.tolist() == [0, 1, 2] and c.item_idx.tolist() == [0, 1, 4]
        assert c.rating.tolist() == [1.0, 2.0, 5.0]
        d = Interactions.concat([a, make([3], [3])])  # one part lacks ratings: dropped
        assert d.rating is None and len(d) == 3

    def test_concat_errors(self):
        with pytest.raises(DataError):
            Interactions.concat([make([0], [0]), make([0], [0], nu=5)])
        with pytest.raises(ValueError):
            Interactions.concat([])

    def test_subset_then_concat_round_trip(self):
        rng = np.random.default_rng(5)
        n = 50
        inter = Interactions(rng.integers(0, 7, n), rng.integers(0, 9, n), 7, 9, rating=rng.random(n))
        mask = rng.random(n) < 0.4
        both = Interactions.concat([inter.subset(mask), inter.subset(~mask)])
        np.testing.assert_array_equal(both.csr("count").toarray(), inter.csr("count").toarray())
        order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
        np.testing.assert_array_equal(both.rating, inter.rating[order])
