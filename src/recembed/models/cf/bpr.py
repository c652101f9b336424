"""MF-BPR: matrix factorisation trained with Bayesian personalised ranking.

Reference: Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009.

score(u, i) = <p_u, q_i>; each step draws (u, i+) from the training pairs and one uniform negative
i- the user never interacted with, and minimises ``-log sigmoid(s(u,i+) - s(u,i-))`` (+ L2 on the
looked-up embeddings with ``reg_weight``). Deviation: Adam instead of the paper's SGD (as RecBole,
Cornac); Xavier-normal initialisation (as RecBole).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import scipy.sparse as sp
import torch
from torch import nn

from ...compact.matryoshka import MatryoshkaFields
from ...compact.tables import TableFields
from ...config import check
from ...options import FitOptions
from ...training.tasks import BPRTask
from ...training.trainer import TrainConfig
from ...tuning.space import Choice, Float
from ..trainable import EmbeddingRecommender


@dataclass(frozen=True)
class BPRConfig(MatryoshkaFields, TableFields, TrainConfig):
    embedding_dim: int = 64
    """Dimension of user and item factors."""
    reg_weight: float = 0.015
    """L2 on the embeddings of each batch (per example). 0.015 (was 0): the best validation NDCG@10 of a
    16-run sweep on ml-100k (RESULTS.md [Train]); without it BPR overfits by epoch 23 there."""
    num_negatives: int = 1
    """Uniform negatives per positive (the BPR loss is averaged over them)."""
    learning_rate: float = 1e-3
    """Adam step size (1e-3, was 5e-3: RecBole's). 5e-3 overfits a sparse catalog within 3 epochs
    (amazon-beauty-cf test NDCG@10 0.0185 against 0.0212 at 1e-3); on ml-100k 1e-3 gives 0.2913 against 0.2975
    (RESULTS.md [Polish] Defaults)."""
    batch_size: int = 2048
    """Triples per step (2048, was 4096: RecBole's, and better on ml-100k and amazon-beauty-cf)."""

    #: saves written before the defaults changed (2026-12-03) trained with these
    FORMER_DEFAULTS: ClassVar[dict[str, Any]] = {"reg_weight": 0.0, "batch_size": 4096, "min_steps": 0,
                                                  "learning_rate": 5e-3}
    min_steps: int = 32
    """At least 32 optimizer steps an epoch (the batch shrinks on small data: 3,977 pairs -> batch 125; was 0).
    No effect from about 65k training pairs up (ml-100k, amazon-beauty-cf keep ``batch_size``)."""
    item_bias: bool = False
    """Add a learned item bias to the score (BPR-MF as in MyMediaLite / Cornac; not in the paper)."""

    #: ``recembed tune bpr``: what the search varies (docs/tuning.md)
    SEARCH_SPACE: ClassVar[dict[str, Any]] = {
        "learning_rate": Float(1e-4, 1e-2, log=True, doc="Adam step size, a decade either side of the default 1e-3"),
        "reg_weight": Float(1e-4, 1e-1, log=True, doc="per-example L2; 0.015 won the ml-100k sweep"),
        "embedding_dim": Choice((32, 64, 128), doc="factor width"),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.embedding_dim >= 1, "embedding_dim", f"must be >= 1, got {self.embedding_dim}")
        check(self.num_negatives >= 1, "num_negatives", f"must be >= 1, got {self.num_negatives}")


class MFModule(nn.Module):
    """User and item embedding tables."""

    def __init__(self, num_users: int, num_items: int, dim: int, item_bias: bool = False) -> None:
        super().__init__()
        self.user = nn.Embedding(num_users, dim)
        self.item = nn.Embedding(num_items, dim)
        nn.init.xavier_normal_(self.user.weight)
        nn.init.xavier_normal_(self.item.weight)
        self.bias = nn.Parameter(torch.zeros(num_items, 1)) if item_bias else None

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bias is None:
            return self.user.weight, self.item.weight  # (U, D), (I, D)
        # the bias rides along as an extra dimension: <[p_u, 1], [q_i, b_i]> = <p_u, q_i> + b_i
        ones = torch.ones(self.user.weight.shape[0], 1)
        return torch.cat([self.user.weight, ones], 1), torch.cat([self.item.weight, self.bias], 1)

    def ego(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight


class BPR(EmbeddingRecommender):
    name = "bpr"
    Config = BPRConfig

    def _build(self, train: sp.csr_matrix, options: FitOptions) -> tuple[nn.Module, BPRTask]:
        cfg = self.config
        module = MFModule(train.shape[0], train.shape[1], cfg.embedding_dim, cfg.item_bias)
        task = BPRTask(train, self._batch(train.nnz), reg_weight=cfg.reg_weight, num_negatives=cfg.num_negatives)
        return module, task
