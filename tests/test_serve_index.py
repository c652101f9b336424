"""Indexes: exact is the reference; FAISS Flat / HNSW / IVF-PQ agree with it; filters; add; save / load; the
``recembed index build`` report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_serve_support import bundle_of, fitted_run

from recembed.cli.main import cli
from recembed.errors import ConfigError, DataError
from recembed.serve.index import INDEXES, ExactIndex, build_index, load_index, measure_index, topk_rows


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((20, 16)).astype(np.float32)
    items = (centers[rng.integers(0, 20, 3000)] + 0.3 * rng.standard_normal((3000, 16))).astype(np.float32)
    queries = (centers[rng.integers(0, 20, 100)] + 0.3 * rng.standard_normal((100, 16))).astype(np.float32)
    return items, queries


def test_exact_matches_brute_force(data) -> None:
    items, queries = data
    got, scores = ExactIndex(items).search(queries, 10)
    full = queries @ items.T
    ref = np.argsort(-full, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(full, ref, axis=1), rtol=1e-5)


@pytest.mark.parametrize("kind, floor", [("flat", 1.0), ("hnsw", 0.95), ("ivfpq", 0.8)])
def test_faiss_indexes_recall_against_exact(data, kind: str, floor: float) -> None:
    items, queries = data
    stats = measure_index(build_index(kind, items), queries, 10)
    assert stats["recall@10"] >= floor, stats
    assert stats["qps_single"] > 0 and stats["qps_batch"] > 0


@pytest.mark.parametrize("kind", sorted(k for k in INDEXES if k != "codes"))  # codes: built by `recembed compress`
def test_filters(data, kind: str) -> None:
    items, queries = data
    index = build_index(kind, items)
    top, _ = ExactIndex(items).search(queries[:5], 50)
    exclude = [top[r, :30] for r in range(5)]  # the 30 best of each row are off limits
    got, scores = index.search(queries[:5], 10, exclude=exclude)
    assert got.shape == (5, 10) and (got >= 0).all()
    for r in range(5):
        assert not set(got[r]) & set(exclude[r])
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    candidates = np.arange(100, 400)
    got, _ = index.search(queries[:5], 10, candidates=candidates, exclude=[[100, 101]] * 5)
    assert np.isin(got, candidates).all() and not np.isin(got, [100, 101]).any()
    ref, _ = ExactIndex(items).search(queries[:5], 10, candidates=candidates, exclude=[[100, 101]] * 5)
    np.testing.assert_array_equal(got, ref)  # restricted search is exact for every kind


@pytest.mark.parametrize("kind", ["exact", "flat", "hnsw", "ivfpq"])
def test_one_query_path_matches_the_batch_path(data, kind: str) -> None:
    """A single query (the server's case) takes a lean path: same answers as the same query in a batch."""
    items, queries = data
    index = build_index(kind, items)
    top, _ = ExactIndex(items).search(queries[:8], 40)
    exclude = [top[r, [0, 2, 5, 7, 30]][::-1] for r in range(8)]  # unsorted, some of the best items
    batch, batch_scores = index.search(queries[:8], 10, exclude=exclude)
    for r in range(8):
        one, one_scores = index.search(queries[r], 10, exclude=[exclude[r]])
        assert one.shape == (1, 10) and not set(one[0]) & set(exclude[r])
        np.testing.assert_array_equal(one[0], batch[r])
        np.testing.assert_allclose(one_scores[0], batch_scores[r], rtol=1e-5)
    excl = np.arange(2995)  # fewer admissible items than k: padded rows, the same both ways
    short, scores = index.search(items[:1], 3000, exclude=[excl])
    np.testing.assert_array_equal(short[0], index.search(items[:2], 3000, exclude=[excl, excl])[0][0])
    assert (short[0, 5:] == -1).all() and np.isinf(scores[0, 5:]).all()
    if not index.approximate:
        assert sorted(short[0, :5]) == [2995, 2996, 2997, 2998, 2999]


def test_short_rows_are_padded(data) -> None:
    items, queries = data
    got, scores = ExactIndex(items[:5]).search(queries[:2], 8, exclude=[[0, 1], None])
    assert (got[0, 3:] == -1).all() and np.isinf(scores[0, 3:]).all() and (got[1, :5] >= 0).all()
    idx, vals = topk_rows(np.array([[1.0, -np.inf, 3.0]], dtype=np.float32), 3)
    assert idx.tolist() == [[2, 0, -1]] and vals[0, 2] == -np.inf


@pytest.mark.parametrize("kind", ["exact", "flat", "hnsw", "ivfpq"])
def test_add_and_save_load(data, kind: str, tmp_path) -> None:
    items, queries = data
    index = build_index(kind, items)
    new = index.add(100 * items[:2])
    assert new.tolist() == [3000, 3001] and len(index) == 3002
    got, _ = index.search(items[:2], 1)
    assert got[:, 0].tolist() == [3000, 3001]  # the scaled copies win the inner product
    if kind == "exact":
        return
    index.save(tmp_path / "x.faiss")
    loaded = load_index(kind, tmp_path / "x.faiss", index.vectors, index.params())
    np.testing.assert_array_equal(loaded.search(queries, 10)[0], index.search(queries, 10)[0])
    with pytest.raises(DataError, match="holds 3002"):
        load_index(kind, tmp_path / "x.faiss", items, index.params())


def test_bad_parameters_are_named(data) -> None:
    items, _ = data
    with pytest.raises(ConfigError, match="unknown parameter.*'efsearch'"):
        build_index("hnsw", items, efsearch=10)
    with pytest.raises(ConfigError, match="pq_m=5 must divide"):
        build_index("ivfpq", items, pq_m=5)
    with pytest.raises(ConfigError, match="unknown index kind 'annoy'"):
        build_index("annoy", items)
    with pytest.raises(DataError, match="queries must be"):
        ExactIndex(items).search(np.zeros((1, 3)), 5)


def test_index_build_reports_recall_and_throughput(tmp_path) -> None:
    report = tmp_path / "report.json"
    res = CliRunner().invoke(cli, ["index", "build", str(fitted_run("bpr")), "--kind", "hnsw", "--queries", "200",
                                   "--param", "m=16", "--report", str(report)])
    assert res.exit_code == 0, res.output
    assert "recall@10 vs exact" in res.output and "queries/s" in res.output
    stats = json.loads(report.read_text())
    assert stats["recall@10"] >= 0.95 and stats["qps_single"] > 0 and stats["params"]["m"] == 16


def test_index_build_save_stores_the_index_in_a_bundle(tmp_path) -> None:
    import shutil

    from recembed.serve.bundle import verify_bundle

    path = tmp_path / "b"
    shutil.copytree(bundle_of("bpr"), path)
    res = CliRunner().invoke(cli, ["index", "build", str(path), "--kind", "ivfpq", "--save"])
    assert res.exit_code == 0, res.output
    manifest = verify_bundle(path)
    assert manifest["index"]["kind"] == "ivfpq" and (path / "index" / "items.ivfpq.faiss").is_file()
    res = CliRunner().invoke(cli, ["index", "build", str(fitted_run("ease")), "--kind", "hnsw"])
    assert res.exit_code != 0 and "own scoring" in res.output
