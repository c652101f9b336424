"""BM3: bootstrapped multimodal latent representations, no negative sampling.

Reference: Zhou, Zhou, Zhang, Zhao, Chen, Wang & Shen, "Bootstrap Latent Representations for Multi-modal
Recommendation", WWW 2023 (arXiv 2207.05969).

Online embeddings: LightGCN over the user-item graph (``num_layers``, mean of layers) on ID embeddings,
items plus their layer-0 embedding (h_u, h_i + e_i); each modality m has trainable features f_m (initialised
from the item table's vector column) and a projection W_m f_m. A shared predictor p (Linear D -> D) maps
online to predicted embeddings. Targets are the online embeddings with stop-gradient and dropout (the
"dropout view", no augmented graph). For a batch of observed (u, i) pairs::

    L = [1 - cos(p(h_u), t_i)] + [1 - cos(p(h_i), t_u)]
        + cl_weight * sum_m ([1 - cos(p(W_m f_m,i), t_i)] + [1 - cos(p(W_m f_m,i), t(W_m f_m,i))])
        + reg_weight * (||H_U|| + ||H_I||) / I

(means over the batch; ||.|| the Frobenius norm of the whole propagated tables, as the reference code).
No negatives are sampled. Scores: p(h_u) . p(h_i). Defaults: MMRec's BM3 config (embedding 64, 1 layer,
dropout 0.3, reg 0.1, cl_weight 2.0, lr 1e-3, batch 2048).

Deviations: the modal projections are computed for the batch's items only (the reference projects every
item each step and then gathers: the same loss); modalities are optionally L2-normalised per item
(``feature_norm``, default ``none`` as the paper). Extension (items never seen in training only): their
exported embedding is p(mean_m W_m f_m,i), the content view the modal loss aligns with the item's target,
scaled by one factor to the warm items' mean norm (the loss fixes its direction only), instead of an untrained ID
embedding -- so BM3 can rank cold items; warm items are unchanged. Applied whenever the module is in
evaluation mode, so validation (early stopping) scores what is exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from ...config import check
from ...errors import ConfigError
from ...options import FitOptions
from ...training.tasks import InteractionTask, PairBatch
from ...training.trainer import TrainConfig
from ..cf.lightgcn import GraphEmbeddingModule, propagate
from ..trainable import EmbeddingRecommender
from ._content import content_matrix


@dataclass(frozen=True)
class BM3Config(TrainConfig):
    embedding_dim: int = 64
    """Dimension of the ID embeddings, the modal projections and the predictor."""
    num_layers: int = 1
    """LightGCN layers on the user-item graph (MMRec searches 1, 2)."""
    dropout: float = 0.3
    """Dropout on the stop-gradient targets (MMRec searches 0.3, 0.5)."""
    reg_weight: float = 0.1
    """Weight of the norm penalty on the propagated tables (MMRec searches 0.1, 0.01)."""
    cl_weight: float = 2.0
    """Weight of the multimodal alignment terms."""
    features: str = ""
    """Comma-separated vector columns of the item table, one modality each ("" = all vector columns)."""
    feature_norm: Literal["l2", "none"] = "none"
    """Per-item normalisation of each modality's input vectors."""
    content_for_unseen: bool = True
    """Items never seen in training get their content view p(mean_m W_m f_m) as embedding (see header)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    batch_size: int = 2048
    """Observed (user, item) pairs per step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.embedding_dim >= 1, "embedding_dim", f"must be >= 1, got {self.embedding_dim}")
        check(self.num_layers >= 0, "num_layers", f"must be >= 0, got {self.num_layers}")
        check(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.reg_weight >= 0, "reg_weight", f"must be >= 0, got {self.reg_weight}")
        check(self.cl_weight >= 0, "cl_weight", f"must be >= 0, got {self.cl_weight}")


