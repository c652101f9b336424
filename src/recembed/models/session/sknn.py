"""SKNN: session-based k-nearest neighbours.

Paper: Jannach & Ludewig, "When Recurrent Neural Networks meet the Neighborhood for Session-Based
Recommendation", RecSys 2017; evaluated as the SKNN baseline in Ludewig & Jannach, "Evaluation of session-based
recommendation algorithms", UMUAI 2018.

For the current prefix ``s`` (its set of items) and each training session ``n``:

    candidates   = the training sessions that share an item with s; of those, the ``sample`` most recent
    sim(s, n)    = |s & n| / sqrt(|s| |n|)                     (cosine of the binary item vectors)
    N(s)         = the ``k`` candidates with the highest sim (ties: the more recent session)
    score(i)     = sum over n in N(s) holding i of sim(s, n)

Deviations / choices: recency is the training file's session order (diginetica has no timestamps; SR-GNN's
preprocessing writes sessions by date); items no neighbour holds are ranked after the scored ones by
popularity (the papers leave them unranked). Everything is sparse-matrix algebra over blocks of prefixes
(:mod:`._knn`). Defaults chosen on validation (the last 10% of training sessions, all their prefixes):
benchmarks/sessions.py ``--tune``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ...config import check
from ...tuning.space import Int
from ._knn import SessionKNN, query_matrix, top_per_row


@dataclass(frozen=True)
class SKNNConfig:
    k: int = 200
    """Neighbour sessions kept per prefix."""
    sample: int = 2000
    """Candidate sessions per prefix: the most recent ones sharing an item with it (0: all of them)."""
    block_size: int = 512
    """Prefixes scored at once (memory ~ block_size x num_items floats)."""

    SEARCH_SPACE: ClassVar[dict[str, Any]] = {
        "k": Int(20, 1000, log=True, doc="neighbour sessions"),
        "sample": Int(100, 5000, log=True, doc="most recent candidate sessions"),
    }

    def __post_init__(self) -> None:
        check(self.k >= 1, "k", f"must be >= 1, got {self.k}")
        check(self.sample >= 0, "sample", f"must be >= 0 (0: no sampling), got {self.sample}")
        check(self.block_size >= 1, "block_size", f"must be >= 1, got {self.block_size}")


class SKNN(SessionKNN):
    name = "sknn"
    Config = SKNNConfig

    def _score_block(self, histories: list[np.ndarray]) -> sp.csr_matrix:
        q, _ = query_matrix(histories, self.num_items_)
        q.data[:] = 1.0
        sims = self.neighbour_similarities(q)
        sims = top_per_row(sims, self.config.sample, sims.indices)  # the most recent candidates
        rows = np.repeat(np.arange(sims.shape[0]), np.diff(sims.indptr))
        q_sizes = np.diff(q.indptr).astype(np.float64)
        sims.data = (sims.data / np.sqrt(q_sizes[rows] * self.session_sizes_[sims.indices])).astype(np.float32)
        top = top_per_row(sims, self.config.k, sims.data, sims.indices)
        return sp.csr_matrix(top @ self.binary_)
