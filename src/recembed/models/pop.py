"""Pop: recommend the items most users interacted with in training.

Popularity is the number of distinct training users per item (Cornac's MostPop). RecBole 1.2.1's
``Pop`` counts an item at most once per training batch (``item_cnt[item] += 1`` with repeated
indices writes once), which caps counts and scores far lower; see benchmarks/RESULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..options import FitOptions
from .base import HistoryRecommender


@dataclass(frozen=True)
class PopConfig:
    """Pop has no hyperparameters."""


class Pop(HistoryRecommender):
    name = "pop"
    Config = PopConfig

    popularity_: np.ndarray  # (I,) float32

    def _fit_matrix(self, x: sp.csr_matrix, options: FitOptions) -> None:
        self.popularity_ = np.asarray(x.sum(axis=0), dtype=np.float32).ravel()

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (rows.shape[0], len(self.popularity_)))

    def _matrix_state(self) -> dict[str, Any]:
        return {"popularity": self.popularity_}
