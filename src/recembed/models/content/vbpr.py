"""VBPR: visual (content) Bayesian personalised ranking.

Reference: He & McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback", AAAI 2016.

score(u, i) = b_i + <p_u, q_i> + <theta_u, E f_i> + <beta', f_i>, trained with BPR (one sampled negative
per positive) and L2 on the batch's parameters. ``f_i`` is the item's content vector: the item table's
vector columns (``features``, default all of them; e.g. tiktok-mm's image and audio), each L2-normalised
per item (``feature_norm``) and concatenated; items without a modality get zeros there.

Implemented as embedding tables so the shared trainer, evaluator and serving path apply unchanged:
user = [p_u, theta_u, 1], item = [q_i, E f_i, b_i + <beta', f_i>]. Items that never occur in training
have untrained ID parts: in evaluation mode (validation and export) their q_i and b_i are zero, so they are
ranked by content alone (cold start). Deviations: Adam instead of SGD (as Cornac and MMRec); no separate
regulariser per parameter group (one ``reg_weight``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ...config import check
from ...options import FitOptions
from ...training.tasks import BPRTask, PairBatch, bpr_on_tables
from ...training.trainer import TrainConfig
from ..trainable import EmbeddingRecommender
from ._content import content_matrix


@dataclass(frozen=True)
class VBPRConfig(TrainConfig):
    embedding_dim: int = 32
    """Dimension of the ID factors p_u, q_i."""
    content_dim: int = 32
    """Dimension of the content factors theta_u and of E f_i."""
    features: str = ""
    """Comma-separated vector columns of the item table to use ("" = all vector columns)."""
    feature_norm: Literal["l2", "none"] = "l2"
    """Per-modality row normalisation of the content vectors before concatenation."""
    reg_weight: float = 1e-4
    """L2 on the batch's user / item / content-user factors (per example)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    batch_size: int = 2048
    """Triples per step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.embedding_dim >= 1, "embedding_dim", f"must be >= 1, got {self.embedding_dim}")
        check(self.content_dim >= 1, "content_dim", f"must be >= 1, got {self.content_dim}")


class VBPRModule(nn.Module):
    def __init__(self, num_users: int, content: np.ndarray, dim: int, content_dim: int) -> None:
        super().__init__()
        num_items, f = content.shape
        self.register_buffer("content", torch.from_numpy(content), persistent=False)
        self.user = nn.Embedding(num_users, dim)
        self.theta = nn.Embedding(num_users, content_dim)
        self.item = nn.Embedding(num_items, dim)
        self.item_bias = nn.Parameter(torch.zeros(num_items, 1))
        self.proj = nn.Linear(f, content_dim, bias=False)  # E
        self.content_bias = nn.Linear(f, 1, bias=False)  # beta'
        for emb in (self.user, self.theta, self.item):
            nn.init.xavier_normal_(emb.weight)
        nn.init.xavier_normal_(self.proj.weight)
        nn.init.zeros_(self.content_bias.weight)

    unseen: torch.Tensor | None = None  # (I,) bool: items without training interactions (set by VBPR._build)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        ones = torch.ones(self.user.weight.shape[0], 1)
        users = torch.cat([self.user.weight, self.theta.weight, ones], 1)
        item_ids, item_bias = self.item.weight, self.item_bias
        if self.unseen is not None and not self.training:
            # evaluation and export: untrained ID parts of cold items are zero, they are ranked by content
            keep = (~self.unseen).float().unsqueeze(1)
            item_ids, item_bias = item_ids * keep, item_bias * keep
        items = torch.cat([item_ids, self.proj(self.content), item_bias + self.content_bias(self.content)], 1)
        return users, items


class VBPRTask(BPRTask):
    def loss(self, module: VBPRModule, batch: PairBatch, epoch: int) -> torch.Tensor:
        loss = bpr_on_tables(*module(), batch)
        if self.reg_weight > 0:
            sq = module.user.weight[batch.users].pow(2).sum() + module.theta.weight[batch.users].pow(2).sum() \
                + module.item.weight[batch.pos_items].pow(2).sum() + module.item.weight[batch.neg_items].pow(2).sum()
            loss = loss + self.reg_weight * sq / (2 * len(batch.users))
        return loss


class VBPR(EmbeddingRecommender):
    name = "vbpr"
    Config = VBPRConfig

    def _build(self, train: sp.csr_matrix, options: FitOptions) -> tuple[nn.Module, VBPRTask]:
        cfg = self.config
        content, self.feature_names_ = content_matrix(self._context.get("item_table"), cfg.features,
                                                      cfg.feature_norm, train.shape[1])
        module = VBPRModule(train.shape[0], content, cfg.embedding_dim, cfg.content_dim)
        module.unseen = torch.from_numpy(np.asarray(train.sum(axis=0)).ravel() == 0)
        self.content_ = content
        return module, VBPRTask(train, self._batch(train.nnz), reg_weight=cfg.reg_weight)

    def _export(self, module: VBPRModule) -> None:
        super()._export(module)
        # E and beta': a new item's vector is [0, E f, <beta', f>] (no ID factors, no ID bias), the cold-item
        # rule above; the serving bundle's content head (recembed.serve.content.VBPRItemHead) applies it
        self.content_proj_ = module.proj.weight.detach().float().cpu().numpy().copy()  # (C, F)
        self.content_bias_ = module.content_bias.weight.detach().float().cpu().numpy().copy()  # (1, F)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "content": self.content_, "content_proj": self.content_proj_,
                "content_bias": self.content_bias_}

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)  # runs saved before content_proj was kept have no content head
        self.content_ = state.get("content")
        self.content_proj_ = state.get("content_proj")
        self.content_bias_ = state.get("content_bias")
