"""LightGCN: simplified graph convolution for collaborative filtering.

Reference: He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020.

E^(0) = [P; Q] (users; items), E^(k+1) = A_hat E^(k) with A_hat = D^{-1/2} A D^{-1/2} the symmetric
normalised user-item bipartite adjacency, final embeddings = mean_{k=0..K} E^(k) (alpha_k = 1/(K+1));
trained with BPR and L2 on the batch's layer-0 embeddings (weight ``reg_weight``), as the paper.
Paper setting (gowalla): embedding 64, K=3, lr 1e-3, batch 2048, reg 1e-4. Deviation from the paper: the
defaults are RecBole's K=2, reg 1e-5 (the paper's setting is for gowalla; on ml-100k it stops on an early
plateau at test NDCG@10 0.214 against 0.31 with these); ``num_layers=3 reg_weight=1e-4`` restores it.
None in the model; propagation is a SciPy CSR matmul per layer and step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ...compact.matryoshka import MatryoshkaFields
from ...compact.tables import TableFields
from ...config import check
from ...options import FitOptions
from ...training.device import SymmetricSpMM
from ...training.tasks import BPRTask, SoftmaxTask
from ...training.trainer import TrainConfig
from ...tuning.space import Choice, Float, Int
from ..trainable import EmbeddingRecommender


@dataclass(frozen=True)
class LightGCNConfig(MatryoshkaFields, TableFields, TrainConfig):
    embedding_dim: int = 64
    """Dimension of the layer-0 embeddings."""
    num_layers: int = 2
    """Propagation layers K (2, was 3: RecBole's default; the paper uses 3, which on ml-100k stalls on an
    early plateau and stops at epoch 33 with test NDCG@10 0.214)."""
    reg_weight: float = 1e-5
    """L2 weight on the batch's layer-0 embeddings (the paper's lambda; 1e-5, was 1e-4: RecBole's default,
    the paper's 1e-4 is tuned for gowalla)."""
    loss: Literal["bpr", "softmax"] = "bpr"
    """``bpr`` (the paper) or ``softmax``: in-batch sampled softmax with logQ correction (faster to converge)."""
    temperature: float = 0.1
    """Softmax temperature (``loss=softmax`` only)."""
    log_q: bool = True
    """Subtract log item frequency from in-batch logits (``loss=softmax`` only; Yi et al. 2019): corrects the
    popularity skew of in-batch negatives, which also removes popularity from the learned scores."""
    init: Literal["normal", "xavier"] = "normal"
    """Layer-0 initialisation: N(0, 0.1) (LightGCN's code) or Xavier per table (RecBole's; std about
    sqrt(2 / rows), far smaller on large tables)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    batch_size: int = 2048
    """Triples per step."""
    min_steps: int = 32
    """At least 32 optimizer steps an epoch (the batch shrinks on small data: 3,977 pairs -> batch 125; was 0).
    No effect from about 65k training pairs up (ml-100k, amazon-beauty-cf keep ``batch_size``)."""

    #: saves written before the defaults changed (2026-12-03) trained with the paper's setting
    FORMER_DEFAULTS: ClassVar[dict[str, Any]] = {"num_layers": 3, "reg_weight": 1e-4, "min_steps": 0}

    #: ``recembed tune lightgcn``: what the search varies (docs/tuning.md)
    SEARCH_SPACE: ClassVar[dict[str, Any]] = {
        "learning_rate": Float(1e-4, 1e-2, log=True, doc="Adam step size, a decade either side of the default 1e-3"),
        "reg_weight": Float(1e-6, 1e-2, log=True, doc="L2 on the layer-0 embeddings (paper: 1e-4)"),
        "num_layers": Int(1, 4, doc="propagation layers K (paper: 3)"),
        "embedding_dim": Choice((32, 64, 128), doc="layer-0 embedding width"),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.embedding_dim >= 1, "embedding_dim", f"must be >= 1, got {self.embedding_dim}")
        check(self.num_layers >= 0, "num_layers", f"must be >= 0, got {self.num_layers}")
        check(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")


def normalized_adjacency(train: sp.csr_matrix) -> sp.csr_matrix:
    """``D^{-1/2} A D^{-1/2}`` of the bipartite user-item graph, ``(U+I, U+I)`` float32 CSR (symmetric)."""
    r = sp.csr_matrix(train, dtype=np.float32)
    adj = sp.bmat([[None, r], [r.T, None]], format="csr")
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5
    scale = sp.diags(inv_sqrt.astype(np.float32))
    out = sp.csr_matrix(scale @ adj @ scale, dtype=np.float32)
    out.sort_indices()
    return out


_SymmetricSpMM = SymmetricSpMM  # the device-aware kernel (training/device.py); the old name kept for callers


def propagate(adjacency: sp.csr_matrix, ego: torch.Tensor, num_layers: int) -> torch.Tensor:
    """Mean of ``A^k E`` for ``k = 0..num_layers``: LightGCN's layer combination, ``(U+I, D)``.

    Accumulates a running sum (no stacked copy of the layers: on gowalla that copy and its backward
    cost a third of a training step)."""
    total = h = ego
    for _ in range(num_layers):
        h = _SymmetricSpMM.apply(adjacency, h)
        total = total + h
    return total * (1.0 / (num_layers + 1))


class GraphEmbeddingModule(nn.Module):
    """User and item layer-0 embeddings held in ONE ``(U+I, D)`` parameter, so propagation needs no
    concatenation per step; ``ego()`` returns the user and item blocks as views."""

    def __init__(self, adjacency: sp.csr_matrix, num_users: int, num_items: int, dim: int, num_layers: int,
                 init: str = "normal") -> None:
        super().__init__()
        self.num_users, self.num_layers = num_users, num_layers
        self.adjacency = adjacency  # fixed graph, not a parameter (rebuilt from the data, never saved)
        self.weight = nn.Parameter(torch.empty(num_users + num_items, dim))
        self.items: nn.Module | None = None  # a compressed item table (item_table=..., compress_items)
        with torch.no_grad():
            for block in (self.weight[:num_users], self.weight[num_users:]):
                if init == "normal":
                    nn.init.normal_(block, std=0.1)  # LightGCN's code
                else:
                    nn.init.xavier_uniform_(block)  # SELFRec (SimGCL / XSimGCL), per table

    @classmethod
    def for_interactions(cls, train: sp.csr_matrix, dim: int, num_layers: int, **kwargs):  # noqa: ANN003, ANN206
        """The module over the normalised bipartite graph of ``train`` (users x items); ``kwargs`` go to the
        constructor (e.g. ``init``)."""
        return cls(normalized_adjacency(train), train.shape[0], train.shape[1], dim, num_layers, **kwargs)

    def layer0(self) -> torch.Tensor:
        """``(U+I, D)`` layer-0 embeddings (with a compressed item table: users beside its materialised rows)."""
        return self.weight if self.items is None else torch.cat([self.weight, self.items.weight])

    def compress_items(self, spec: str) -> None:
        """Replace the item block by a compressed table (:mod:`recembed.compact.tables`), initialised at the
        item block's scale."""
        from ...compact.tables import make_table

        users, items = self.ego()
        self.items = make_table(spec, items.shape[0], items.shape[1], float(items.detach().std()))
        self.weight = nn.Parameter(users.detach().clone())

    def ego(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.layer0())

    def split(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return e[: self.num_users], e[self.num_users :]


class LightGCNModule(GraphEmbeddingModule):
    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(propagate(self.adjacency, self.layer0(), self.num_layers))


class LightGCN(EmbeddingRecommender):
    name = "lightgcn"
    Config = LightGCNConfig

    def _build(self, train: sp.csr_matrix, options: FitOptions) -> tuple[nn.Module, BPRTask | SoftmaxTask]:
        cfg = self.config
        module = LightGCNModule.for_interactions(train, cfg.embedding_dim, cfg.num_layers, init=cfg.init)
        if cfg.loss == "softmax":
            return module, SoftmaxTask(train, self._batch(train.nnz), temperature=cfg.temperature, reg_weight=cfg.reg_weight,
                                       log_q=cfg.log_q)
        return module, BPRTask(train, self._batch(train.nnz), reg_weight=cfg.reg_weight)
