"""Every reader: a small valid file loads with the right counts and ids; bad input fails with a
:class:`~recembed.errors.DataError` whose message names the file and, where it applies, the 1-based
line and the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recembed.data.readers import (
    read_adjacency_split,
    read_csv_interactions,
    read_json_sequences,
    read_mmrec,
    read_parquet_interactions,
    read_recbole_atomic,
    read_sequence_file,
    read_triples_split,
    read_unisrec_split,
)
from recembed.data.splits import read_split_dir
from recembed.data.vocab import Vocabulary
from recembed.errors import DataError


def expect_error(
    fn, path: Path, *, line: int | None = None, field: str | None = None, contains: str | None = None
) -> DataError:
    """Call ``fn`` and check it raises a DataError naming ``path`` (and ``line`` / ``field``)."""
    with pytest.raises(DataError) as info:
        fn()
    exc = info.value
    msg = str(exc)
    assert str(path) in msg, f"message does not name the file {path}: {msg}"
    if line is not None:
        assert exc.line == line, f"expected line {line}, got {exc.line}: {msg}"
        assert f"line {line}" in msg, msg
    if field is not None:
        assert field in msg, f"message does not name the field {field!r}: {msg}"
    if contains is not None:
        assert contains in msg, msg
    return exc


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


LATIN1 = "caf\xe9".encode("latin-1")  # b"caf\xe9": not UTF-8


# ==============================================================================================
# CSV / TSV
# ==============================================================================================
class TestCsv:
    def test_valid_file(self, tmp_path):
        p = write(
            tmp_path / "ev.csv", "user_id,item_id,rating,timestamp\nu1,i1,3,10\nu2,i2,4.5,11\n\nu1,i2,5,12\n"
        )
        ds = read_csv_interactions(p, rating="rating", timestamp="timestamp")
        assert ds.name == "ev"
        assert ds.users.to_list() == ["u1", "u2"]
        assert ds.items.to_list() == ["i1", "i2"]
        inter = ds.interactions
        assert len(inter) == 3
        assert inter.user_idx.tolist() == [0, 1, 0]
        assert inter.item_idx.tolist() == [0, 1, 1]
        np.testing.assert_allclose(inter.rating, [3, 4.5, 5])
        np.testing.assert_allclose(inter.timestamp, [10, 11, 12])

    def test_tsv_and_column_mapping(self, tmp_path):
        p = write(tmp_path / "ev.tsv", "uid\tiid\tscore\nA\tx\t1\nB\tx\t2\nB\ty\t3\n")
        ds = read_csv_interactions(p, user="uid", item="iid", rating="score")
        assert (ds.num_users, ds.num_items, len(ds.interactions)) == (2, 2, 3)
        np.testing.assert_allclose(ds.interactions.rating, [1, 2, 3])

    def test_wrong_field_count(self, tmp_path):
        p = write(tmp_path / "ev.csv", "user_id,item_id,rating\nu1,i1,3\nu2,i2\nu1,i2,5\n")
        expect_error(
            lambda: read_csv_interactions(p, rating="rating"), p, line=3, contains="expected 3 fields"
        )

    def test_too_many_fields(self, tmp_path):
        p = write(tmp_path / "ev.csv", "user_id,item_id\nu1,i1\nu1,i2\nu2,i3,9\n")
        expect_error(lambda: read_csv_interactions(p), p, line=4)

    def test_whitespace_only_line_is_reported_with_its_line(self, tmp_path):
        p = write(tmp_path / "ev.tsv", "user_id\titem_id\nu1\ti1\n   \nu2\ti2\n")
        expect_error(lambda: read_csv_interactions(p), p, line=3)

    def test_missing_column(self, tmp_path):
        p = write(tmp_path / "ev.csv", "user_id,rating\nu1,3\n")
        expect_error(lambda: read_csv_interactions(p), p, line=1, contains="item_id")

    def test_missing_rating_column(self, tmp_path):
        p = write(tmp_path / "ev.csv", "user_id,item_id\nu1,i1\n")
        expect_error(lambda: read_csv_interactions(p, rating="stars"), p, line=1, contains="stars")

    def test_non_numeric_rating(self, tmp_path):
        p = write(tmp_path / "ev.csv", "user_id,item_id,rating\nu1,i1,3\nu2,i2,abc\n")
        expect_error(
            lambda: read_csv_interactions(p, rating="rating"), p, line=3, field="rating", contains="'abc'"
        )

    def test_empty_rating(self, tmp_path):
        p = write(tmp_path / "ev.csv", "user_id,item_id,rating\nu1,i1,3\nu2,i2,\n")
        expect_error(lambda: read_csv_interactions(p, rating="rating"), p, line=3, field="rating")

    def test_non_numeric_timestamp_line_counts_blank_lines(self, tmp_path):
        p = write(tmp_path / "ev.csv", "user_id,item_id,timestamp\nu1,i1,3\n\nu2,i2,yesterday\n")
        expect_error(lambda: read_csv_interactions(p, timestamp="timestamp"), p, line=4, field="timestamp")

    @pytest.mark.parametrize("row, bad_field", [("u2,", "item_id"), (",i2", "user_id"), ("  ,i2", "user_id")])
    def test_empty_id(self, tmp_path, row, bad_field):
        p = write(tmp_path / "ev.csv", f"user_id,item_id\nu1,i1\n{row}\n")
        expect_error(lambda: read_csv_interactions(p), p, line=3, field=bad_field)

    @pytest.mark.parametrize("col", ["rating", "timestamp"])
    def test_nan_value_is_an_error_naming_file_and_field(self, tmp_path, col):
        p = write(tmp_path / "ev.csv", f"user_id,item_id,{col}\nu1,i1,3\nu2,i2,nan\n")
        exc = expect_error(lambda: read_csv_interactions(p, **{col: col}), p, field=col)
        assert exc.field == col

    def test_non_utf8(self, tmp_path):
        p = tmp_path / "ev.csv"
        p.write_bytes(b"user_id,item_id\nu1," + LATIN1 + b"\n")
        expect_error(lambda: read_csv_interactions(p), p, contains="UTF-8")

    def test_missing_file(self, tmp_path):
        p = tmp_path / "nope.csv"
        expect_error(lambda: read_csv_interactions(p), p, contains="not found")

    def test_duplicate_events_are_kept_and_counted(self, tmp_path):
        p = write(tmp_path / "ev.csv", "user_id,item_id\nu1,i1\nu1,i1\nu1,i2\nu2,i1\nu1,i1\n")
        inter = read_csv_interactions(p).interactions
        assert len(inter) == 5  # every event kept
        assert inter.num_duplicates() == 2
        m = inter.csr()
        assert m.nnz == 3
        assert set(m.data.tolist()) == {1.0}  # binary: duplicates collapse
        assert inter.csr("count")[0, 0] == 3


# ==============================================================================================
# Parquet
# ==============================================================================================
class TestParquet:
    def test_valid_file(self, tmp_path):
        p = tmp_path / "ev.parquet"
        pq.write_table(
            pa.table(
                {"uid": [7, 8, 7], "item_id": ["a", "b", "b"], "stars": [1.0, 2.0, 3.0], "ts": [5, 6, 7]}
            ),
            p,
        )
        ds = read_parquet_interactions(p, user="uid", rating="stars", timestamp="ts")
        assert ds.users.to_list() == ["7", "8"]  # integer ids become strings
        assert ds.items.to_list() == ["a", "b"]
        assert ds.interactions.user_idx.tolist() == [0, 1, 0]
        np.testing.assert_allclose(ds.interactions.rating, [1, 2, 3])
        np.testing.assert_allclose(ds.interactions.timestamp, [5, 6, 7])

    def test_missing_column(self, tmp_path):
        p = tmp_path / "ev.parquet"
        pq.write_table(pa.table({"user_id": ["1"], "item_id": ["a"]}), p)
        expect_error(lambda: read_parquet_interactions(p, timestamp="timestamp"), p, contains="timestamp")

    def test_null_id(self, tmp_path):
        p = tmp_path / "ev.parquet"
        pq.write_table(pa.table({"user_id": ["1", None, "3"], "item_id": ["a", "b", "c"]}), p)
        exc = expect_error(lambda: read_parquet_interactions(p), p, field="user_id", contains="row 1")
        assert exc.field == "user_id"

    def test_empty_string_id(self, tmp_path):
        p = tmp_path / "ev.parquet"
        pq.write_table(pa.table({"user_id": ["1", "2"], "item_id": ["a", " "]}), p)
        expect_error(lambda: read_parquet_interactions(p), p, field="item_id", contains="row 1")

    def test_non_numeric_rating(self, tmp_path):
        p = tmp_path / "ev.parquet"
        pq.write_table(pa.table({"user_id": ["1", "2"], "item_id": ["a", "b"], "rating": ["x", "3"]}), p)
        expect_error(lambda: read_parquet_interactions(p, rating="rating"), p, field="rating")

    def test_nan_rating(self, tmp_path):
        p = tmp_path / "ev.parquet"
        pq.write_table(
            pa.table({"user_id": ["1", "2"], "item_id": ["a", "b"], "rating": [1.0, float("nan")]}), p
        )
        expect_error(lambda: read_parquet_interactions(p, rating="rating"), p, field="rating")

    def test_not_parquet(self, tmp_path):
        p = tmp_path / "ev.parquet"
        p.write_bytes(b"user_id,item_id\n1,2\n")
        expect_error(lambda: read_parquet_interactions(p), p, contains="Parquet")

    def test_missing_file(self, tmp_path):
        p = tmp_path / "nope.parquet"
        expect_error(lambda: read_parquet_interactions(p), p, contains="not found")


# ==============================================================================================
# RecBole atomic files
# ==============================================================================================
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def recbole_dir(tmp_path: Path, inter: str, item: str | None = None, user: str | None = None) -> Path:
    d = tmp_path / "rb"
    write(d / "rb.inter", inter)
    if item is not None:
        write(d / "rb.item", item)
    if user is not None:
        write(d / "rb.user", user)
    return d


class TestRecBole:
    def test_valid_files(self, tmp_path):
        d = recbole_dir(
            tmp_path,
            INTER_HEADER + "1\t10\t3\t100\n2\t11\t4\t101\n1\t11\t5\t102\n",
            item="item_id:token\ttitle:token_seq\tgenre:token_seq\tyear:token\temb:float_seq\n"
            "10\tToy Story\tAnimation Comedy\t1995\t1 2\n11\tHeat\tCrime\t\t3 4\n12\tUnseen\t\t\t5 6\n",
            user="user_id:token\tage:float\n1\t20\n2\t30\n3\t40\n",
        )
        ds = read_recbole_atomic(d)
        assert ds.users.to_list() == ["1", "2", "3"]  # user 3 only in .user: appended
        assert ds.items.to_list() == ["10", "11", "12"]  # item 12 only in .item: appended
        assert len(ds.interactions) == 3
        np.testing.assert_allclose(ds.interactions.rating, [3, 4, 5])
        t = ds.item_table
        assert t.kinds == {"title": "text", "genre": "tags", "year": "categorical", "emb": "vector"}
        assert t["title"].tolist() == ["Toy Story", "Heat", "Unseen"]
        assert t["genre"].tolist() == [("Animation", "Comedy"), ("Crime",), ()]
        assert t["year"].tolist() == ["1995", "", ""]
        np.testing.assert_allclose(t["emb"], [[1, 2], [3, 4], [5, 6]])
        np.testing.assert_allclose(ds.user_table["age"], [20, 30, 40])

    @pytest.mark.parametrize("bad", ["item_id:tok", "item_id", "item_id:"])
    def test_bad_header_type(self, tmp_path, bad):
        d = recbole_dir(tmp_path, f"user_id:token\t{bad}\n1\t10\n")
        expect_error(lambda: read_recbole_atomic(d), d / "rb.inter", line=1, field=bad)

    def test_missing_id_column(self, tmp_path):
        d = recbole_dir(tmp_path, "user_id:token\titem:token\n1\t10\n")
        expect_error(lambda: read_recbole_atomic(d), d / "rb.inter", line=1, contains="item_id")

    def test_rating_of_wrong_type(self, tmp_path):
        d = recbole_dir(tmp_path, "user_id:token\titem_id:token\trating:token\n1\t10\t3\n")
        expect_error(lambda: read_recbole_atomic(d), d / "rb.inter", field="rating")

    def test_wrong_field_count(self, tmp_path):
        d = recbole_dir(tmp_path, INTER_HEADER + "1\t10\t3\t100\n2\t11\t4\n")
        expect_error(lambda: read_recbole_atomic(d), d / "rb.inter", line=3)

    def test_non_numeric_timestamp(self, tmp_path):
        d = recbole_dir(tmp_path, INTER_HEADER + "1\t10\t3\t100\n2\t11\t4\tlater\n")
        expect_error(lambda: read_recbole_atomic(d), d / "rb.inter", line=3, field="timestamp")

    def test_empty_id(self, tmp_path):
        d = recbole_dir(tmp_path, INTER_HEADER + "1\t10\t3\t100\n\t11\t4\t5\n")
        expect_error(lambda: read_recbole_atomic(d), d / "rb.inter", line=3, field="user_id")

    def test_nan_rating(self, tmp_path):
        d = recbole_dir(tmp_path, INTER_HEADER + "1\t10\tnan\t100\n")
        expect_error(lambda: read_recbole_atomic(d), d / "rb.inter", field="rating")

    def test_vector_rows_of_different_lengths(self, tmp_path):
        d = recbole_dir(
            tmp_path, INTER_HEADER + "1\t10\t3\t100\n", item="item_id:token\temb:float_seq\n10\t1 2\n11\t3\n"
        )
        expect_error(lambda: read_recbole_atomic(d), d / "rb.item", field="emb")

    def test_non_numeric_vector_value(self, tmp_path):
        d = recbole_dir(
            tmp_path,
            INTER_HEADER + "1\t10\t3\t100\n",
            item="item_id:token\temb:float_seq\n10\t1 2\n11\t3 x\n",
        )
        expect_error(lambda: read_recbole_atomic(d), d / "rb.item", field="emb")

    def test_nan_in_vector_column(self, tmp_path):
        d = recbole_dir(
            tmp_path,
            INTER_HEADER + "1\t10\t3\t100\n",
            item="item_id:token\temb:float_seq\n10\t1 2\n11\t3 nan\n",
        )
        exc = expect_error(lambda: read_recbole_atomic(d), d / "rb.item", field="emb", contains="row 1")
        assert "NaN" in str(exc)

    def test_duplicate_item_rows(self, tmp_path):
        d = recbole_dir(
            tmp_path, INTER_HEADER + "1\t10\t3\t100\n", item="item_id:token\tyear:token\n10\t1990\n10\t1991\n"
        )
        expect_error(lambda: read_recbole_atomic(d), d / "rb.item", contains="duplicate")

    def test_non_utf8_header(self, tmp_path):
        d = tmp_path / "rb"
        d.mkdir()
        (d / "rb.inter").write_bytes(b"user_id:token\titem_id:token\t" + LATIN1 + b":float\n1\t2\t3\n")
        expect_error(lambda: read_recbole_atomic(d), d / "rb.inter", contains="UTF-8")

    def test_non_utf8_body(self, tmp_path):
        d = tmp_path / "rb"
        d.mkdir()
        (d / "rb.inter").write_bytes(b"user_id:token\titem_id:token\n1\t" + LATIN1 + b"\n")
        expect_error(lambda: read_recbole_atomic(d), d / "rb.inter", contains="UTF-8")

    def test_missing_inter_file(self, tmp_path):
        d = tmp_path / "rb"
        d.mkdir()
        expect_error(lambda: read_recbole_atomic(d), d / "rb.inter", contains="not found")


# ==============================================================================================
# LightGCN adjacency files
# ==============================================================================================
class TestAdjacency:
    def test_valid_files_empty_user_line_and_cold_user(self, tmp_path):
        train = write(tmp_path / "train.txt", "0 1 2 3\n1 2\n\n2\n")  # user 2: no items
        test = write(tmp_path / "test.txt", "0 4\n1 1\n3 2\n")  # user 3 is not in train
        ds = read_adjacency_split({"train": train, "test": test})
        assert ds.users.to_list() == ["0", "1", "2", "3"]
        assert ds.items.to_list() == ["1", "2", "3", "4"]
        split = ds.given_split
        assert split.sizes() == {"train": 4, "valid": 0, "test": 3}
        assert len(ds.interactions) == 7
        u2 = ds.users.index(["2"])[0]
        assert split.train.user_counts()[u2] == 0 and split.test.user_counts()[u2] == 0
        u3 = ds.users.index(["3"])[0]  # cold user kept, with its test event
        assert split.train.user_counts()[u3] == 0
        assert ds.items.lookup(split.test.item_idx[split.test.user_idx == u3]).tolist() == ["2"]

    def test_non_utf8(self, tmp_path):
        train = tmp_path / "train.txt"
        train.write_bytes(b"0 1\n1 " + LATIN1 + b"\n")
        test = write(tmp_path / "test.txt", "0 2\n")
        expect_error(lambda: read_adjacency_split({"train": train, "test": test}), train, contains="UTF-8")

    def test_missing_file(self, tmp_path):
        test = write(tmp_path / "test.txt", "0 2\n")
        missing = tmp_path / "train.txt"
        expect_error(
            lambda: read_adjacency_split({"train": missing, "test": test}), missing, contains="not found"
        )


# ==============================================================================================
# SELFRec triples
# ==============================================================================================
class TestTriples:
    def test_valid_files(self, tmp_path):
        train = write(tmp_path / "train.txt", "u1 i1 1\nu2\ti2\t1\nu1 i2 0.5\n")
        valid = write(tmp_path / "valid.txt", "u2 i1 1\n")
        test = write(tmp_path / "test.txt", "u1 i3 1\n")
        ds = read_triples_split({"train": train, "valid": valid, "test": test})
        assert ds.users.to_list() == ["u1", "u2"]
        assert ds.items.to_list() == ["i1", "i2", "i3"]
        assert ds.given_split.sizes() == {"train": 3, "valid": 1, "test": 1}
        np.testing.assert_allclose(ds.given_split.train.weight, [1, 1, 0.5])

    def test_two_columns(self, tmp_path):
        train = write(tmp_path / "train.txt", "u1 i1\nu2 i2\n")
        test = write(tmp_path / "test.txt", "u1 i2\n")
        ds = read_triples_split({"train": train, "test": test})
        assert ds.given_split.sizes() == {"train": 2, "valid": 0, "test": 1}
        assert ds.interactions.weight is None

    def test_empty_file_is_an_empty_part(self, tmp_path):
        train = write(tmp_path / "train.txt", "u1 i1\nu2 i2\n")
        valid = write(tmp_path / "valid.txt", "\n")
        test = write(tmp_path / "test.txt", "u1 i2\n")
        ds = read_triples_split({"train": train, "valid": valid, "test": test})
        assert ds.given_split.sizes() == {"train": 2, "valid": 0, "test": 1}

    def test_rows_of_different_widths(self, tmp_path):
        train = write(tmp_path / "train.txt", "u1 i1 1\n\nu2 i2\nu1 i2 0.5\n")
        test = write(tmp_path / "test.txt", "u1 i3 1\n")
        expect_error(lambda: read_triples_split({"train": train, "test": test}), train, line=3)

    def test_too_many_fields(self, tmp_path):
        train = write(tmp_path / "train.txt", "u1 i1 1 5\nu2 i2 1 6\n")
        test = write(tmp_path / "test.txt", "u1 i3 1 7\n")
        expect_error(lambda: read_triples_split({"train": train, "test": test}), train, line=1)

    def test_single_token_line(self, tmp_path):
        train = write(tmp_path / "train.txt", "u1 i1\nu2\n")
        test = write(tmp_path / "test.txt", "u1 i3\n")
        expect_error(lambda: read_triples_split({"train": train, "test": test}), train, line=2)

    def test_non_numeric_weight(self, tmp_path):
        train = write(tmp_path / "train.txt", "u1 i1 1\nu2 i2 heavy\n")
        test = write(tmp_path / "test.txt", "u1 i3 1\n")
        expect_error(
            lambda: read_triples_split({"train": train, "test": test}), train, line=2, field="weight"
        )

    def test_nan_weight(self, tmp_path):
        train = write(tmp_path / "train.txt", "u1 i1 1\nu2 i2 nan\n")
        test = write(tmp_path / "test.txt", "u1 i3 1\n")
        expect_error(lambda: read_triples_split({"train": train, "test": test}), train, field="weight")

    def test_non_utf8(self, tmp_path):
        train = tmp_path / "train.txt"
        train.write_bytes(b"u1 " + LATIN1 + b" 1\n")
        test = write(tmp_path / "test.txt", "u1 i3 1\n")
        expect_error(lambda: read_triples_split({"train": train, "test": test}), train, contains="UTF-8")

    def test_missing_file(self, tmp_path):
        train = write(tmp_path / "train.txt", "u1 i1 1\n")
        missing = tmp_path / "test.txt"
        expect_error(
            lambda: read_triples_split({"train": train, "test": missing}), missing, contains="not found"
        )


# ==============================================================================================
# MMRec folders
# ==============================================================================================
def mmrec_dir(tmp_path: Path, inter: str, feats: dict[str, np.ndarray] | None = None) -> Path:
    d = tmp_path / "mm"
    write(d / "mm.inter", inter)
    for key, arr in (feats or {}).items():
        np.save(d / f"{key}_feat.npy", arr)
    return d


MM_HEADER = "userID\titemID\trating\ttimestamp\tx_label\n"


class TestMMRec:
    def test_valid_folder(self, tmp_path):
        d = mmrec_dir(
            tmp_path,
            MM_HEADER + "0\t0\t5\t1\t0\n0\t1\t4\t2\t1\n1\t2\t3\t3\t2\n1\t0\t3\t4\t0\n",
            {"image": np.arange(8, dtype=np.float32).reshape(4, 2), "text": np.ones((4, 3))},
        )
        ds = read_mmrec(d)
        assert ds.users.to_list() == ["0", "1"]
        assert ds.items.to_list() == ["0", "1", "2", "3"]  # feature rows define item 3
        split = ds.given_split
        assert split.sizes() == {"train": 2, "valid": 1, "test": 1}
        assert ds.items.lookup(split.valid.item_idx).tolist() == ["1"]
        assert ds.items.lookup(split.test.item_idx).tolist() == ["2"]
        np.testing.assert_allclose(split.train.rating, [5, 3])
        assert ds.item_table.kinds == {"image_feat": "vector", "text_feat": "vector"}
        np.testing.assert_allclose(ds.item_table["image_feat"][3], [6, 7])

    def test_bad_x_label(self, tmp_path):
        d = mmrec_dir(tmp_path, "userID\titemID\tx_label\n0\t0\t0\n0\t1\t3\n")
        expect_error(lambda: read_mmrec(d), d / "mm.inter", line=3, field="x_label")

    def test_bad_x_label_after_blank_line(self, tmp_path):
        d = mmrec_dir(tmp_path, "userID\titemID\tx_label\n0\t0\t0\n\n0\t1\t-1\n")
        expect_error(lambda: read_mmrec(d), d / "mm.inter", line=4, field="x_label")

    def test_non_integer_x_label(self, tmp_path):
        d = mmrec_dir(tmp_path, "userID\titemID\tx_label\n0\t0\t0\n0\t1\ttest\n")
        expect_error(lambda: read_mmrec(d), d / "mm.inter", line=3, field="x_label")

    def test_missing_x_label_column(self, tmp_path):
        d = mmrec_dir(tmp_path, "userID\titemID\n0\t0\n")
        expect_error(lambda: read_mmrec(d), d / "mm.inter", line=1, contains="x_label")

    def test_wrong_field_count(self, tmp_path):
        d = mmrec_dir(tmp_path, "userID\titemID\tx_label\n0\t0\t0\n0\t1\n")
        expect_error(lambda: read_mmrec(d), d / "mm.inter", line=3)

    def test_negative_id(self, tmp_path):
        d = mmrec_dir(tmp_path, "userID\titemID\tx_label\n0\t0\t0\n0\t-1\t2\n")
        expect_error(lambda: read_mmrec(d), d / "mm.inter", line=3, field="itemID")

    @pytest.mark.parametrize("shape", [(8,), (2, 2, 2)])
    def test_feature_array_not_2d(self, tmp_path, shape):
        d = mmrec_dir(
            tmp_path,
            "userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n",
            {"image": np.zeros(shape, dtype=np.float32)},
        )
        expect_error(lambda: read_mmrec(d), d / "image_feat.npy", contains="2-D")

    def test_feature_rows_fewer_than_items(self, tmp_path):
        d = mmrec_dir(
            tmp_path,
            "userID\titemID\tx_label\n0\t0\t0\n0\t2\t2\n",
            {"image": np.zeros((2, 4), dtype=np.float32)},
        )
        expect_error(lambda: read_mmrec(d), d / "image_feat.npy", contains="3 items")

    def test_feature_arrays_with_different_row_counts(self, tmp_path):
        d = mmrec_dir(
            tmp_path,
            "userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n",
            {"image": np.zeros((4, 2), np.float32), "text": np.zeros((3, 2), np.float32)},
        )
        expect_error(lambda: read_mmrec(d), d / "text_feat.npy", contains="4 items")

    def test_nan_in_feature_vector(self, tmp_path):
        arr = np.ones((2, 3), dtype=np.float32)
        arr[1, 2] = np.nan
        d = mmrec_dir(tmp_path, "userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n", {"image": arr})
        expect_error(lambda: read_mmrec(d), d / "image_feat.npy", field="image_feat", contains="row 1")

    def test_non_numeric_feature_array(self, tmp_path):
        d = mmrec_dir(
            tmp_path,
            "userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n",
            {"image": np.array([["a", "b"], ["c", "d"]])},
        )
        expect_error(lambda: read_mmrec(d), d / "image_feat.npy")

    def test_corrupt_feature_file(self, tmp_path):
        d = mmrec_dir(tmp_path, "userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n")
        (d / "image_feat.npy").write_bytes(b"definitely not an npy file")
        expect_error(lambda: read_mmrec(d), d / "image_feat.npy")

    def test_missing_inter_file(self, tmp_path):
        d = tmp_path / "mm"
        d.mkdir()
        expect_error(lambda: read_mmrec(d), d / "mm.inter", contains="not found")


# ==============================================================================================
# sequence files
# ==============================================================================================
class TestSequenceFile:
    def test_valid_file_and_leave_one_out(self, tmp_path):
        p = write(tmp_path / "seq.txt", "u1 a b c\nu2 b d\n\nu3 e\n")
        ds = read_sequence_file(p)
        assert ds.users.to_list() == ["u1", "u2", "u3"]
        assert ds.items.to_list() == ["a", "b", "c", "d", "e"]
        assert len(ds.interactions) == 6
        split = ds.given_split
        assert split.sizes() == {"train": 3, "valid": 1, "test": 2}
        lookup = ds.items.lookup
        test = dict(zip(ds.users.lookup(split.test.user_idx), lookup(split.test.item_idx)))
        assert test == {"u1": "c", "u2": "d"}  # u3 has one event: it stays in train
        assert lookup(split.valid.item_idx).tolist() == ["b"]

    def test_sessions_without_user(self, tmp_path):
        p = write(tmp_path / "s.txt", "a b\n\nc\nd e f\n")
        ds = read_sequence_file(p, has_user=False)
        assert ds.users.to_list() == ["1", "2", "3"]  # 1-based among non-blank lines
        assert len(ds.interactions) == 6

    def test_duplicate_user_line(self, tmp_path):
        p = write(tmp_path / "seq.txt", "u1 a b c\nu2 b d\n\nu1 e\n")
        expect_error(lambda: read_sequence_file(p), p, line=4, contains="'u1'")

    def test_user_without_items(self, tmp_path):
        p = write(tmp_path / "seq.txt", "u1 a b c\nu2\n")
        expect_error(lambda: read_sequence_file(p), p, line=2)

    def test_non_utf8(self, tmp_path):
        p = tmp_path / "seq.txt"
        p.write_bytes(b"u1 a\nu2 " + LATIN1 + b"\n")
        expect_error(lambda: read_sequence_file(p), p, contains="UTF-8")

    def test_missing_file(self, tmp_path):
        p = tmp_path / "seq.txt"
        expect_error(lambda: read_sequence_file(p), p, contains="not found")


class TestJsonSequences:
    def test_valid_file(self, tmp_path):
        p = write(tmp_path / "Beauty.inter.json", '{"u1": ["a", "b", "c"], "u2": [1, 2]}')
        ds = read_json_sequences(p)
        assert ds.name == "Beauty"
        assert ds.users.to_list() == ["u1", "u2"]
        assert ds.items.to_list() == ["a", "b", "c", "1", "2"]
        assert ds.given_split.sizes() == {"train": 2, "valid": 1, "test": 2}
        assert ds.items.lookup(ds.given_split.test.item_idx).tolist() == ["c", "2"]

    def test_invalid_json(self, tmp_path):
        p = write(tmp_path / "s.json", '{"u1": ["a", "b"],\n "u2": [1, 2,]}')
        expect_error(lambda: read_json_sequences(p), p, line=2)

    def test_not_an_object(self, tmp_path):
        p = write(tmp_path / "s.json", '[["a", "b"]]')
        expect_error(lambda: read_json_sequences(p), p, contains="JSON object")

    @pytest.mark.parametrize("value", ["[]", '"a b"', "null"])
    def test_not_a_non_empty_list(self, tmp_path, value):
        p = write(tmp_path / "s.json", '{"u1": ["a"], "u2": ' + value + "}")
        exc = expect_error(lambda: read_json_sequences(p), p, field="u2")
        assert exc.field == "u2"

    @pytest.mark.parametrize("value", ['["a", null]', '["a", ["b"]]', '["a", ""]', '["a", {"x": 1}]'])
    def test_bad_item_id(self, tmp_path, value):
        p = write(tmp_path / "s.json", '{"u1": ["a"], "u2": ' + value + "}")
        expect_error(lambda: read_json_sequences(p), p, field="u2")

    def test_empty_user_id(self, tmp_path):
        p = write(tmp_path / "s.json", '{"u1": ["a"], "": ["b"]}')
        expect_error(lambda: read_json_sequences(p), p, contains="empty")

    def test_duplicate_user(self, tmp_path):
        p = write(tmp_path / "s.json", '{"u1": ["a"],\n "u2": ["b"],\n "u1": ["c", "d"]}')
        expect_error(lambda: read_json_sequences(p), p, contains="'u1'")

    def test_non_utf8(self, tmp_path):
        p = tmp_path / "s.json"
        p.write_bytes(b'{"u1": ["' + LATIN1 + b'"]}')
        expect_error(lambda: read_json_sequences(p), p, contains="UTF-8")

    def test_missing_file(self, tmp_path):
        p = tmp_path / "s.json"
        expect_error(lambda: read_json_sequences(p), p, contains="not found")

    def test_directory_instead_of_file(self, tmp_path):
        p = tmp_path / "s.json"
        p.mkdir()
        expect_error(lambda: read_json_sequences(p), p)


# ==============================================================================================
# UniSRec split files
# ==============================================================================================
UNI_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"


def unisrec_files(tmp_path: Path, **override: str) -> dict[str, Path]:
    texts = {
        "train": UNI_HEADER + "u1\ta\tb\nu1\ta b\tc\nu2\tx\ty\n",
        "valid": UNI_HEADER + "u1\ta b c\td\nu2\tx y\tz\n",
        "test": UNI_HEADER + "u1\ta b c d\te\nu2\tx y z\tw\n",
    }
    texts.update(override)
    return {p: write(tmp_path / f"S.{p}.inter", t) for p, t in texts.items()}


class TestUniSRec:
    def test_valid_files(self, tmp_path):
        ds = read_unisrec_split(unisrec_files(tmp_path))
        assert ds.users.to_list() == ["u1", "u2"]
        assert ds.items.to_list() == ["a", "b", "c", "x", "y", "d", "z", "e", "w"]
        split = ds.given_split
        assert split.sizes() == {"train": 5, "valid": 2, "test": 2}
        lookup = ds.items.lookup
        assert lookup(split.test.item_idx).tolist() == ["e", "w"]
        assert lookup(split.valid.item_idx).tolist() == ["d", "z"]
        # histories in sequence order
        indptr, items = ds.interactions.histories()
        assert lookup(items[indptr[0] : indptr[1]]).tolist() == ["a", "b", "c", "d", "e"]

    def test_history_not_a_prefix(self, tmp_path):
        files = unisrec_files(tmp_path, valid=UNI_HEADER + "u1\ta b c\td\n\nu2\tx q\tz\n")
        expect_error(lambda: read_unisrec_split(files), files["valid"], line=4)

    def test_missing_column(self, tmp_path):
        files = unisrec_files(tmp_path, valid="user_id:token\titem_id:token\nu1\td\n")
        expect_error(lambda: read_unisrec_split(files), files["valid"], line=1, contains="item_id_list")

    def test_bad_header_type(self, tmp_path):
        files = unisrec_files(tmp_path, test="user_id:token\titem_id_list:list\titem_id:token\n")
        expect_error(lambda: read_unisrec_split(files), files["test"], line=1, field="item_id_list:list")

    def test_wrong_field_count(self, tmp_path):
        files = unisrec_files(tmp_path, valid=UNI_HEADER + "u1\ta b c\n")
        expect_error(lambda: read_unisrec_split(files), files["valid"], line=2)

    def test_empty_target(self, tmp_path):
        files = unisrec_files(tmp_path, valid=UNI_HEADER + "u1\ta b c\t \n")
        expect_error(lambda: read_unisrec_split(files), files["valid"], line=2, field="item_id")

    def test_missing_file(self, tmp_path):
        files = unisrec_files(tmp_path)
        files["valid"] = tmp_path / "nope.inter"
        expect_error(lambda: read_unisrec_split(files), files["valid"], contains="not found")


# ==============================================================================================
# split directories (splits.read_split_dir)
# ==============================================================================================
USERS = Vocabulary(["u1", "u2", "u3"], name="user")
ITEMS = Vocabulary(["a", "b", "c"], name="item")
TSV_HEADER = "user_id\titem_id\n"


class TestSplitDir:
    def test_valid_dir_without_valid_file(self, tmp_path):
        write(tmp_path / "train.tsv", TSV_HEADER + "u1\ta\nu2\tb\nu1\tb\n")
        write(tmp_path / "test.tsv", TSV_HEADER + "u3\tc\nu1\tc\n")  # u3: cold user, kept
        split = read_split_dir(tmp_path, USERS, ITEMS)
        assert split.sizes() == {"train": 3, "valid": 0, "test": 2}
        assert split.test.user_idx.tolist() == [2, 0]
        assert split.test.item_idx.tolist() == [2, 2]
        assert split.train.user_counts()[2] == 0

    def test_unknown_user(self, tmp_path):
        write(tmp_path / "train.tsv", TSV_HEADER + "u1\ta\n")
        write(tmp_path / "test.tsv", TSV_HEADER + "u1\tc\nu9\ta\n")
        expect_error(
            lambda: read_split_dir(tmp_path, USERS, ITEMS),
            tmp_path / "test.tsv",
            line=3,
            field="user_id",
            contains="'u9'",
        )

    def test_unknown_item_after_blank_line(self, tmp_path):
        write(tmp_path / "train.tsv", TSV_HEADER + "u1\ta\n\n\nu2\tzz\n")
        expect_error(
            lambda: read_split_dir(tmp_path, USERS, ITEMS),
            tmp_path / "train.tsv",
            line=5,
            field="item_id",
            contains="'zz'",
        )

    def test_wrong_field_count(self, tmp_path):
        write(tmp_path / "train.tsv", TSV_HEADER + "u1\ta\nu2\tb\t1\n")
        write(tmp_path / "test.tsv", TSV_HEADER + "u1\tc\n")
        expect_error(lambda: read_split_dir(tmp_path, USERS, ITEMS), tmp_path / "train.tsv", line=3)

    def test_missing_column(self, tmp_path):
        write(tmp_path / "train.tsv", "user\titem_id\nu1\ta\n")
        write(tmp_path / "test.tsv", TSV_HEADER + "u1\tc\n")
        expect_error(
            lambda: read_split_dir(tmp_path, USERS, ITEMS), tmp_path / "train.tsv", line=1, contains="user_id"
        )

    def test_empty_id(self, tmp_path):
        write(tmp_path / "train.tsv", TSV_HEADER + "u1\ta\nu2\t\n")
        write(tmp_path / "test.tsv", TSV_HEADER + "u1\tc\n")
        expect_error(
            lambda: read_split_dir(tmp_path, USERS, ITEMS), tmp_path / "train.tsv", line=3, field="item_id"
        )

    def test_non_utf8(self, tmp_path):
        (tmp_path / "train.tsv").write_bytes(TSV_HEADER.encode() + b"u1\t" + LATIN1 + b"\n")
        write(tmp_path / "test.tsv", TSV_HEADER + "u1\tc\n")
        expect_error(lambda: read_split_dir(tmp_path, USERS, ITEMS), tmp_path / "train.tsv", contains="UTF-8")

    def test_missing_test_file(self, tmp_path):
        write(tmp_path / "train.tsv", TSV_HEADER + "u1\ta\n")
        expect_error(
            lambda: read_split_dir(tmp_path, USERS, ITEMS), tmp_path / "test.tsv", contains="test.tsv"
        )

    def test_missing_directory(self, tmp_path):
        d = tmp_path / "nothing-here"
        expect_error(lambda: read_split_dir(d, USERS, ITEMS), d, contains="not found")


class TestMissingLookingIds:
    """Literal NaN / None / null ids (a missing value written out as text) are refused with the line or row."""

    def test_csv_and_recbole_ids(self, tmp_path):
        path = write(tmp_path / "e.csv", "user_id,item_id\nu1,a\nu2,NaN\n")
        expect_error(lambda: read_csv_interactions(path), path, line=3, field="item_id", contains="'NaN'")
        d = tmp_path / "rb"
        d.mkdir()
        write(d / "rb.inter", "user_id:token\titem_id:token\nnull\ta\n")
        expect_error(lambda: read_recbole_atomic(d), d / "rb.inter", line=2, field="user_id:token", contains="'null'")

    def test_parquet_ids(self, tmp_path):
        path = tmp_path / "e.parquet"
        pq.write_table(pa.table({"user_id": ["u1", "None"], "item_id": ["a", "b"]}), path)
        expect_error(lambda: read_parquet_interactions(path), path, field="user_id", contains="'None'")

    def test_non_utf8_names_the_line(self, tmp_path):
        path = tmp_path / "e.csv"
        path.write_bytes(b"user_id,item_id\nu1,a\nu2,a\nu3," + LATIN1 + b"\n")
        expect_error(lambda: read_csv_interactions(path), path, line=4, contains="not UTF-8")
