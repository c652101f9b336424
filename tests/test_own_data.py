"""Own data in, through the real CLI: the README's first example, and every bad input of an own interactions /
item / user / vector file ends with exit code 2 and a message naming the file, line or flag, never a traceback."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import recembed

REPO = Path(__file__).resolve().parents[1]
SRC = Path(recembed.__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200", "RECEMBED_DATA_ROOT": str(cwd / "no-data")}
    return subprocess.run([sys.executable, "-m", "recembed.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def readme_first_example() -> list[list[str]]:
    """The commands of the first ```sh block under README's "## First example" heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## First example", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]
    return [c for c in commands if c]


# ------------------------------------------------------------------------------------------------
# the README's first example, run as written
# ------------------------------------------------------------------------------------------------
def test_readme_first_example_runs_and_beats_pop(tmp_path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    commands = readme_first_example()
    assert [c[:2] for c in commands] == [["recembed", "fit"], ["recembed", "recommend"], ["recembed", "fit"]]
    outputs = []
    for cmd in commands:
        res = run_cli(cmd[1:], tmp_path)
        assert res.returncode == 0, f"{shlex.join(cmd)}\n{res.stdout}\n{res.stderr}"
        assert "Traceback" not in res.stderr
        outputs.append(" ".join(res.stdout.split()))
    assert "3 event(s) repeat an earlier (user, item) pair: dropped" in outputs[0]
    books = json.loads((tmp_path / "runs" / "books" / "metrics.json").read_text())
    pop = json.loads((tmp_path / "runs" / "books-pop" / "metrics.json").read_text())
    assert books["duplicates"] == {"policy": "drop", "repeated_events": 3}
    assert books["split_sizes"] == pop["split_sizes"] and books["split_hash"] == pop["split_hash"]
    assert books["cold_users"] == {"policy": "skip", "valid": 0, "test": 0}
    config = json.loads((tmp_path / "runs" / "books" / "config.json").read_text())
    assert config["data"]["items"] == "examples/items.csv" and config["data"]["text_columns"] == "title,description"
    assert books["test"]["users"] == 60 and books["test"]["ndcg@10"] > 1.5 * pop["test"]["ndcg@10"]
    # what the README says about the run is what the run measures
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    claimed = re.search(r"test NDCG@10 ([0-9.]+) for AlphaRec against ([0-9.]+) for `pop`", readme)
    assert claimed, "README no longer states the first example's NDCG@10"
    assert abs(float(claimed[1]) - books["test"]["ndcg@10"]) < 5e-4, f"update README: {books['test']['ndcg@10']}"
    assert abs(float(claimed[2]) - pop["test"]["ndcg@10"]) < 5e-4, f"update README: {pop['test']['ndcg@10']}"
    # recommend shows titles from items.csv; a book nobody has read is among ana's picks (content only)
    assert "After the Deep Field" in outputs[1] and "bk107" in outputs[1]
    inter = (tmp_path / "examples" / "interactions.csv").read_text(encoding="utf-8")
    assert ",bk107," not in inter


def test_example_files_are_what_the_script_writes(tmp_path) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import make_example
    finally:
        sys.path.remove(str(EXAMPLES))
    make_example.main(out=tmp_path)
    for name in ("interactions.csv", "items.csv"):
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes(), name


# ------------------------------------------------------------------------------------------------
# bad input: exit code 2, the message names file / line / field / flag, no traceback
# ------------------------------------------------------------------------------------------------
LATIN1 = "café".encode("latin-1")


def write_files(d: Path) -> None:
    rows = "".join(f"u{u},i{(u * 3 + k) % 12},{k % 5 + 1},{1000 + 10 * u + k}\n" for u in range(12) for k in range(5))
    (d / "inter.csv").write_text("uid,iid,stars,ts\n" + rows, encoding="utf-8")
    (d / "items.csv").write_text("iid,title\n" + "".join(f"i{i},Book {i}\n" for i in range(12)), encoding="utf-8")


MAP = "user=uid,item=iid,rating=stars,time=ts"
OWN = ["--data", "inter.csv", "--columns", MAP]  # the good files of write_files
ITEMS = [*OWN, "--items", "items.csv"]
CASES = {
    # name: (files to write {name: text or bytes}, the arguments after `fit pop`, message fragment)
    "nan-user-id": ({"bad.csv": "user_id,item_id\nu1,a\nNaN,b\n"}, ["--data", "bad.csv"],
                    "bad.csv, line 3, field 'user_id': 'NaN' where an id was expected"),
    "none-item-id": ({"bad.csv": "user_id,item_id\nu1,a\nu2,None\n"}, ["--data", "bad.csv"],
                     "bad.csv, line 3, field 'item_id': 'None' where an id was expected"),
    "empty-item-id": ({"bad.csv": "user_id,item_id\nu1,a\n\nu2,\n"}, ["--data", "bad.csv"],
                      "bad.csv, line 4, field 'item_id': an empty value where an id was expected"),
    "non-utf8-interactions": ({"bad.csv": b"user_id,item_id\nu1,a\nu2," + LATIN1 + b"\n"}, ["--data", "bad.csv"],
                              "bad.csv, line 3: not UTF-8 text"),
    "non-utf8-items": ({"items.csv": b"iid,title\ni1,ok\ni2," + LATIN1 + b"\n"}, ITEMS,
                       "items.csv, line 3: not UTF-8 text"),
    "columns-unknown-role": ({}, ["--data", "inter.csv", "--columns", "person=uid"],
                             "--columns: unknown role(s) ['person']"),
    "columns-missing-column": ({}, ["--data", "inter.csv", "--columns", "user=reader,item=iid"],
                               "field 'reader': no column 'reader' (--columns user=reader)"),
    "no-user-column": ({"bad.csv": "who,item_id\nu1,a\n"}, ["--data", "bad.csv"],
                       "bad.csv: no user column: expected one of ['user_id'"),
    "rating-not-a-number": ({"bad.csv": "user_id,item_id,rating\nu1,a,4\nu2,b,five\n"}, ["--data", "bad.csv"],
                            "bad.csv, line 3, field 'rating': expected a number, found 'five'"),
    "time-not-a-date": ({"bad.csv": "user_id,item_id,timestamp\nu1,a,2024-01-02\nu2,b,yesterday\n"},
                        ["--data", "bad.csv"], "bad.csv, line 3, field 'timestamp': expected a number or an ISO date"),
    "ragged-row": ({"bad.csv": "user_id,item_id\nu1,a\nu2,b,c\n"}, ["--data", "bad.csv"],
                   "bad.csv, line 3: expected 2 fields"),
    "items-repeated-id": ({"items.csv": "iid,title\ni1,a\ni2,b\ni1,c\n"}, ITEMS,
                          "items.csv, line 4, field 'iid': id 'i1' has more than one row"),
    "items-no-key": ({"items.csv": "sku,title\ni1,a\n"}, ITEMS, "items.csv: no item id column: expected 'iid'"),
    "items-nan-id": ({"items.csv": "iid,title\ni1,a\nnan,b\n"}, ITEMS,
                     "items.csv, line 3, field 'iid': 'nan' where an id was expected"),
    "items-not-found": ({}, [*OWN, "--items", "missing.csv"], "missing.csv: file not found"),
    "items-with-catalog-data": ({}, ["--data", "synthetic:tiny", "--items", "items.csv"],
                                "--items: only for an interactions file"),
    "duplicates-with-catalog-data": ({}, ["--data", "synthetic:tiny", "--duplicates", "sum"],
                                     "--duplicates sum: only for an interactions file"),
    "npy-fewer-rows": ({}, [*OWN, "--features", "img=short.npy"],
                       "short.npy: 11 rows but the item vocabulary has 12 items"),
    "npy-mask-count": ({}, [*OWN, "--features", "img=short.npy,mask=mask10.npy"],
                       "short.npy: 11 rows but the missing mask marks 10 items present"),
    "features-bad-option": ({}, [*OWN, "--features", "img=short.npy,rows=x"],
                            "after NAME=PATH expected ,ids=IDS.txt or ,mask=MASK.npy"),
    "wrong-suffix": ({"inter.xlsx": "x"}, ["--data", "inter.xlsx"], "inter.xlsx: cannot tell the format"),
}


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    write_files(d)
    np.save(d / "short.npy", np.ones((11, 4), dtype=np.float32))
    np.save(d / "mask10.npy", np.arange(12) < 10)
    return d


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_a_message(case: str, bad_dir: Path, tmp_path: Path) -> None:
    files, extra, fragment = CASES[case]
    for name in os.listdir(bad_dir):
        shutil.copy(bad_dir / name, tmp_path / name)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    res = run_cli(["fit", "pop", *extra, "--out", "run"], tmp_path)
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 2, f"{case}: rc {res.returncode}\n{out}"
    assert "Traceback" not in res.stderr, res.stderr
    assert fragment in out, f"{case}: {fragment!r} not in {out!r}"
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_good_files_fit_and_masks_name_the_rows(bad_dir: Path, tmp_path: Path) -> None:
    """The same files without a mistake fit; a .npy with a row per present item fits with its mask or ids."""
    for name in os.listdir(bad_dir):
        shutil.copy(bad_dir / name, tmp_path / name)
    np.save(tmp_path / "mask11.npy", np.arange(12) != 5)  # item index 5 has no row
    (tmp_path / "ids.txt").write_text("\n".join(f"i{i}" for i in range(11)) + "\n", encoding="utf-8")
    for spec in ("img=short.npy,mask=mask11.npy", "img=short.npy,ids=ids.txt"):
        res = run_cli(["fit", "vbpr", "--data", "inter.csv", "--columns", MAP, "--items", "items.csv", "--features",
                       spec, "--set", "epochs=1", "--no-progress", "--threads", "1", "--out", "run"], tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["users"] > 0


def test_parquet_interactions_with_a_null_id(tmp_path: Path) -> None:
    pq.write_table(pa.table({"user_id": ["u1", None, "u3"], "item_id": ["a", "b", "c"]}), tmp_path / "e.parquet")
    res = run_cli(["fit", "pop", "--data", "e.parquet", "--out", "run"], tmp_path)
    out = " ".join(res.stdout.split())
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "e.parquet, field 'user_id': a null where an id was expected at row 1 (0-based)" in out
