"""SimGCL: graph contrastive learning with uniform noise instead of graph augmentation.

Reference: Yu et al., "Are Graph Augmentations Necessary? Simple Graph Contrastive Learning for
Recommendation", SIGIR 2022.

Encoder: LightGCN propagation without the layer-0 term in the layer mean. For the contrastive task two
extra forward passes add noise at every layer, ``E^(l) <- E^(l) + eps * sign(E^(l)) * normalize(U(0,1))``,
and an InfoNCE loss (temperature ``temperature``) pulls the two views of each batch user (and each
batch item) together; total loss = BPR on the clean embeddings + ``cl_weight`` * (InfoNCE_users +
InfoNCE_items) + ``reg_weight`` * L2 on the batch's layer-0 embeddings. Defaults follow the paper
(eps 0.1, tau 0.2, 2 layers) except (deviations, both for small dense data such as ml-100k, where the
paper's setting wrecks the ranking): lambda 0.02 instead of 0.2 (tuned per dataset in the paper), and at
least 320 steps an epoch (``min_steps``: batch 253 instead of 2048 on ml-100k), with patience 20.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ...compact.matryoshka import MatryoshkaFields
from ...compact.tables import TableFields
from ...config import check
from ...options import FitOptions
from ...training.losses import info_nce
from ...training.tasks import BPRTask, PairBatch, bpr_on_tables, l2_of_ego
from ...training.trainer import TrainConfig
from ..trainable import EmbeddingRecommender
from .lightgcn import GraphEmbeddingModule, _SymmetricSpMM


@dataclass(frozen=True)
class SimGCLConfig(MatryoshkaFields, TableFields, TrainConfig):
    embedding_dim: int = 64
    """Dimension of the layer-0 embeddings."""
    num_layers: int = 2
    """Propagation layers."""
    eps: float = 0.1
    """Magnitude of the added noise."""
    cl_weight: float = 0.02
    """Weight lambda of the contrastive loss (0.02, was the paper's 0.2, which on ml-100k destroys the
    ranking; the paper tunes it per dataset)."""
    temperature: float = 0.2
    """InfoNCE temperature."""
    reg_weight: float = 1e-4
    """L2 weight on the batch's layer-0 embeddings."""
    learning_rate: float = 1e-3
    """Adam step size."""
    batch_size: int = 2048
    """Triples per step (an upper bound: see ``min_steps``)."""
    min_steps: int = 320
    """At least 320 optimizer steps an epoch (was 0): on ml-100k the batch shrinks to 253, on amazon-beauty-cf
    to 890. With batch 2048 on ml-100k nearly every user and item is in every batch, so the contrastive term
    is a global uniformity penalty at every step and the ranking collapses (test NDCG@10 0.107); with batch
    256 it reaches 0.299 (RESULTS.md [Train])."""
    patience: int = 20
    """Evaluations without improvement before stopping (20, was 10): validation NDCG dips for the first
    5-10 epochs (the noise, eps, dominates the small Xavier-initialised embeddings) before it climbs."""

    #: saves written before the defaults changed (2026-12-03) trained with these
    FORMER_DEFAULTS: ClassVar[dict[str, Any]] = {"cl_weight": 0.2, "min_steps": 0, "patience": 10}

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.num_layers >= 1, "num_layers", f"must be >= 1, got {self.num_layers}")
        check(self.eps >= 0, "eps", f"must be >= 0, got {self.eps}")
        check(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")


def layer_mean(layers: list[torch.Tensor]) -> torch.Tensor:
    """Mean of the propagated layers (SimGCL excludes layer 0), as a running sum."""
    total = layers[0]
    for h in layers[1:]:
        total = total + h
    return total * (1.0 / len(layers))


def perturb(emb: torch.Tensor, eps: float) -> torch.Tensor:
    """Add ``eps * sign(emb) * normalize(U(0,1))`` row-wise: a random direction in emb's hyperoctant."""
    noise = F.normalize(torch.rand_like(emb), dim=-1)
    return emb + torch.sign(emb) * noise * eps


class NoisyGCNModule(GraphEmbeddingModule):
    """LightGCN-style propagation whose layers can be perturbed (SimGCL, XSimGCL); Xavier-uniform
    initialisation per table, as the authors' code (SELFRec)."""

    def __init__(self, adjacency: sp.csr_matrix, num_users: int, num_items: int, dim: int, num_layers: int) -> None:
        super().__init__(adjacency, num_users, num_items, dim, num_layers, init="xavier")

    def layers(self, eps: float = 0.0) -> list[torch.Tensor]:
        """Embeddings after each propagation layer 1..L, ``(U+I, D)`` each, noised when ``eps > 0``."""
        e, out = self.layer0(), []
        for _ in range(self.num_layers):
            e = _SymmetricSpMM.apply(self.adjacency, e)
            if eps > 0:
                e = perturb(e, eps)
            out.append(e)
        return out

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(layer_mean(self.layers()))


class SimGCLTask(BPRTask):
    def __init__(self, train: sp.csr_matrix, batch_size: int, config: SimGCLConfig) -> None:
        super().__init__(train, batch_size, reg_weight=config.reg_weight)
        self.config = config

    def loss(self, module: NoisyGCNModule, batch: PairBatch, epoch: int) -> torch.Tensor:
        cfg = self.config
        users_emb, items_emb = module()
        rec = bpr_on_tables(users_emb, items_emb, batch)
        v1 = module.split(layer_mean(module.layers(cfg.eps)))
        v2 = module.split(layer_mean(module.layers(cfg.eps)))
        uu, ii = torch.unique(batch.users), torch.unique(batch.pos_items)
        cl = info_nce(v1[0][uu], v2[0][uu], cfg.temperature) + info_nce(v1[1][ii], v2[1][ii], cfg.temperature)
        return rec + cfg.cl_weight * cl + cfg.reg_weight * l2_of_ego(module, batch)


class SimGCL(EmbeddingRecommender):
    name = "simgcl"
    Config = SimGCLConfig

    def _build(self, train: sp.csr_matrix, options: FitOptions) -> tuple[nn.Module, SimGCLTask]:
        cfg = self.config
        module = NoisyGCNModule.for_interactions(train, cfg.embedding_dim, cfg.num_layers)
        return module, SimGCLTask(train, self._batch(train.nnz), cfg)
