"""MGCN: multi-view graph convolutional network for multimedia recommendation.

Reference: Yu, Tan, Lu, Chang & Wang, "Multi-View Graph Convolutional Network for Multimedia Recommendation",
ACM MM 2023 (reference implementation: MMRec's ``mgcn.py``, from the authors' repository).

Three views of the items. (1) User-item view: LightGCN on the interaction graph, ``X = mean of the
n_ui_layers + 1 layers`` (users and items). (2) Per modality m, a *behaviour-guided purifier*: the item ID
embedding gated by the projected features, ``e_i * sigmoid(W_g (W_m f_m,i + b_m) + b_g)`` -- the modality
keeps only the part of an item's ID embedding its content agrees with; (3) item-item view: the purified
embeddings propagated ``n_layers`` times on modality m's frozen kNN graph (weighted by cosine similarity,
``D^-1/2 A D^-1/2``), users get ``R~ H_m`` (``R~`` the user-item block of the normalised adjacency).
*Behaviour-aware fuser*: attention ``softmax_m(q^T tanh(W_q H_m + b_q))`` gives the modality-shared part C,
each modality's specific part ``H_m - C`` is gated by the user-item view, ``sigmoid(W_p,m X + b_p,m)``;
``S = (C + sum_m gate_m * (H_m - C)) / (M + 1)``. Final embeddings ``X + S``; scores ``<u, i>``.

Loss: BPR on the final embeddings + ``reg_weight`` * (|u|^2 + |i+|^2 + |i-|^2) / (2B) on the batch's final
rows (the reference) + ``cl_weight`` * [InfoNCE(S_i, X_i) + InfoNCE(S_u, X_u)] over the batch's positive items
and users, temperature ``temperature`` (0.2), in-batch negatives. Features are trainable tables initialised
from the data (as the reference's ``from_pretrained(freeze=False)``). Defaults: MMRec's MGCN config
(embedding 64, 2 user-item layers, 1 item-item layer, knn_k 10, reg 1e-4, lr 1e-3, batch 2048; ``cl_weight``
searched in {0.001, 0.01, 0.1}).

Deviations: no learning-rate decay (MMRec multiplies by 0.96 every 50 epochs); any number of modalities
(the reference: image and text); an item without a modality (all-zero feature row) has no edges in that
modality's kNN graph. Extensions, off by default: ``dropout`` prunes user-item edges each epoch as FREEDOM does
(degree-sensitive, re-normalised; the user-item view only); ``cold_items="neighbours"`` gives items without
training interactions the mean of their warm kNN neighbours' final embeddings at evaluation and export
(with ``"reference"`` their user-item part is their own untrained ID embedding / (n_ui_layers + 1)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ...config import check
from ...options import FitOptions
from ...training.losses import info_nce
from ...training.tasks import PairBatch, bpr_on_tables
from ...training.trainer import TrainConfig
from ..cf.lightgcn import GraphEmbeddingModule, normalized_adjacency, propagate
from ..trainable import EmbeddingRecommender
from .freedom import ColdItems, PrunedGraphTask, _SpMM, check_graph_fields, knn_graph, modality_matrices


@dataclass(frozen=True)
class MGCNConfig(TrainConfig):
    embedding_dim: int = 64
    """Dimension of the ID embeddings, projected features and gates."""
    features: str = ""
    """Comma-separated vector columns of the item table, one modality each ("" = all vector columns)."""
    knn_k: int = 10
    """Neighbours per item in each modality's item-item graph (the item itself included)."""
    n_layers: int = 1
    """Propagation layers on the frozen item-item graphs."""
    n_ui_layers: int = 2
    """LightGCN layers on the user-item graph (layers averaged)."""
    reg_weight: float = 1e-4
    """L2 on the batch's final user / positive / negative embeddings (the reference's ``reg_weight``)."""
    cl_weight: float = 0.01
    """Weight of the InfoNCE terms between the item-item (side) and user-item views (the reference's
    ``cl_loss``, searched in {0.001, 0.01, 0.1})."""
    temperature: float = 0.2
    """InfoNCE temperature."""
    dropout: float = 0.0
    """Fraction of user-item edges pruned each training epoch, FREEDOM's degree-sensitive pruning (not in
    the paper: 0)."""
    cold_items: Literal["neighbours", "reference"] = "neighbours"
    """Embedding of items without training interactions at evaluation / export (module docstring)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    batch_size: int = 2048
    """Triples per step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_graph_fields(self)
        check(self.reg_weight >= 0, "reg_weight", f"must be >= 0, got {self.reg_weight}")
        check(self.cl_weight >= 0, "cl_weight", f"must be >= 0, got {self.cl_weight}")
        check(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")


def _gate(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid())


class MGCNModule(GraphEmbeddingModule):
    def __init__(self, train: sp.csr_matrix, graphs: list[sp.csr_matrix], mods: list[np.ndarray], dim: int,
                 n_layers: int, n_ui_layers: int, cold_graph: sp.csr_matrix | None) -> None:
        adjacency = normalized_adjacency(train)
        super().__init__(adjacency, train.shape[0], train.shape[1], dim, n_ui_layers, init="xavier")
        self.user_items = sp.csr_matrix(adjacency[: train.shape[0], train.shape[0] :])  # R~ (U, I)
        self.user_items_t = sp.csr_matrix(self.user_items.T)
        self.graphs, self.graphs_t = graphs, [sp.csr_matrix(g.T) for g in graphs]  # frozen, never saved
        self.n_layers = n_layers
        self.feats = nn.ParameterList([nn.Parameter(torch.from_numpy(f.copy())) for f in mods])
        self.proj = nn.ModuleList([nn.Linear(f.shape[1], dim) for f in mods])
        self.purifier = nn.ModuleList([_gate(dim) for _ in mods])
        self.prefer = nn.ModuleList([_gate(dim) for _ in mods])
        self.query = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        self.cold_items = ColdItems(train, cold_graph)

    def views(self, adjacency: sp.csr_matrix | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(X, S)``, both ``(U+I, D)``: the user-item view and the fused item-item (side) view;
        ``adjacency`` (a pruned user-item graph) is used in training mode only."""
        adj = adjacency if adjacency is not None and self.training else self.adjacency
        content = propagate(adj, self.weight, self.num_layers)
        _, ids = self.ego()
        per_mod = []
        for m, graph in enumerate(self.graphs):
            h = ids * self.purifier[m](self.proj[m](self.feats[m]))
            for _ in range(self.n_layers):
                h = _SpMM.apply(graph, self.graphs_t[m], h)
            per_mod.append(torch.cat([_SpMM.apply(self.user_items, self.user_items_t, h), h]))
        stacked = torch.stack(per_mod, 1)  # (U+I, M, D)
        attention = torch.softmax(self.query(stacked).squeeze(-1), dim=1)  # (U+I, M)
        common = (attention.unsqueeze(-1) * stacked).sum(1)
        side = common
        for m, h in enumerate(per_mod):
            side = side + self.prefer[m](content) * (h - common)
        return content, side * (1.0 / (len(per_mod) + 1))

    def forward(self, adjacency: sp.csr_matrix | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        content, side = self.views(adjacency)
        users, items = self.split(content + side)
        if not self.training:
            items = self.cold_items(items)
        return users, items


class MGCNTask(PrunedGraphTask):
    """BPR + L2 on the final rows + InfoNCE between the views; optional FREEDOM pruning per epoch."""

    def __init__(self, train: sp.csr_matrix, batch_size: int, *, reg_weight: float, cl_weight: float,
                 temperature: float, dropout: float) -> None:
        super().__init__(train, batch_size, dropout=dropout)
        self.row_l2, self.cl_weight, self.temperature = reg_weight, cl_weight, temperature

    def loss(self, module: MGCNModule, batch: PairBatch, epoch: int) -> torch.Tensor:
        content, side = module.views(self.pruned)
        users, items = module.split(content + side)
        loss = bpr_on_tables(users, items, batch, row_l2=self.row_l2)
        if self.cl_weight > 0:
            (cu, ci), (su, si) = module.split(content), module.split(side)
            cl = info_nce(si.index_select(0, batch.pos_items), ci.index_select(0, batch.pos_items),
                          self.temperature) + \
                info_nce(su.index_select(0, batch.users), cu.index_select(0, batch.users), self.temperature)
            loss = loss + self.cl_weight * cl
        return loss


class MGCN(EmbeddingRecommender):
    name = "mgcn"
    Config = MGCNConfig

    def _build(self, train: sp.csr_matrix, options: FitOptions) -> tuple[nn.Module, MGCNTask]:
        cfg = self.config
        mods = modality_matrices(self._context.get("item_table"), cfg.features, train.shape[1])
        self.feature_names_ = list(mods)
        graphs = [knn_graph(f, cfg.knn_k, weighted=True)[0] for f in mods.values()]
        cold_graph = None
        if cfg.cold_items == "neighbours":
            cold_graph = sum(graphs[1:], graphs[0])
        module = MGCNModule(train, graphs, list(mods.values()), cfg.embedding_dim, cfg.n_layers, cfg.n_ui_layers,
                            cold_graph)
        return module, MGCNTask(train, self._batch(train.nnz), reg_weight=cfg.reg_weight, cl_weight=cfg.cl_weight,
                                temperature=cfg.temperature, dropout=cfg.dropout)
