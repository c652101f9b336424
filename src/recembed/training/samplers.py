"""Negative samplers that never return one of the user's training positives.

Vectorised rejection sampling: draw candidates for every (user) at once, find the ones that are
positives with one ``searchsorted`` over the sorted (user, item) keys, redraw only those, repeat.
The number of rounds is logarithmic in practice; there is no Python loop over interactions.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import DataError

BITMAP_LIMIT_BYTES = 32 * 2**20


class NegativeSampler:
    """Base: ``sample(users (N,), rng, n=1) -> (N, n) int64`` items the users did not interact with.

    Parameters
    ----------
    positives : csr ``(num_users, num_items)``
        The items each user must never be given as a negative (the training matrix).
    """

    def __init__(self, positives: sp.csr_matrix) -> None:
        positives = sp.csr_matrix(positives)
        positives.sort_indices()
        self.num_users, self.num_items = positives.shape
        rows = np.repeat(np.arange(self.num_users, dtype=np.int64), np.diff(positives.indptr))
        self._keys = np.unique(rows * self.num_items + positives.indices)
        # small catalogs: a packed bitmap over all (user, item) pairs answers membership ~20x faster than
        # a binary search over the sorted keys (random queries miss the cache at every bisection step)
        self._bits = None
        if self.num_users * self.num_items <= 8 * BITMAP_LIMIT_BYTES:
            flags = np.zeros(self.num_users * self.num_items, dtype=bool)
            flags[self._keys] = True
            self._bits = np.packbits(flags, bitorder="little")
        counts = np.diff(positives.indptr)
        full = np.flatnonzero(counts >= self.num_items)
        self._full_users = set(full.tolist())

    def _draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _weights(self) -> np.ndarray | None:
        """Unnormalised sampling weights over items (None: uniform)."""
        return None

    def _draw_exact(self, user: int, rng: np.random.Generator) -> int:
        lo, hi = np.searchsorted(self._keys, [user * self.num_items, (user + 1) * self.num_items])
        allowed = np.ones(self.num_items, dtype=bool)
        allowed[self._keys[lo:hi] - user * self.num_items] = False
        candidates = np.flatnonzero(allowed)
        w = self._weights()
        p = None if w is None else w[candidates] / w[candidates].sum()
        return int(rng.choice(candidates, p=p))

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        query = users.astype(np.int64) * self.num_items + items
        if self._bits is not None:
            return ((self._bits[query >> 3] >> (query & 7).astype(np.uint8)) & 1).astype(bool)
        pos = np.minimum(np.searchsorted(self._keys, query), len(self._keys) - 1)
        return self._keys[pos] == query if len(self._keys) else np.zeros(query.shape, dtype=bool)

    def sample(self, users: np.ndarray, rng: np.random.Generator, n: int = 1, max_rounds: int = 20) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        if self._full_users and np.isin(users, list(self._full_users)).any():
            bad = users[np.isin(users, list(self._full_users))][:5].tolist()
            raise DataError(f"user index(es) {bad} interacted with every item: no negative exists")
        flat_users = np.repeat(users, n)
        items = self._draw(len(flat_users), rng)
        todo = np.flatnonzero(self.is_positive(flat_users, items))
        rounds = 0
        while len(todo) and rounds < max_rounds:
            items[todo] = self._draw(len(todo), rng)
            todo = todo[self.is_positive(flat_users[todo], items[todo])]
            rounds += 1
        # the few left belong to users with almost every item: draw them exactly from their complement
        for pos in todo:
            items[pos] = self._draw_exact(int(flat_users[pos]), rng)
        return items.reshape(len(users), n)


class UniformSampler(NegativeSampler):
    """Negatives uniform over the catalog."""

    def _draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.num_items, size, dtype=np.int64)


class PopularitySampler(NegativeSampler):
    """Negatives with probability proportional to ``count ** alpha`` (word2vec uses 0.75)."""

    def __init__(self, positives: sp.csr_matrix, alpha: float = 0.75) -> None:
        super().__init__(positives)
        counts = np.asarray(sp.csr_matrix(positives).sum(axis=0)).ravel().astype(np.float64)
        weights = (counts + 1.0) ** alpha  # +1: every item can be drawn
        self.probabilities = weights / weights.sum()
        self._cdf = np.cumsum(self.probabilities)

    def _weights(self) -> np.ndarray:
        return self.probabilities

    def _draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return np.minimum(np.searchsorted(self._cdf, rng.random(size) * self._cdf[-1]), self.num_items - 1)
