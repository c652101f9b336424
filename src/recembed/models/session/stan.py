"""STAN: sequence and time aware neighbourhood.

Paper: Garg, Gupta, Malhotra, Vig & Shroff, "Sequence and Time Aware Neighborhood for Session-based
Recommendations: STAN", SIGIR 2019.

Three decays on top of SKNN. For the current prefix ``s`` of length ``l`` (item ``i`` last clicked at position
``p(i, s)``), a training session ``n`` and an item ``j``:

    w1(i)        = exp((p(i, s) - l) / lambda1)                      position in the current session
    w2(n)        = exp(-(t(s) - t(n)) / lambda2)                     recency of the neighbour session
    sim(s, n)    = sum_{i in s & n} w1(i) / sqrt(|s| |n|) * w2(n)
    N(s)         = the ``k`` sessions with the highest sim among those sharing an item with s
                   (optionally first cut to the ``sample`` most recent)
    w3(j | n)    = exp(-|p(j, n) - p(r, n)| / lambda3)               position in the neighbour session, where r
                   is the most recent item of s that n holds
    score(j)     = sum over n in N(s) holding j of sim(s, n) * w3(j | n)

Deviations / choices:

* **Time proxy.** diginetica-session has no timestamps, so ``t(n)`` is the session's index in the training file
  (SR-GNN's preprocessing writes training sessions sorted by date) and ``t(s)`` = the number of training
  sessions (a test prefix comes after all of them); ``lambda2`` is therefore in *sessions*, not seconds.
  ``lambda2 = 0`` switches the recency decay off.
* A repeated item counts once, at its last click, in both sessions; ``|s|``, ``|n|`` count distinct items.
* Items no neighbour holds are ranked after the scored ones by popularity.
* ``idf_weight`` (default 1.0, chosen on validation; 0 = the paper's STAN): V-SKNN's IDF boost of rare items on
  top of STAN (as in V-STAN, Ludewig et al., "Empirical analysis of session-based recommendation
  algorithms", UMUAI 2021, which carries V-SKNN's IDF weighting over to STAN).
* Vectorised: the neighbour-position decay expands the ``b x k`` selected (prefix, neighbour) pairs into their
  neighbours' items (a few hundred thousand entries per block) and finds ``r`` by a sorted-key lookup, no loop
  over sessions. Defaults chosen on validation (the last 10% of training sessions' prefixes;
  benchmarks/sessions.py ``--tune``), never on the test prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ...config import check
from ...tuning.space import Float, Int
from ._knn import SessionKNN, query_matrix, top_per_row


@dataclass(frozen=True)
class STANConfig:
    k: int = 200
    """Neighbour sessions kept per prefix."""
    sample: int = 0
    """Cut the candidates (sessions sharing an item with the prefix) to the most recent ones first (0: all)."""
    lambda1: float = 4.0
    """Position decay in the current session (clicks; 0: off)."""
    lambda2: float = 100000.0
    """Recency decay of neighbour sessions, in training sessions (the time proxy; 0: off)."""
    lambda3: float = 4.0
    """Position decay in the neighbour session (clicks from the shared item; 0: off)."""
    idf_weight: float = 1.0
    """Item scores times ``1 + idf_weight * idf(item)`` (V-SKNN's IDF boost of rare items; not in STAN; 0: off,
    the paper's STAN). 1.0: chosen on validation (P@20 50.38 -> 50.62, MRR@20 17.70 -> 17.82)."""
    block_size: int = 512
    """Prefixes scored at once (memory ~ block_size x num_items floats)."""

    SEARCH_SPACE: ClassVar[dict[str, Any]] = {
        "k": Int(20, 2000, log=True, doc="neighbour sessions"),
        "lambda1": Float(0.25, 10.0, log=True, doc="current-session position decay"),
        "lambda2": Float(0.0, 200000.0, doc="neighbour recency decay (sessions)"),
        "lambda3": Float(0.25, 10.0, log=True, doc="neighbour-session position decay"),
    }

    def __post_init__(self) -> None:
        check(self.k >= 1, "k", f"must be >= 1, got {self.k}")
        check(self.sample >= 0, "sample", f"must be >= 0 (0: no sampling), got {self.sample}")
        for key in ("lambda1", "lambda2", "lambda3"):
            check(getattr(self, key) >= 0, key, f"must be >= 0 (0: off), got {getattr(self, key)}")
        check(self.idf_weight >= 0, "idf_weight", f"must be >= 0, got {self.idf_weight}")
        check(self.block_size >= 1, "block_size", f"must be >= 1, got {self.block_size}")


def _decay(distance: np.ndarray, lam: float) -> np.ndarray:
    return np.exp(-distance / lam) if lam > 0 else np.ones_like(distance)


class STAN(SessionKNN):
    name = "stan"
    Config = STANConfig

    def _score_block(self, histories: list[np.ndarray]) -> sp.csr_matrix:
        scores = self._stan_scores(histories)
        if self.config.idf_weight > 0:
            scores.data *= (1.0 + self.config.idf_weight * self.idf_[scores.indices]).astype(np.float32)
        return scores

    def _stan_scores(self, histories: list[np.ndarray]) -> sp.csr_matrix:
        c, n_items = self.config, self.num_items_
        q, lengths = query_matrix(histories, n_items)  # values: 1-based position of each item's last click
        q_rows = np.repeat(np.arange(q.shape[0]), np.diff(q.indptr))
        qw = sp.csr_matrix((_decay(lengths[q_rows] - q.data.astype(np.float64), c.lambda1).astype(np.float32),
                            q.indices, q.indptr), shape=q.shape)
        sims = self.neighbour_similarities(qw)
        sims = top_per_row(sims, c.sample, sims.indices)
        rows = np.repeat(np.arange(sims.shape[0]), np.diff(sims.indptr))
        q_sizes = np.diff(q.indptr).astype(np.float64)
        value = sims.data / np.sqrt(q_sizes[rows] * self.session_sizes_[sims.indices])
        value *= _decay(float(self.sessions_.shape[0]) - sims.indices.astype(np.float64), c.lambda2)
        sims.data = value.astype(np.float32)
        top = top_per_row(sims, c.k, sims.data, sims.indices).tocoo()
        pair_row, pair_session, pair_sim = top.row.astype(np.int64), top.col.astype(np.int64), top.data
        if c.lambda3 <= 0:  # no neighbour-position decay: the plain weighted sum
            return sp.csr_matrix(top.tocsr() @ self.binary_)
        # expand each (prefix, neighbour) pair into the neighbour's items
        s = self.sessions_
        counts = np.diff(s.indptr)[pair_session]
        pair_of = np.repeat(np.arange(len(pair_row)), counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        entry = s.indptr[pair_session][pair_of] + within
        item, pos_n = s.indices[entry].astype(np.int64), s.data[entry].astype(np.float64)
        row = pair_row[pair_of]
        # the prefix position of each expanded item (0 when the prefix lacks it): sorted-key lookup in q
        q_keys = q_rows.astype(np.int64) * n_items + q.indices
        keys = row * n_items + item
        loc = np.minimum(np.searchsorted(q_keys, keys), max(len(q_keys) - 1, 0))
        pos_q = np.where(q_keys[loc] == keys, q.data[loc], 0.0) if len(q_keys) else np.zeros(len(keys))
        # r = the shared item most recent in the prefix: the largest pos_q within each pair
        starts = np.cumsum(counts) - counts
        best = np.maximum.reduceat(pos_q, starts) if len(starts) else np.zeros(0)
        is_ref = (pos_q == best[pair_of]) & (pos_q > 0)
        ref_pos = np.zeros(len(pair_row))
        ref_pos[pair_of[is_ref]] = pos_n[is_ref]
        contrib = pair_sim[pair_of] * _decay(np.abs(pos_n - ref_pos[pair_of]), c.lambda3)
        return sp.csr_matrix((contrib.astype(np.float32), (row, item)), shape=(q.shape[0], n_items))
