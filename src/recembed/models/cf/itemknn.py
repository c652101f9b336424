"""ItemKNN: item-based collaborative filtering with cosine similarity.

Reference: Sarwar et al., "Item-based collaborative filtering recommendation algorithms", WWW 2001;
Deshpande & Karypis, "Item-based top-N recommendation algorithms", TOIS 2004.

For binary training matrix X (users x items):

    sim(i, j) = (X^T X)_ij / (||x_i|| ||x_j|| + shrink + 1e-6),   sim(j, j) = 0
    W[:, j]   = the k largest sim(., j) (zeros dropped), the rest 0      -- per target item j
    score(u, j) = sum_i X_ui W_ij

This is the form RecBole 1.2.1 implements (neighbours kept per target column, shrink added to the
denominator), so results are comparable. Similarities are computed in column blocks, so memory is
``O(num_items * block)`` plus the sparse W with ``k * num_items`` entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ..._compute import rows_times
from ...config import check
from ...options import FitOptions
from ...tuning.space import Float, Int
from ..base import HistoryRecommender


@dataclass(frozen=True)
class ItemKNNConfig:
    k: int = 100
    """Neighbours kept per item."""
    shrink: float = 0.0
    """Added to the cosine denominator; damps similarities between rarely seen items."""
    block_size: int = 0
    """Target items per block when computing similarities (0: chosen from the catalog size)."""

    #: ``recembed tune itemknn``: what the search varies (docs/tuning.md); closed form, so no pruning
    SEARCH_SPACE: ClassVar[dict[str, Any]] = {
        "k": Int(10, 1000, log=True, doc="neighbours kept per item"),
        "shrink": Float(0.0, 100.0, doc="cosine shrinkage for rarely seen items"),
    }

    def __post_init__(self) -> None:
        check(self.k >= 1, "k", f"must be >= 1, got {self.k}")
        check(self.shrink >= 0, "shrink", f"must be >= 0, got {self.shrink}")
        check(self.block_size >= 0, "block_size", f"must be >= 0, got {self.block_size}")


class ItemKNN(HistoryRecommender):
    name = "itemknn"
    Config = ItemKNNConfig

    similarity_: sp.csr_matrix  # (I, I), column j holds j's k neighbours

    def _fit_matrix(self, x: sp.csr_matrix, options: FitOptions) -> None:
        n_items = x.shape[1]
        k = min(self.config.k, n_items - 1) if n_items > 1 else 0
        xc = sp.csc_matrix(x, dtype=np.float32)
        xt = sp.csr_matrix(x.T, dtype=np.float32)
        norms = np.sqrt(np.asarray(xc.multiply(xc).sum(axis=0)).ravel()).astype(np.float32)
        block = self.config.block_size or max(1, min(n_items, (64 * 2**20) // (4 * max(n_items, 1))))
        rows, cols, vals = [], [], []
        for start in range(0, n_items, block):
            stop = min(n_items, start + block)
            co = (xt @ xc[:, start:stop]).toarray()  # (I, b) co-occurrence counts
            co /= norms[:, None] * norms[None, start:stop] + self.config.shrink + 1e-6
            co[np.arange(start, stop), np.arange(stop - start)] = 0.0
            if k == 0:
                continue
            top = np.argpartition(-co, kth=k - 1, axis=0)[:k]  # (k, b) neighbour rows per column
            top_vals = np.take_along_axis(co, top, axis=0)
            keep = top_vals > 0
            rows.append(top[keep])
            cols.append(np.broadcast_to(np.arange(start, stop), top.shape)[keep])
            vals.append(top_vals[keep])
        if rows:
            r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        else:
            r = c = np.zeros(0, dtype=np.int64)
            v = np.zeros(0, dtype=np.float32)
        self.similarity_ = sp.csr_matrix((v.astype(np.float32), (r, c)), shape=(n_items, n_items))

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        return rows_times(rows, self.similarity_, self, "_dense_similarity")

    def _matrix_state(self) -> dict[str, Any]:
        return {"similarity": self.similarity_}
