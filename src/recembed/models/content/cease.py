"""CEASE: EASE with item side-information stacked under the interactions ("collective" EASE).

Reference: Jeunen, Van Balen & Goethals, "Closed-Form Models for Collaborative Filtering with
Side-Information", RecSys 2020 (late-breaking results).

The side-information matrix T (features x items) is appended to the user-item matrix X as extra rows,
weighted by alpha, and EASE is solved on the stack::

    G = X^T X + alpha^2 T^T T + lambda I,   P = G^{-1},   B_ij = -P_ij / P_jj,   B_jj = 0,   score(u) = x_u B

so an item is reconstructed from the items its users share AND the items its content shares. Here T is the
item table's vector columns (``features``, default all; tags, categories or text / image embeddings),
each L2-normalised per item (``feature_norm``) and concatenated, so ``T^T T = F F^T`` is the items' content
similarity (cosine per modality); ``content_weight`` is alpha^2. Items never seen in training have an
all-zero column in X but not in T: their column of B comes from content alone, so CEASE ranks cold items
with no extra machinery (the paper's motivation). Deviation: the paper uses sparse binary tags; dense
embeddings are used the same way (the Gram matrix is dense anyway). Memory as EASE: one dense I x I matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ...config import check
from ...data.interactions import Interactions
from ...errors import ConfigError
from ...options import FitOptions
from ..cf.ease import EASE
from ._content import content_matrix


@dataclass(frozen=True)
class CEASEConfig:
    l2: float = 250.0
    """L2 weight lambda added to the Gram matrix's diagonal (EASE's)."""
    content_weight: float = 20.0
    """alpha^2: weight of the content similarity F F^T against the co-occurrence counts X^T X."""
    features: str = ""
    """Comma-separated vector columns of the item table ("" = all vector columns)."""
    feature_norm: Literal["l2", "none"] = "l2"
    """Per-item, per-modality normalisation of the content vectors."""
    dtype: Literal["auto", "float32", "float64"] = "auto"
    """Precision of the inversion; ``auto``: float64 when memory allows, else float32."""

    def __post_init__(self) -> None:
        check(self.l2 > 0, "l2", f"must be > 0, got {self.l2}")
        check(self.content_weight >= 0, "content_weight", f"must be >= 0, got {self.content_weight}")


class CEASE(EASE):
    name = "cease"
    Config = CEASEConfig

    def _fit(self, train: Interactions, options: FitOptions, **context: Any) -> None:
        table = context.get("item_table")
        if table is None or not table.names("vector"):
            raise ConfigError("cease needs item content: an item table with vector columns (e.g. `recembed fit "
                              "--features NAME=PATH` or `--text-columns ...`)")
        self._content, self.feature_names_ = content_matrix(table, self.config.features, self.config.feature_norm,
                                                            train.num_items)
        try:
            super()._fit(train, options, **context)
        finally:
            del self._content

    def _add_to_gram(self, g: np.ndarray) -> None:
        f = self._content.astype(g.dtype, copy=False)
        step = 2048  # F F^T a block of rows at a time: no second I x I temporary
        for i0 in range(0, g.shape[0], step):
            g[i0 : i0 + step] += self.config.content_weight * (f[i0 : i0 + step] @ f.T)
