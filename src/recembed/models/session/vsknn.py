"""V-SKNN: vector multiplication session-based kNN.

Paper: Ludewig & Jannach, "Evaluation of session-based recommendation algorithms", UMUAI 2018 (V-SKNN; the
``VMContextKNN`` of their session-rec framework).

The prefix is a real-valued vector: the item clicked at position ``p`` of a prefix of length ``l`` weighs

    linear:    w = p / l         (the paper's default: the most recent click 1, the first 1 / l)
    same:      w = 1
    div:       w = 1 / (l - p + 1)
    log:       w = 1 / log10(l - p + 2.7)
    quadratic: w = 1 / (l - p + 1)^2

(a repeated item keeps the weight of its last click). Then

    candidates   = the training sessions sharing an item with the prefix; of those, the ``sample`` most recent
    sim(s, n)    = sum of w over the prefix's items in n        (dot product with n's binary vector)
    N(s)         = the ``k`` candidates with the highest sim (ties: the more recent session)
    score(i)     = sum over n in N(s) holding i of sim(s, n),  times (1 + idf_weight * idf(i)) when idf_weight > 0

with ``idf(i) = log(S / sessions holding i)`` (session-rec's ``idf_weighting``: rare items gain).

Deviations / choices: recency = training file order (no timestamps in diginetica-session); items no neighbour
holds are ranked after the scored ones by popularity. Defaults chosen on validation (the last 10% of training
sessions, all their prefixes; benchmarks/sessions.py ``--tune``), never on the test prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from ...config import check
from ...tuning.space import Choice, Float, Int
from ._knn import SessionKNN, query_matrix, top_per_row

Weighting = Literal["linear", "same", "div", "log", "quadratic"]


def position_weights(pos: np.ndarray, length: np.ndarray, weighting: str) -> np.ndarray:
    """Weight of a click at 1-based position ``pos`` of a prefix of ``length`` clicks."""
    back = length - pos + 1.0  # 1 = the most recent click
    if weighting == "linear":
        return pos / length
    if weighting == "same":
        return np.ones_like(pos)
    if weighting == "div":
        return 1.0 / back
    if weighting == "log":
        return 1.0 / np.log10(back + 1.7)
    return 1.0 / (back * back)


@dataclass(frozen=True)
class VSKNNConfig:
    k: int = 200
    """Neighbour sessions kept per prefix."""
    sample: int = 500
    """Candidate sessions per prefix: the most recent ones sharing an item with it (0: all of them)."""
    weighting: Weighting = "div"
    """Position decay of the prefix's clicks (see the module docstring)."""
    idf_weight: float = 5.0
    """Item scores times ``1 + idf_weight * idf(item)`` (0: off)."""
    block_size: int = 512
    """Prefixes scored at once (memory ~ block_size x num_items floats)."""

    SEARCH_SPACE: ClassVar[dict[str, Any]] = {
        "k": Int(20, 1000, log=True, doc="neighbour sessions"),
        "sample": Int(100, 5000, log=True, doc="most recent candidate sessions"),
        "weighting": Choice(("linear", "same", "div", "log", "quadratic"), doc="prefix position decay"),
        "idf_weight": Float(0.0, 5.0, doc="IDF boost of rare items"),
    }

    def __post_init__(self) -> None:
        check(self.k >= 1, "k", f"must be >= 1, got {self.k}")
        check(self.sample >= 0, "sample", f"must be >= 0 (0: no sampling), got {self.sample}")
        check(self.weighting in ("linear", "same", "div", "log", "quadratic"), "weighting",
              f"must be linear, same, div, log or quadratic, got {self.weighting!r}")
        check(self.idf_weight >= 0, "idf_weight", f"must be >= 0, got {self.idf_weight}")
        check(self.block_size >= 1, "block_size", f"must be >= 1, got {self.block_size}")


class VSKNN(SessionKNN):
    name = "vsknn"
    Config = VSKNNConfig

    def _score_block(self, histories: list[np.ndarray]) -> sp.csr_matrix:
        q, lengths = query_matrix(histories, self.num_items_)
        rows = np.repeat(np.arange(q.shape[0]), np.diff(q.indptr))
        q.data = position_weights(q.data.astype(np.float64), lengths[rows].astype(np.float64),
                                  self.config.weighting).astype(np.float32)
        sims = self.neighbour_similarities(q)
        sims = top_per_row(sims, self.config.sample, sims.indices)  # the most recent candidates
        top = top_per_row(sims, self.config.k, sims.data, sims.indices)
        scores = sp.csr_matrix(top @ self.binary_)
        if self.config.idf_weight > 0:
            scores.data *= (1.0 + self.config.idf_weight * self.idf_[scores.indices]).astype(np.float32)
        return scores
