"""MUVERA fixed dimensional encodings, exact Chamfer, FDE retrieval + re-rank, CRISP-lite pruning."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recembed.compact.muvera import (
    FDEConfig,
    FDEEncoder,
    MuveraIndex,
    chamfer,
    chamfer_candidates,
    planted_sets,
    prune_sets,
)
from recembed.errors import ConfigError


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def brute_chamfer(q: np.ndarray, p: np.ndarray) -> float:
    return float(sum(max(float(qi @ pj) for pj in p) for qi in q))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), mq=st.integers(1, 8), mp=st.integers(1, 8), dim=st.integers(2, 16),
       k_sim=st.integers(0, 4), reps=st.integers(1, 4))
def test_fde_inner_product_never_exceeds_chamfer(seed: int, mq: int, mp: int, dim: int, k_sim: int,
                                                  reps: int) -> None:
    """Without projections each repetition averages <q, p> over some p for every q: at most max_p <q, p>."""
    rng = np.random.default_rng(seed)
    q, p = rng.standard_normal((1, mq, dim)), rng.standard_normal((1, mp, dim))
    enc = FDEEncoder(FDEConfig(dim=dim, k_sim=k_sim, reps=reps, seed=seed % 1000))
    approx = float(enc.encode_queries(q)[0] @ enc.encode_documents(p)[0]) / reps
    exact = brute_chamfer(q[0], p[0])
    assert approx <= exact + 1e-4 * (1 + abs(exact))
    if k_sim == 0:  # one partition: sum_q <q, mean(P)>
        assert approx == pytest.approx(float(q[0].sum(0) @ p[0].mean(0)), rel=1e-4, abs=1e-4)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), m=st.integers(2, 8), dim=st.integers(16, 48),
       extra=st.integers(0, 3))
def test_fde_inner_product_approximates_chamfer(seed: int, m: int, dim: int, extra: int) -> None:
    """A document of near-copies of the query's vectors (plus a few random ones): the FDE estimate is at least half
    the exact Chamfer similarity (32 partitions: a query vector shares its partition with ~1 + (n - 1) / 32
    document vectors, whose average is taken), and far above the estimate for a random document of that size."""
    rng = np.random.default_rng(seed)
    q = unit(rng.standard_normal((m, dim)))
    good = unit(np.concatenate([q + 0.1 * rng.standard_normal((m, dim)) / np.sqrt(dim),
                                rng.standard_normal((extra, dim))]))
    bad = unit(rng.standard_normal((m + extra, dim)))
    enc = FDEEncoder(FDEConfig(dim=dim, k_sim=5, reps=30, seed=seed % 997))
    fq = enc.encode_queries(q[None])[0]
    est_good, est_bad = (float(fq @ enc.encode_documents(p[None])[0]) / 30 for p in (good, bad))
    exact_good = brute_chamfer(q, good)
    assert est_good <= exact_good + 1e-4
    assert est_good >= 0.5 * exact_good
    assert est_good > est_bad + 0.25 * m


def test_projections_are_unbiased_on_average() -> None:
    """Inner (+-1 / sqrt(d_proj)) and final (Count-Sketch) projections keep the FDE inner product in expectation."""
    rng = np.random.default_rng(3)
    q, p = unit(rng.standard_normal((1, 6, 16))), unit(rng.standard_normal((1, 9, 16)))
    base = FDEEncoder(FDEConfig(dim=16, k_sim=2, reps=4, seed=0))
    target = float(base.encode_queries(q)[0] @ base.encode_documents(p)[0])
    for extra in ({"d_proj": 8}, {"d_final": 64}):
        ests = []
        for s in range(200):  # the same partitions (the planes are drawn first from seed 0), fresh projections
            enc = FDEEncoder(FDEConfig(dim=16, k_sim=2, reps=4, seed=0, **extra))
            fresh = np.random.default_rng(s + 10)
            if enc.proj is not None:
                enc.proj = (fresh.integers(0, 2, enc.proj.shape) * 2 - 1) / np.float32(np.sqrt(8.0))
            else:
                enc.sketch.data = (fresh.integers(0, 2, enc.sketch.nnz) * 2 - 1).astype(np.float32)
                assert enc.out_dim == 64
            ests.append(float(enc.encode_queries(q)[0] @ enc.encode_documents(p)[0]))
        assert abs(np.mean(ests) - target) < 4 * np.std(ests) / np.sqrt(len(ests)) + 1e-3, extra


def test_chamfer_matches_brute_force_with_ragged_sets() -> None:
    rng = np.random.default_rng(0)
    qs, ds = rng.standard_normal((3, 5, 8)), rng.standard_normal((7, 6, 8))
    ql, dl = np.array([5, 2, 3]), np.array([6, 1, 4, 6, 2, 3, 5])
    got = chamfer(qs, ds, ql, dl, batch=3)
    for i in range(3):
        for j in range(7):
            assert got[i, j] == pytest.approx(brute_chamfer(qs[i, :ql[i]], ds[j, :dl[j]]), rel=1e-5, abs=1e-5)
    cand = np.array([[0, 3], [6, 1], [2, 2]])
    np.testing.assert_allclose(chamfer_candidates(qs, ds, cand, ql, dl), np.take_along_axis(got, cand, axis=1),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="lengths"):
        chamfer(qs, ds, np.array([0, 1, 1]))


def test_document_fde_fills_empty_partitions() -> None:
    enc = FDEEncoder(FDEConfig(dim=4, k_sim=3, reps=1, seed=1))
    p = unit(np.random.default_rng(0).standard_normal((1, 2, 4)))
    blocks = enc.encode_documents(p)[0].reshape(8, 4)
    assert np.all(np.linalg.norm(blocks, axis=1) > 0)  # two vectors, eight partitions: all filled
    bare = FDEEncoder(FDEConfig(dim=4, k_sim=3, reps=1, seed=1, fill_empty=False))
    assert (np.linalg.norm(bare.encode_documents(p)[0].reshape(8, 4), axis=1) == 0).sum() >= 6


def test_muvera_retrieval_recovers_the_exact_chamfer_top_k() -> None:
    data = planted_sets(3000, 20, doc_vectors=8, query_vectors=8, dim=32, topics=100, seed=1)
    enc = FDEEncoder(FDEConfig(dim=32, k_sim=3, reps=12, d_proj=8, seed=0))
    index = MuveraIndex(data["docs"], enc, data["doc_lengths"])
    exact = chamfer(data["queries"], data["docs"], data["query_lengths"], data["doc_lengths"])
    truth = np.argsort(-exact, axis=1)[:, :10]
    ids, scores = index.search(data["queries"], 10, candidates=300, q_lengths=data["query_lengths"])
    recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(ids, truth)])
    assert recall >= 0.9
    np.testing.assert_allclose(scores, np.take_along_axis(exact, ids, axis=1), rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert (ids[:, 0] == data["targets"]).mean() > 0.8  # the planted target is (nearly always) the best


def test_prune_sets_keeps_small_sets_and_approximates_chamfer() -> None:
    data = planted_sets(200, 5, doc_vectors=16, dim=16, topics=20, seed=2)
    docs, lens = data["docs"], data["doc_lengths"]
    small, small_lens = prune_sets(docs[:, :4], 8)
    np.testing.assert_array_equal(small, docs[:, :4])
    cent, clens = prune_sets(docs, 4, lens, seed=0)
    assert cent.shape == (200, 4, 16) and clens.max() == 4
    full = chamfer(data["queries"], docs, None, lens)
    pruned = chamfer(data["queries"], cent, None, clens)
    top = np.argsort(-full, axis=1)[:, :10]
    top_pruned = np.argsort(-pruned, axis=1)[:, :10]
    assert np.mean([len(np.intersect1d(a, b)) for a, b in zip(top, top_pruned)]) >= 6
    with pytest.raises(ConfigError, match="max_vectors"):
        prune_sets(docs, 0)