class BM3Module(GraphEmbeddingModule):
    def __init__(self, train: sp.csr_matrix, modalities: list[np.ndarray], dim: int, num_layers: int) -> None:
        from ..cf.lightgcn import normalized_adjacency

        num_users, num_items = train.shape
        super().__init__(normalized_adjacency(train), num_users, num_items, dim, num_layers, init="xavier")
        self.features = nn.ParameterList([nn.Parameter(torch.from_numpy(f.copy())) for f in modalities])
        self.projections = nn.ModuleList([nn.Linear(f.shape[1], dim) for f in modalities])
        for proj in self.projections:
            nn.init.xavier_normal_(proj.weight)
        self.predictor = nn.Linear(dim, dim)
        nn.init.xavier_normal_(self.predictor.weight)

    def online(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h_u (U, D), h_i + e_i (I, D))``: propagated users, propagated items plus their ID embedding."""
        users, items = self.split(propagate(self.adjacency, self.weight, self.num_layers))
        return users, items + self.ego()[1]

    def modal(self, items: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``W_m f_m`` per modality, for ``items`` (all items if None)."""
        return [proj(f if items is None else f[items]) for f, proj in zip(self.features, self.projections)]

    unseen: np.ndarray | None = None  # (I,) bool: items without training interactions (set by BM3._build)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self.online()
        users, items = self.predictor(users), self.predictor(items)
        if self.unseen is not None and not self.training:  # evaluation and export: cold items from content
            items = self._with_content_view(items)
        return users, items

    def _with_content_view(self, items: torch.Tensor) -> torch.Tensor:
        unseen = torch.from_numpy(self.unseen)
        view = self.content_view()[unseen]
        # the loss fixes the content view's direction (cosine), not its scale: one common factor gives the
        # cold items the warm items' mean norm (their relative norms kept), or their larger norms would
        # put every cold item above every warm one in dot-product ranking
        warm_norm = items[~unseen].norm(dim=1).mean()
        view = view * (warm_norm / view.norm(dim=1).mean().clamp_min(1e-12))
        out = items.clone()
        out[unseen] = view
        return out

    def content_view(self) -> torch.Tensor:
        """``p(mean_m W_m f_m)`` for every item: the embedding of items never seen in training."""
        return self.predictor(torch.stack(self.modal(), 0).mean(0))


def _one_minus_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(a, b, dim=-1).mean()


class BM3Task(InteractionTask):
    """Observed pairs only (no negatives); the loss of the module docstring."""

    def __init__(self, train: sp.csr_matrix, batch_size: int, *, dropout: float, reg_weight: float,
                 cl_weight: float) -> None:
        super().__init__(train, batch_size, num_negatives=0)
        self.dropout, self.reg_weight, self.cl_weight = dropout, reg_weight, cl_weight

    def loss(self, module: BM3Module, batch: PairBatch, epoch: int) -> torch.Tensor:
        users_all, items_all = module.online()
        u, i = users_all[batch.users], items_all[batch.pos_items]
        modal = module.modal(batch.pos_items)
        with torch.no_grad():
            u_target = F.dropout(u.detach(), self.dropout)
            i_target = F.dropout(i.detach(), self.dropout)
            modal_target = [F.dropout(m.detach(), self.dropout) for m in modal]
        loss = _one_minus_cos(module.predictor(u), i_target) + _one_minus_cos(module.predictor(i), u_target)
        if self.cl_weight > 0 and modal:
            cl = sum(_one_minus_cos(p, i_target) + _one_minus_cos(p, t)
                     for p, t in zip((module.predictor(m) for m in modal), modal_target))
            loss = loss + self.cl_weight * cl
        if self.reg_weight > 0:
            loss = loss + self.reg_weight * (users_all.norm() + items_all.norm()) / items_all.shape[0]
        return loss


class BM3(EmbeddingRecommender):
    name = "bm3"
    Config = BM3Config

    def _build(self, train: sp.csr_matrix, options: FitOptions) -> tuple[nn.Module, BM3Task]:
        cfg = self.config
        table = self._context.get("item_table")
        if table is None or not table.names("vector"):
            raise ConfigError("bm3 needs item content: an item table with vector columns (e.g. tiktok-mm's "
                              "image_feat / audio_feat, or `recembed fit --features NAME=PATH`)")
        names = [n for n in cfg.features.split(",") if n] or table.names("vector")
        modalities = [content_matrix(table, n, cfg.feature_norm, train.shape[1])[0] for n in names]
        self.feature_names_ = names
        module = BM3Module(train, modalities, cfg.embedding_dim, cfg.num_layers)
        unseen = np.asarray(train.sum(axis=0)).ravel() == 0
        if cfg.content_for_unseen and unseen.any() and not unseen.all():
            module.unseen = unseen
        return module, BM3Task(train, self._batch(train.nnz), dropout=cfg.dropout, reg_weight=cfg.reg_weight,
                               cl_weight=cfg.cl_weight)
