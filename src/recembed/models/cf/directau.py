"""DirectAU: matrix factorisation trained to align positive pairs and spread users / items uniformly.

Reference: Wang, Yu, Ma, Zhang, Liu, Ma, "Towards Representation Alignment and Uniformity in
Collaborative Filtering", KDD 2022 (official code: github.com/THUwangcy/DirectAU, a RecBole fork).

Each step takes a batch of training (user, item) pairs, no negatives. On the L2-normalised embeddings
of the batch, ``loss = alignment(u, i) + gamma * (uniformity(users) + uniformity(items)) / 2`` with
``alignment = mean ||u - i||^2`` over the pairs and ``uniformity(x) = log mean exp(-2 ||x_a - x_b||^2)``
over the distinct pairs of the batch's rows (the batch's users and the batch's items separately,
duplicates included, as the official code). Scores are the dot products of the *raw* (un-normalised)
embeddings, as the official ``full_sort_predict`` of the MF encoder.

Encoder: "mf" (embedding tables, Xavier-normal as the official code) only; the paper's LightGCN
encoder may come later. Deviations: a batch of a single pair (possible as the last batch of an epoch)
has no pair of rows, so it contributes its alignment term only. Defaults gamma 0.5 (the paper's Beauty value)
and weight decay 1e-4 (the top of the paper's grid): its raw-dot-product scoring needs the decay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import scipy.sparse as sp
import torch
from torch import nn

from ...compact.matryoshka import MatryoshkaFields
from ...compact.tables import TableFields
from ...config import check
from ...options import FitOptions
from ...training.losses import alignment_loss, uniformity_loss
from ...training.tasks import InteractionTask, PairBatch
from ...training.trainer import TrainConfig
from ..trainable import EmbeddingRecommender
from .bpr import MFModule


@dataclass(frozen=True)
class DirectAUConfig(MatryoshkaFields, TableFields, TrainConfig):
    embedding_dim: int = 64
    """Dimension of user and item embeddings."""
    gamma: float = 0.5
    """Weight of the uniformity term (the paper tunes 0.01..10: 0.5 on Beauty, 1 on Yelp, 5 on Gowalla; 0.5,
    was 1)."""
    encoder: Literal["mf"] = "mf"
    """Embedding encoder: "mf" (plain tables). LightGCN may come later."""
    batch_size: int = 256
    """(user, item) pairs per step; the batch is also the set uniformity is measured on (paper: 256-1024)."""
    min_steps: int = 32
    """At least 32 optimizer steps an epoch (the batch shrinks on small data; was 0). No effect from 8,192
    training pairs up."""
    learning_rate: float = 1e-3
    """Adam step size."""
    weight_decay: float = 1e-4
    """Adam L2 weight decay (the paper tunes 0, 1e-8, 1e-6, 1e-4; 1e-4, was 1e-6). The loss sees only
    directions, so decay is what lets rarely-updated items' raw norms shrink, i.e. lets scores carry
    popularity: on ml-100k (gamma 0.5) 1e-4 gave test NDCG@10 0.194 against 0.117 at 1e-6."""

    #: saves written before the defaults changed (2026-12-03) trained with these
    FORMER_DEFAULTS: ClassVar[dict[str, Any]] = {"gamma": 1.0, "weight_decay": 1e-6, "min_steps": 0}

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.embedding_dim >= 1, "embedding_dim", f"must be >= 1, got {self.embedding_dim}")
        check(self.gamma >= 0, "gamma", f"must be >= 0, got {self.gamma}")


class DirectAUTask(InteractionTask):
    """Alignment + gamma * uniformity on the batch's (user, positive item) embeddings."""

    def __init__(self, train: sp.csr_matrix, batch_size: int, *, gamma: float) -> None:
        super().__init__(train, batch_size, num_negatives=0)
        self.gamma = gamma

    def loss(self, module: nn.Module, batch: PairBatch, epoch: int) -> torch.Tensor:
        user_emb, item_emb = module()
        u, i = user_emb[batch.users], item_emb[batch.pos_items]  # (B, D) each, normalised by the losses
        align = alignment_loss(u, i)
        if len(u) < 2:  # no pair of rows: uniformity is undefined
            return align
        return align + self.gamma * (uniformity_loss(u) + uniformity_loss(i)) / 2


class DirectAU(EmbeddingRecommender):
    name = "directau"
    Config = DirectAUConfig

    def _build(self, train: sp.csr_matrix, options: FitOptions) -> tuple[nn.Module, DirectAUTask]:
        cfg = self.config
        module = MFModule(train.shape[0], train.shape[1], cfg.embedding_dim)
        return module, DirectAUTask(train, self._batch(train.nnz), gamma=cfg.gamma)
