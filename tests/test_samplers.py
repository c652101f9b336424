"""Negative samplers never return a training positive (hypothesis), and follow their distribution."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recembed.errors import DataError
from recembed.training.samplers import PopularitySampler, UniformSampler


@st.composite
def matrices(draw):  # noqa: ANN001, ANN201
    users = draw(st.integers(1, 12))
    items = draw(st.integers(2, 15))
    density = draw(st.floats(0.0, 0.9))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.random((users, items)) < density
    x[:, rng.integers(0, items)] = False  # every user has at least one negative
    return sp.csr_matrix(x.astype(np.float32)), seed


@settings(max_examples=60, deadline=None)
@given(matrices(), st.sampled_from([UniformSampler, PopularitySampler]), st.integers(1, 5), st.booleans())
def test_never_returns_a_positive(data, sampler_cls, n, bitmap) -> None:
    import recembed.training.samplers as samplers

    x, seed = data
    # both membership tests: the packed bitmap (small catalogs) and the binary search over sorted keys
    limit = samplers.BITMAP_LIMIT_BYTES
    samplers.BITMAP_LIMIT_BYTES = limit if bitmap else 0
    try:
        sampler = sampler_cls(x)
    finally:
        samplers.BITMAP_LIMIT_BYTES = limit
    assert (sampler._bits is not None) == bitmap
    rng = np.random.default_rng(seed)
    users = rng.integers(0, x.shape[0], 50)
    neg = sampler.sample(users, rng, n)
    assert neg.shape == (50, n)
    dense = x.toarray().astype(bool)
    assert not dense[np.repeat(users, n), neg.ravel()].any()
    assert neg.min() >= 0 and neg.max() < x.shape[1]


def test_uniform_is_uniform_over_negatives() -> None:
    x = sp.csr_matrix(np.array([[1, 0, 0, 0, 1]], dtype=np.float32))
    neg = UniformSampler(x).sample(np.zeros(30000, dtype=np.int64), np.random.default_rng(0)).ravel()
    counts = np.bincount(neg, minlength=5)
    assert counts[0] == counts[4] == 0
    np.testing.assert_allclose(counts[1:4] / 30000, 1 / 3, atol=0.02)


def test_popularity_follows_counts() -> None:
    x = sp.csr_matrix(np.array([[1, 1, 1, 0, 0]] * 9 + [[0, 0, 0, 0, 0]], dtype=np.float32))
    sampler = PopularitySampler(x, alpha=1.0)
    neg = sampler.sample(np.full(40000, 9), np.random.default_rng(1)).ravel()
    freq = np.bincount(neg, minlength=5) / len(neg)
    expected = (np.array([9, 9, 9, 0, 0]) + 1.0) / 32.0
    np.testing.assert_allclose(freq, expected, atol=0.015)


def test_user_with_every_item_is_an_error() -> None:
    x = sp.csr_matrix(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(DataError, match="every item"):
        UniformSampler(x).sample(np.array([0]), np.random.default_rng(0))


@settings(max_examples=40, deadline=None)
@given(matrices())
def test_bitmap_and_binary_search_agree_on_membership(data) -> None:
    import recembed.training.samplers as samplers

    x, seed = data
    fast = UniformSampler(x)
    limit = samplers.BITMAP_LIMIT_BYTES
    samplers.BITMAP_LIMIT_BYTES = 0
    try:
        slow = UniformSampler(x)
    finally:
        samplers.BITMAP_LIMIT_BYTES = limit
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, x.shape[0], 200), rng.integers(0, x.shape[1], 200)
    expected = x.toarray().astype(bool)[users, items]
    np.testing.assert_array_equal(fast.is_positive(users, items), expected)
    np.testing.assert_array_equal(slow.is_positive(users, items), expected)
