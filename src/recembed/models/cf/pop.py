"""Pop: recommend the items most users interacted with in training; Random: the seeded floor.

Popularity is the number of distinct training users per item (Cornac's MostPop). RecBole 1.2.1's
``Pop`` counts an item at most once per training batch (``item_cnt[item] += 1`` with repeated
indices writes once), which caps counts and scores far lower; see benchmarks/RESULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...data.interactions import Interactions
from ...options import FitOptions
from ..base import HistoryRecommender, Recommender


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


@dataclass(frozen=True)
class RandomConfig:
    seed: int = 0
    """Seed of the per-user random orders (a user's ranking depends only on the seed and the user)."""


class Random(Recommender):
    """The floor every model must clear: each user gets a seeded uniformly random order of all items.

    Scores are uniform in [0, 1), drawn from a generator seeded by ``(seed, user)``, so a user's ranking is
    the same in any batch. Its expected Recall@K among C candidates is K / C: the reference row for
    cold-item ranking, where ID-only models have nothing to go on.
    """

    name = "random"
    Config = RandomConfig

    def _fit(self, train: Interactions, options: FitOptions, **context: Any) -> None:
        self.user_items_ = train.csr("binary")

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        users = self._check_users(user_idx)
        out = np.empty((len(users), self.num_items_), dtype=np.float32)
        for row, u in enumerate(users):  # one generator per user (not per interaction): batch-independent
            out[row] = np.random.default_rng([self.config.seed, 0, int(u)]).random(self.num_items_, dtype=np.float32)
        return out

    def similarity_rows(self, item_idx: np.ndarray) -> np.ndarray:
        """A seeded random order of the items (per item)."""
        return np.stack([np.random.default_rng([self.config.seed, 1, int(i)]).random(self.num_items_,
                                                                                      dtype=np.float32)
                         for i in item_idx])

    def _state(self) -> dict[str, Any]:
        return {"user_items": self.user_items_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.user_items_ = state["user_items"]
