"""[Scale] Out-of-core interactions: the scaled synthetic generator, the streaming vocabulary and split passes, MF-BPR
trained from the split on disk (``recembed fit bpr --data DIR --stream``), and its bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_rankers import run_main

from recembed.data.outofcore import _pair_uniform, open_split, part_batches, scan_vocabularies, write_split
from recembed.data.synthetic_scale import ScaleConfig, write_scaled
from recembed.training.streaming import StreamingPairTask

SMALL = ScaleConfig(interactions=120_000, users=3_000, items=1_200, topics=24, rows_per_file=25_000, seed=3)


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scaled")
    write_scaled(out, SMALL)
    return out


def test_generator_writes_files_of_bounded_size_with_planted_topics(scaled: Path) -> None:
    files = sorted(scaled.glob("part-*.parquet"))
    assert len(files) == 5 and all(pq.read_metadata(f).num_rows <= 25_000 for f in files)
    table = ds.dataset(str(scaled)).to_table()
    assert table.num_rows == 120_000 and table.column_names == ["user_id", "item_id", "timestamp"]
    again = Path(str(scaled) + "-again")
    write_scaled(again, SMALL)
    assert ds.dataset(str(again)).to_table().equals(table)  # deterministic for a seed
    # planted: a user's events concentrate on a few items' topics, far from uniform over the catalog
    users, items = table.column("user_id").to_numpy(), table.column("item_id").to_numpy()
    heavy = np.bincount(np.unique(users, return_inverse=True)[1]).argmax()
    mine = items[users == np.unique(users)[heavy]]
    assert len(np.unique(mine)) < 0.6 * len(mine)


def test_streaming_vocabularies_and_split_keep_every_pair_in_one_part(scaled: Path, tmp_path: Path) -> None:
    users, items, rows = scan_vocabularies(scaled)
    table = ds.dataset(str(scaled)).to_table()
    assert rows == table.num_rows
    assert len(users) == len(np.unique(table.column("user_id").to_numpy()))
    assert len(items) == len(np.unique(table.column("item_id").to_numpy()))
    split = write_split(scaled, tmp_path / "split", users, items, ratios=(0.8, 0.1, 0.1), seed=5)
    assert sum(split.sizes.values()) == rows
    assert split.sizes["train"] / rows == pytest.approx(0.8, abs=0.02)
    keys = {}
    for part in ("train", "valid", "test"):
        u, i = (np.concatenate(x) for x in zip(*part_batches(split, part)))
        keys[part] = set((u * len(items) + i).tolist())
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["valid"] and not keys["valid"] & keys["test"]
    reopened = open_split(tmp_path / "split", users, items)
    assert reopened.sizes == split.sizes
    task = StreamingPairTask(split, 1000, buffer_rows=30_000)
    seen = sum(len(b.users) for b in task.batches(0, np.random.default_rng(0)))
    assert seen == split.sizes["train"] and task.peak_buffer_rows < 30_000 + 25_000  # one file over the buffer


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)), min_size=1, max_size=50),
       st.integers(0, 10_000))
def test_pair_draw_is_a_function_of_the_pair(pairs: list[tuple[int, int]], seed: int) -> None:
    u = np.array([p[0] for p in pairs], dtype=np.int64)
    i = np.array([p[1] for p in pairs], dtype=np.int64)
    a = _pair_uniform(u, i, seed)
    assert ((a >= 0) & (a < 1)).all()
    np.testing.assert_array_equal(a, _pair_uniform(u.copy(), i.copy(), seed))
    perm = np.random.default_rng(seed).permutation(len(u))
    np.testing.assert_array_equal(_pair_uniform(u[perm], i[perm], seed), a[perm])


def test_streamed_bpr_learns_the_planted_topics(scaled: Path, tmp_path: Path) -> None:
    code, text = run_main(["fit", "bpr", "--data", str(scaled), "--stream", "--set", "epochs=4", "--set",
                           "learning_rate=0.01", "--set", "valid_sample=1000", "--threads", "1", "--no-progress",
                           "--ks", "10", "--out", str(tmp_path / "run")])
    assert code == 0, text
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # random scoring gives ~10 / 1,200 recall; the planted topics (24, ~50 items each) give far more
    assert m["test"]["recall@10"] > 0.05 and m["evaluated_users"]["test"] == 1000
    assert set(m["stages"]) == {"vocabulary", "split", "fit", "evaluation"}
    assert (tmp_path / "run" / "model" / "factors.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["params"]["optimizer"] == "sparse_adam"


@pytest.mark.parametrize("args,needle", [
    (["fit", "lightgcn", "--stream"], "--stream: supported for bpr"),
    (["fit", "bpr", "--stream", "--columns", "user=reader"], "reader"),
    (["fit", "bpr", "--stream", "--split", "loo"], "--split"),
])
def test_stream_bad_input_exits_2(scaled: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    code, text = run_main([*args[:2], "--data", str(scaled), *args[2:], "--out", str(tmp_path / "r")])
    assert code == 2 and needle in text and "Traceback" not in text


def test_stream_on_a_non_parquet_path_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "x.parquet"
    bad.write_text("user,item\n1,2\n")
    code, text = run_main(["fit", "bpr", "--data", str(bad), "--stream", "--out", str(tmp_path / "r")])
    assert code == 2 and "x.parquet" in text and "Traceback" not in text
