"""Shared machinery of the session kNN models (SKNN, V-SKNN, STAN): sparse session x item matrices, neighbour
selection per row without Python loops over sessions, blockwise scoring of prefixes.

A fitted model keeps ``sessions_``: a ``(S, I)`` CSR matrix whose entry ``(n, i)`` is the 1-based position of the
last click on item ``i`` in training session ``n`` (so the matrix is both the binary session-item incidence and
the positions STAN needs). Session index = recency: the training file's order (SR-GNN's preprocessing sorts the
training sessions by date; diginetica-session has no timestamps, so this order is the only time there is).

Ties: a kNN score is 0 for every item no neighbour holds; those items are ranked below all scored items by
training popularity (``unscored_values``), so the whole catalog gets a full, deterministic ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...data.interactions import Interactions
from ...errors import DataError
from ...options import FitOptions
from ...training.sequences import Sequences
from ..base import Recommender


def session_matrix(seqs: Sequences, num_items: int) -> sp.csr_matrix:
    """``(S, I)`` CSR: entry = 1-based position of the item's last click in the session."""
    lengths = seqs.lengths()
    rows = np.repeat(np.arange(seqs.num_users), lengths)
    pos = (np.arange(len(seqs.items)) - np.repeat(seqs.indptr[:-1], lengths) + 1).astype(np.float32)
    m = sp.coo_matrix((pos, (rows, seqs.items)), shape=(seqs.num_users, num_items))
    return _max_duplicates(m)


def _max_duplicates(m: sp.coo_matrix) -> sp.csr_matrix:
    """COO -> CSR keeping the largest value of duplicate entries (a repeated item: its last position)."""
    order = np.lexsort((m.data, m.col, m.row))
    r, c, d = m.row[order], m.col[order], m.data[order]
    last = np.ones(len(r), dtype=bool)
    last[:-1] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    out = sp.csr_matrix((d[last], (r[last], c[last])), shape=m.shape)
    out.sort_indices()
    return out


def query_matrix(histories: Sequence[np.ndarray], num_items: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """``(b, I)`` CSR of prefixes (entry = 1-based position of the item's last click) and their lengths ``(b,)``."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    items = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if len(histories) else \
        np.zeros(0, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    pos = (np.arange(len(items)) - np.repeat(starts, lengths) + 1).astype(np.float32)
    rows = np.repeat(np.arange(len(histories)), lengths)
    return _max_duplicates(sp.coo_matrix((pos, (rows, items)), shape=(len(histories), num_items))), lengths


def top_per_row(m: sp.csr_matrix, n: int, *keys: np.ndarray) -> sp.csr_matrix:
    """Keep at most ``n`` entries per row of ``m``: the largest by ``keys`` (first key decides, later ones break
    ties; default: the values, then the column). ``n <= 0`` keeps everything."""
    m = m.tocsr()
    if n <= 0 or m.nnz == 0:
        return m
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    keys = keys or (m.data, m.indices)
    order = np.lexsort(tuple(-np.asarray(k, dtype=np.float64) for k in reversed(keys)) + (rows,))
    rank = np.arange(m.nnz) - m.indptr[rows[order]]
    keep = np.sort(order[rank < n])
    return sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape)


class SessionKNN(Recommender):
    """Base of the session kNN models. Subclasses implement ``_score_block(histories) -> (b, I) float64``; the
    config needs ``block_size`` (prefixes scored at once)."""

    sessions_: sp.csr_matrix

    def _fit(self, train: Interactions, options: FitOptions, **context: Any) -> None:
        self.sessions_ = session_matrix(Sequences.from_interactions(train), train.num_items)
        self._prepare()

    def _prepare(self) -> None:
        s = self.sessions_
        self.binary_ = sp.csr_matrix((np.ones(s.nnz, dtype=np.float32), s.indices, s.indptr), shape=s.shape)
        self.item_sessions_ = self.binary_.T.tocsr()  # (I, S)
        self.session_sizes_ = np.diff(s.indptr).astype(np.float64)  # distinct items per session
        counts = np.asarray(self.item_sessions_.sum(axis=1)).ravel()
        self.idf_ = np.log(max(1, s.shape[0]) / np.maximum(counts, 1.0))
        self.popularity_ = counts

    # -- scoring ----------------------------------------------------------------------------------
    def neighbour_similarities(self, q: sp.csr_matrix) -> sp.csr_matrix:
        """``(b, S)`` CSR: for each prefix, the sum of its weighted items (``q``'s values) over each session that
        shares one (``q @ binary.T``)."""
        return (q @ self.item_sessions_).tocsr()

    def unscored_values(self) -> np.ndarray:
        """``(I,) float32``: the score of an item no neighbour holds -- below every scored item, ordered by
        training popularity (values in (-1, 0))."""
        pop = self.popularity_
        return ((pop / (pop.max() + 1.0)) - 1.0).astype(np.float32) if len(pop) else np.zeros(0, np.float32)

    def _score_block(self, histories: list[np.ndarray]) -> sp.csr_matrix:
        """``(b, I)`` CSR of the positive scores of a block of prefixes."""
        raise NotImplementedError

    def score_histories(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(n, num_items) float32`` scores of the next item after each prefix (item indices, oldest first)."""
        self._check_fitted()
        hs = [np.asarray(h, dtype=np.int64).ravel() for h in histories]
        for row, h in enumerate(hs):
            if h.size and (h.min() < 0 or h.max() >= self.num_items_):
                raise DataError(f"item index out of range [0, {self.num_items_}) in history {row}", field="history")
        out = np.empty((len(hs), self.num_items_), dtype=np.float32)
        out[:] = self.unscored_values()[None, :]
        step = self.config.block_size
        for start in range(0, len(hs), step):
            block = hs[start : start + step]
            if all(len(h) == 0 for h in block):  # nothing to match: popularity
                continue
            scored = self._score_block(block).tocoo()
            keep = scored.data > 0
            out[start + scored.row[keep], scored.col[keep]] = scored.data[keep]
        return out

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        """Known (training) sessions, scored as prefixes from their own clicks (items in position order)."""
        users = self._check_users(user_idx)
        rows = [self.sessions_[int(u)] for u in users]
        return self.score_histories([r.indices[np.argsort(r.data, kind="stable")] for r in rows])

    def seen_items(self) -> sp.csr_matrix:
        return self.binary_

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"sessions": self.sessions_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.sessions_ = sp.csr_matrix(state["sessions"], dtype=np.float32)
        self._prepare()
