"""Property tests: metrics against a brute-force reference written from the definitions in
``recembed.evaluation.metrics``; ``rank_topk`` against a brute-force top-k; Vocabulary round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from recembed.data.vocab import Vocabulary
from recembed.errors import UnknownIdError
from recembed.evaluation.metrics import METRICS, compute_metrics, hits_from_topk
from recembed.evaluation.ranking import rank_topk

SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


# ==============================================================================================
# metrics
# ==============================================================================================
def reference_metrics(ranked: list[int], positives: set[int], k: int) -> dict[str, float]:
    """The metrics.py docstring, literally: binary relevance, ``-1`` is an empty slot."""
    p = len(positives)
    hits = [1 if (x >= 0 and x in positives) else 0 for x in ranked[:k]]
    n_hit = sum(hits)
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    idcg = sum(1 / math.log2(r + 2) for r in range(min(p, k)))
    first = next((r for r, h in enumerate(hits) if h), None)
    ap = sum(h * (sum(hits[: r + 1]) / (r + 1)) for r, h in enumerate(hits)) / min(p, k)
    return {
        "recall": n_hit / p,
        "precision": n_hit / k,
        "hit": 1.0 if n_hit else 0.0,
        "ndcg": dcg / idcg,
        "mrr": 0.0 if first is None else 1.0 / (first + 1),
        "map": ap,
    }


@st.composite
def ranked_lists(draw):
    """A positives matrix, evaluated users (a subset, any order), their ranked lists and ks."""
    n_items = draw(st.integers(1, 25))
    n_rows = draw(st.integers(1, 8))
    length = draw(st.integers(1, 12))
    users = draw(st.lists(st.integers(0, n_rows - 1), min_size=1, max_size=n_rows, unique=True))
    pos_sets = [draw(st.sets(st.integers(0, n_items - 1), max_size=n_items)) for _ in range(n_rows)]
    topk = []
    for _ in users:
        items = draw(st.lists(st.integers(0, n_items - 1), max_size=min(length, n_items), unique=True))
        row = items + [-1] * (length - len(items))
        if draw(st.booleans()):  # empty slots anywhere, not only at the end
            row = draw(st.permutations(row))
        topk.append(row)
    ks = draw(st.lists(st.integers(1, length), min_size=1, max_size=4, unique=True))
    duplicate_entries = draw(st.booleans())
    return n_items, pos_sets, users, topk, ks, duplicate_entries


def positives_matrix(n_items, pos_sets, duplicate_entries):
    """CSR built from its arrays, so that with ``duplicate_entries`` a pair really is stored twice
    (a held-out pair listed twice must still count once)."""
    rows = [sorted(s) * (2 if duplicate_entries else 1) for s in pos_sets]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([i for r in rows for i in r], dtype=np.int32)
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(pos_sets), n_items))


@SETTINGS
@given(ranked_lists())
def test_metrics_match_brute_force(case):
    n_items, pos_sets, users, topk, ks, dup = case
    hits, n_pos = hits_from_topk(
        np.array(users), np.array(topk, dtype=np.int64), positives_matrix(n_items, pos_sets, dup)
    )
    # the hit matrix itself
    for j, u in enumerate(users):
        assert hits[j].tolist() == [x >= 0 and x in pos_sets[u] for x in topk[j]]
        assert n_pos[j] == len(pos_sets[u])
    got = compute_metrics(hits, n_pos, ks)
    assert set(got) == {f"{m}@{k}" for m in METRICS for k in ks}
    kept = [j for j, u in enumerate(users) if pos_sets[u]]  # users without positives are dropped
    for k in ks:
        expected = [reference_metrics(topk[j], pos_sets[users[j]], k) for j in kept]
        for name in METRICS:
            values = got[f"{name}@{k}"]
            assert values.shape == (len(kept),)
            np.testing.assert_allclose(
                values, [e[name] for e in expected], rtol=1e-12, atol=1e-12, err_msg=f"{name}@{k}"
            )


def test_metric_reference_sanity():
    """A hand-computed case, so that the reference itself is not wrong in the same way."""
    ref = reference_metrics([5, 2, -1, 7], {2, 7, 9}, 4)
    assert ref["recall"] == pytest.approx(2 / 3)
    assert ref["precision"] == pytest.approx(2 / 4)
    assert ref["hit"] == 1.0
    assert ref["mrr"] == pytest.approx(1 / 2)
    assert ref["ndcg"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 0.5))
    assert ref["map"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    hits, n_pos = hits_from_topk(
        np.array([0]),
        np.array([[5, 2, -1, 7]]),
        sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 0], [2, 7, 9])), shape=(1, 10)),
    )
    got = compute_metrics(hits, n_pos, [4])
    for name, value in ref.items():
        assert got[f"{name}@4"][0] == pytest.approx(value)


def test_metrics_need_long_enough_lists():
    with pytest.raises(ValueError, match="length"):
        compute_metrics(np.zeros((1, 3), bool), np.array([1]), [5])


# ==============================================================================================
# rank_topk
# ==============================================================================================
def brute_topk(scores: np.ndarray, excluded: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    cand = [j for j in range(len(scores)) if not excluded[j]]
    cand.sort(key=lambda j: (-scores[j], j))
    top = cand[:k]
    return top + [-1] * (k - len(top)), [float(scores[j]) for j in top] + [-math.inf] * (k - len(top))


@st.composite
def ranking_cases(draw, ties: bool):
    n_rows = draw(st.integers(1, 12))
    num_items = draw(st.integers(1, 25))
    k = draw(st.integers(1, num_items + 3))  # more than the catalog: padded with -1
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if ties:
        scores = rng.integers(-2, 3, size=(n_rows, num_items)).astype(np.float32)
    else:  # distinct, exactly representable scores
        scores = (rng.permutation(n_rows * num_items).reshape(n_rows, num_items) - 50).astype(np.float32)
    excl = rng.random((n_rows, num_items)) < draw(st.sampled_from([0.0, 0.3, 0.9]))
    users = rng.permutation(n_rows)[: draw(st.integers(1, n_rows))]
    return scores, sp.csr_matrix(excl.astype(np.float32)), excl, users, k


def _run(scores, exclude, users, k, batch_size):
    calls = []

    def scorer(batch):
        calls.append(len(batch))
        return scores[batch]

    items, vals = rank_topk(scorer, users, exclude, k, num_items=scores.shape[1], batch_size=batch_size)
    assert sum(calls) == len(users)
    if batch_size is not None:
        assert max(calls) <= batch_size
    return items, vals


BATCH_SIZES = (1, 2, 3, 5, None)


@SETTINGS
@given(ranking_cases(ties=False))
def test_rank_topk_is_the_brute_force_top_k(case):
    scores, exclude, excl, users, k = case
    first = None
    for bs in BATCH_SIZES:
        items, vals = _run(scores, exclude, users, k, bs)
        assert items.shape == (len(users), k) and items.dtype == np.int32
        assert vals.shape == (len(users), k) and vals.dtype == np.float32
        for j, u in enumerate(users):
            ref_items, ref_vals = brute_topk(scores[u], excl[u], k)
            assert items[j].tolist() == ref_items
            assert vals[j].tolist() == ref_vals
        if first is None:
            first = items
        np.testing.assert_array_equal(items, first)  # identical across batch sizes


@SETTINGS
@given(ranking_cases(ties=True))
def test_rank_topk_with_ties_is_the_brute_force_top_k(case):
    """Heavy ties, also at the k-th score: the lower index wins, and excluded items never appear."""
    scores, exclude, excl, users, k = case
    first = None
    for bs in BATCH_SIZES:
        items, vals = _run(scores, exclude, users, k, bs)
        for j, u in enumerate(users):
            real = [x for x in items[j].tolist() if x >= 0]
            assert not any(excl[u, x] for x in real)
            ref_items, ref_vals = brute_topk(scores[u], excl[u], k)
            assert items[j].tolist() == ref_items
            assert vals[j].tolist() == ref_vals
        if first is None:
            first = items
        np.testing.assert_array_equal(items, first)


@pytest.mark.parametrize("use_torch", [True, False])
def test_rank_topk_breaks_ties_at_the_cut_by_lower_index(monkeypatch, use_torch):
    """Both kernels (torch.topk and the NumPy argpartition fallback) pick arbitrary members of a tie."""
    import recembed._compute as compute

    if use_torch and not compute.HAVE_TORCH:
        pytest.skip("torch is not installed")
    monkeypatch.setattr(compute, "HAVE_TORCH", use_torch)
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(20, 34)).astype(np.float32)
    users = np.arange(20)
    exclude = sp.csr_matrix((rng.random((20, 34)) < 0.2).astype(np.float32))
    items, _ = rank_topk(lambda b: scores[b], users, exclude, 22, num_items=34)
    expected = [brute_topk(scores[u], exclude[u].toarray()[0] > 0, 22)[0] for u in users]
    assert items.tolist() == expected


def test_rank_topk_rejects_wrong_score_shape():
    with pytest.raises(ValueError, match="shape"):
        rank_topk(lambda b: np.zeros((len(b), 3), np.float32), np.arange(2), None, 2, num_items=4)


# ==============================================================================================
# Vocabulary
# ==============================================================================================
# "\x00" is left out: NumPy's fixed-width strings drop trailing NULs, so "a" and "a\x00" collide
# (a known limitation of Vocabulary's array conversion).
ids = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)


@SETTINGS
@given(st.lists(ids, max_size=40), st.lists(ids, max_size=10))
def test_vocabulary_round_trip(values, more):
    assume(values or more)
    vocab = Vocabulary.from_values(values, more, name="item") if more else Vocabulary.from_values(values)
    expected = list(dict.fromkeys(values + more))  # first appearance order
    assert vocab.to_list() == expected
    n = len(vocab)
    idx = np.arange(n)
    np.testing.assert_array_equal(vocab.index(vocab.lookup(idx)), idx)
    for i in range(n):
        assert vocab.index([vocab.lookup(i)]).tolist() == [i]
        assert vocab.lookup(i) in vocab
    if values:
        np.testing.assert_array_equal(vocab.lookup(vocab.index(values)), np.array(values, dtype=object))


@SETTINGS
@given(st.lists(ids, min_size=1, max_size=20, unique=True), st.lists(ids, min_size=1, max_size=10))
def test_vocabulary_unknown_policies(known, queries):
    vocab = Vocabulary(known, name="user")
    expected = [known.index(q) if q in known else -1 for q in queries]
    assert vocab.index(queries, unknown="ignore").tolist() == expected
    if -1 in expected:
        with pytest.raises(UnknownIdError) as info:
            vocab.index(queries, source="test.tsv")
        assert f"{expected.count(-1)} user id(s) in test.tsv" in str(info.value)
    else:
        assert vocab.index(queries).tolist() == expected


@SETTINGS
@given(st.lists(st.integers(-(10**12), 10**12), min_size=1, max_size=30))
def test_vocabulary_integer_ids_are_their_decimal_strings(values):
    a = Vocabulary.from_values(np.array(values, dtype=np.int64))
    b = Vocabulary.from_values([str(v) for v in values])
    assert a == b
    assert a.content_hash() == b.content_hash()
