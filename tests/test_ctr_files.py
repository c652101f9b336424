"""A user's own impression (CTR) file for the rankers (ranking/ctr_files.py, ranking/ctr_stream.py): a CSV and a
Parquet file with a planted cross (click iff ``cat == 'a'`` xor ``flag``, label noise aside) fit through
``recembed fit deepfm --data FILE`` and learn it; the field kinds come from the column types; a streamed fit on
the same Parquet parts matches the in-memory one without ever reading a whole file; bad inputs exit 2 naming the
file, the line / row and the column; ``recembed importance`` reloads the run's data from config.json."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from test_rankers import run_main

from recembed.data.readers.own import _Source
from recembed.ranking.ctr_columns import infer_columns, to_frame
from recembed.ranking.schema import Schema
from recembed.testing.impressions import planted_impressions

FAST = ["--no-progress", "--threads", "1", "--set", "epochs=6", "--set", "embedding_dim=8", "--set",
        "hidden_units=32", "--set", "batch_size=128", "--set", "min_steps=0", "--set", "learning_rate=0.003"]
N = 3000


def _fit(data: str, out, *extra: str) -> tuple[dict, dict]:
    code, text = run_main(["fit", "deepfm", "--data", data, *extra, "--out", str(out), *FAST])
    assert code == 0, text
    return json.loads((out / "metrics.json").read_text()), json.loads((out / "config.json").read_text())


def _parts(folder, table: pa.Table, row_group: int = 300):
    folder.mkdir()
    a, b = int(0.8 * len(table)), int(0.9 * len(table))
    for name, (s, e) in zip(("train", "valid", "test"), ((0, a), (a, b), (b, len(table)))):
        pq.write_table(table.slice(s, e - s), folder / f"{name}.parquet", row_group_size=row_group)
    return folder


def test_a_csv_impression_file_fits_learns_the_cross_and_importance_reloads_it(tmp_path) -> None:
    path = tmp_path / "impressions.csv"
    table = planted_impressions(N, 0, vector=False, joined_tags=True)
    pacsv.write_csv(table.rename_columns([c if c != "clicked" else "is_click" for c in table.column_names]), path)
    m, config = _fit(str(path), tmp_path / "run", "--columns", "label=is_click,item=ad")
    for part in ("valid", "test"):
        for key in ("auc", "logloss", "gauc"):
            assert np.isfinite(m[part][key]), (part, key)
        assert m[part]["auc"] > 0.8, m[part]
    assert m["data"]["train"] == 0.8 * N and m["data"]["test"] == 0.1 * N
    spec = config["data"]["ctr_file"]
    assert spec["columns"] == {"user": "user_id", "item": "ad", "time": "ts", "label": "is_click"}
    assert spec["split"] == "time:0.8,0.1,0.1" and spec["stream"] is False  # a time column: time-ordered 80/10/10
    assert spec["kinds"] == {"user_id": "categorical", "ad": "categorical", "cat": "categorical",
                             "flag": "categorical", "price": "numeric", "genres": "tags"}
    code, text = run_main(["importance", str(tmp_path / "run"), "--repeats", "1", "--threads", "1", "--no-outrank"])
    assert code == 0, text
    result = json.loads((tmp_path / "run" / "importance.json").read_text())
    top = {r["field"] for r in result["permutation"]["fields"][:2]}
    assert top == {"cat", "flag"}, result["permutation"]["fields"]


def test_kinds_follow_the_arrow_types_and_the_string_values() -> None:
    table = planted_impressions(50, 1)
    cols = infer_columns(table, _Source("t"))
    assert cols.label == "clicked" and cols.user == "user_id" and cols.time == "ts"
    assert cols.kinds == {"user_id": "categorical", "ad": "categorical", "cat": "categorical", "flag": "categorical",
                          "price": "numeric", "genres": "tags", "emb": "vector"}
    text = pa.table({"click": ["1", "0", "1"], "code": ["3", "17", ""], "score": ["1.5", "", "2"],
                     "tags": ["a|b", "c", ""], "shop": ["x", "y", "x"]})
    cols = infer_columns(text, _Source("t"), field_kinds={"shop": "tags"})
    assert cols.kinds == {"code": "categorical", "score": "numeric", "tags": "tags", "shop": "tags"}
    assert cols.delimiters["tags"] == "|"
    frame = to_frame(text, cols, _Source("t"))
    assert frame.columns["code"].tolist() == ["3", "17", None]  # missing -> the OOV bucket
    assert np.isnan(frame.columns["score"][1]) and frame.columns["score"][2] == 2.0
    assert frame.columns["tags"].offsets.tolist() == [0, 2, 3, 3]
    assert frame.labels.tolist() == [1.0, 0.0, 1.0] and frame.users.tolist() == [0, 0, 0]  # no user: one group


def test_fit_batches_equals_fit_on_the_whole_part() -> None:
    table = planted_impressions(2000, 2)
    cols = infer_columns(table, _Source("t"))
    whole = to_frame(table, cols, _Source("t"))
    fields = cols.fields()
    a = Schema(list(fields)).fit(whole)
    b = Schema(list(fields)).fit_batches(to_frame(table.slice(s, 300), cols, _Source("t")) for s in range(0, 2000, 300))
    assert a.vocab == b.vocab and a.lengths == b.lengths and a.dims == b.dims
    np.testing.assert_allclose(a.stats["price"], b.stats["price"], rtol=1e-9)


def test_streaming_matches_in_memory_and_never_reads_a_whole_file(tmp_path, monkeypatch) -> None:
    folder = _parts(tmp_path / "parts", planted_impressions(N, 3))
    mem, _ = _fit(str(folder), tmp_path / "mem", "--set", "stream=false")

    def refuse(*args, **kwargs):
        raise AssertionError("a streamed fit read a whole Parquet file")

    monkeypatch.setattr(pq, "read_table", refuse)
    monkeypatch.setattr(pq.ParquetFile, "read", refuse)
    streamed, config = _fit(str(folder), tmp_path / "stream", "--set", "stream=true", "--set", "stream_buffer=1000")
    assert config["data"]["ctr_file"]["stream"] is True
    assert streamed["data"]["train"] == mem["data"]["train"] and streamed["test"]["rows"] == mem["test"]["rows"]
    for part in ("valid", "test"):
        assert streamed[part]["auc"] > 0.8 and abs(streamed[part]["auc"] - mem[part]["auc"]) < 0.03, (part, streamed)
    stats = streamed["streaming"]
    assert stats["max_read_rows"] <= 300  # a row group at most
    assert stats["max_buffered_rows"] <= 1000 + 300  # the buffer plus one read batch, never the 2,400 rows


def test_a_part_column_is_the_default_split_and_streams(tmp_path) -> None:
    table = planted_impressions(N, 4)
    part = np.where(np.arange(N) % 10 == 8, "valid", np.where(np.arange(N) % 10 == 9, "test", "train"))
    path = tmp_path / "log.parquet"
    pq.write_table(table.append_column("part", pa.array(part)), path, row_group_size=400)
    m, config = _fit(str(path), tmp_path / "run", "--set", "stream=true")
    assert config["data"]["ctr_file"]["split"] == "part" and m["data"]["valid"] == N // 10
    assert m["test"]["auc"] > 0.8
    assert "part" not in m["data"]["fields"] and "ts" not in m["data"]["fields"]


def _csv(tmp_path, text: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return str(path)


GOOD = "user_id,cat,clicked\n" + "".join(f"u{i % 5},{'ab'[i % 2]},{i % 2}\n" for i in range(20))


@pytest.mark.parametrize(("text", "extra", "named"), [
    (GOOD + "u1,a,2\n", [], ["line 22", "field 'clicked'", "the label '2'"]),
    (GOOD + "u1,a,\n", [], ["line 22", "field 'clicked'", "a missing label"]),
    (GOOD.replace("clicked", "outcome"), ["--split", "time:0.8,0.1,0.1"], ["no label column", "--columns label="]),
    (GOOD, ["--columns", "label=clicked,user=nope"], ["no column 'nope'", "--columns user=nope", "bad.csv"]),
    (GOOD, ["--columns", "label=clicked,rating=x"], ["unknown role", "label"]),
    ("user_id,cat,clicked\n", [], ["bad.csv", "no rows"]),
    ("", ["--columns", "label=clicked"], ["bad.csv", "empty file"]),
    (GOOD, ["--split", "time:0.8,0.1,0.1"], ["no time column"]),
    (GOOD, ["--field-kinds", "cat=weird"], ["--field-kinds", "weird"]),
    (GOOD, ["--negatives", "3"], ["--negatives", "impression file"]),
    (GOOD, ["--set", "stream=true"], ["stream=true", "Parquet"]),
], ids=["label-not-0-1", "label-missing", "no-label-column", "columns-unknown-column", "columns-unknown-role",
        "header-only", "empty-file", "time-split-no-time", "field-kinds-bad", "negatives-on-impressions",
        "stream-csv"])
def test_bad_impression_files_exit_2_naming_file_row_and_column(tmp_path, text: str, extra: list[str],
                                                                 named: list[str]) -> None:
    code, out = run_main(["fit", "deepfm", "--data", _csv(tmp_path, text), *extra, "--out", str(tmp_path / "x"),
                          "--threads", "1", "--no-progress"])
    assert code == 2, out
    for n in named:
        assert n in out, (n, out)
    assert "Traceback" not in out and not (tmp_path / "x").exists()


def test_a_bad_label_in_a_streamed_parquet_file_names_the_row(tmp_path) -> None:
    table = planted_impressions(600, 5)
    labels = table.column("clicked").to_numpy().copy()
    labels[517] = 3
    folder = _parts(tmp_path / "parts", table.set_column(table.column_names.index("clicked"), "clicked",
                                                         pa.array(labels)))
    code, out = run_main(["fit", "deepfm", "--data", str(folder), "--set", "stream=true", "--out",
                          str(tmp_path / "x"), "--threads", "1", "--no-progress"])
    assert code == 2 and "valid.parque" in out and "row 37" in out and "field 'clicked'" in out, out
