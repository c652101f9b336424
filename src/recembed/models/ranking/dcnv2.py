"""DCN-V2: the improved deep & cross network.

Wang, Shivanna, Cheng, Jain, Lin, Hong and Chi, "DCN V2: Improved Deep & Cross Network and Practical Lessons for
Web-scale Learning to Rank Systems", WWW 2021. The field embeddings are concatenated into ``x_0`` (``F * D``
wide) and a cross network of full-rank layers ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (eq. 1) models explicit
interactions of growing degree. ``structure``: ``parallel`` -- the cross network and an MLP both read ``x_0``,
their outputs concatenated into the logit layer (fig. 2b); ``stacked`` -- the MLP reads the cross network's
output (fig. 2a). ``hidden_units=()`` leaves the cross network alone (both structures then coincide).
``low_rank_mixture`` replaces each layer by the paper's mixture of ``num_experts`` low-rank experts (eq. 3-4):
``E_i(x_l) = x_0 * (U_i tanh(C_i tanh(V_i^T x_l)) + b_l)``, mixed by a softmax gate over ``x_l``, plus ``x_l``.

Defaults: FuxiCTR's ``DCNv2_default`` (embedding_dim 40, parallel, 3 cross layers, MLP 500-500-500, ReLU, no
batch norm, no dropout, no regularisation, lr 1e-3; mixture off, rank 32, 4 experts). Deviations: batches of
1,024 rows (``RankerConfig``'s, shrunk by ``min_steps`` on small data; FuxiCTR: 10,000); one ``hidden_units``
for the MLP of either structure (FuxiCTR: ``stacked_dnn_hidden_units`` / ``parallel_dnn_hidden_units``, both
500-500-500 by default) and no ``stacked_parallel`` structure; linear layers keep PyTorch's default
initialisation (FuxiCTR: Xavier normal, zero bias); early stopping on valid AUC with patience 2 and no learning
rate decay on plateau (FuxiCTR: AUC - logloss, x0.1 decay); tags / sequences enter as the mean of their tokens'
embeddings (FuxiCTR's pooling); the mixture's bias is shared by the experts of a layer (as FuxiCTR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ...config import check
from ...ranking.schema import Schema
from ...tuning.space import Choice, Float, Int
from ._layers import CTRModule, FieldEmbedding, mlp
from .base import Ranker, RankerConfig


@dataclass(frozen=True)
class DCNv2Config(RankerConfig):
    embedding_dim: int = 40
    """Width of every field's embedding (FuxiCTR's DCNv2 default: 40)."""
    structure: Literal["parallel", "stacked"] = "parallel"
    """``parallel``: cross network and MLP side by side on the embeddings; ``stacked``: MLP on the cross output."""
    num_cross_layers: int = 3
    """Cross layers."""
    hidden_units: tuple[int, ...] = (500, 500, 500)
    """Widths of the MLP's hidden layers (empty: the cross network alone)."""
    batch_norm: bool = False
    """Batch normalisation after each hidden layer of the MLP."""
    low_rank_mixture: bool = False
    """Each cross layer a mixture of low-rank experts (the paper's cost-saving variant) instead of full rank."""
    low_rank: int = 32
    """Rank of each expert (``low_rank_mixture``)."""
    num_experts: int = 4
    """Experts per cross layer (``low_rank_mixture``)."""

    #: ``recembed tune dcnv2``: what the search varies (docs/tuning.md)
    SEARCH_SPACE: ClassVar[dict[str, Any]] = {
        "learning_rate": Float(1e-4, 1e-2, log=True, doc="Adam step size, a decade either side of the default 1e-3"),
        "embedding_dim": Choice((16, 40), doc="field embedding width (FuxiCTR's DCNv2: 40)"),
        "num_cross_layers": Int(1, 5, doc="cross layers (paper: 1-4 suffice)"),
        "net_dropout": Float(0.0, 0.5, doc="MLP dropout"),
        "hidden_units": Choice(((256, 256), (500, 500, 500)), doc="MLP widths"),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.num_cross_layers >= 1, "num_cross_layers", f"must be >= 1, got {self.num_cross_layers}")
        check(all(h >= 1 for h in self.hidden_units), "hidden_units", f"must be >= 1, got {self.hidden_units}")
        check(self.low_rank >= 1, "low_rank", f"must be >= 1, got {self.low_rank}")
        check(self.num_experts >= 1, "num_experts", f"must be >= 1, got {self.num_experts}")


class CrossNetV2(nn.Module):
    """Full-rank cross layers: ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l``."""

    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class CrossNetMix(nn.Module):
    """Cross layers as gated mixtures of low-rank experts, all experts of a layer computed in one einsum."""

    def __init__(self, width: int, layers: int, rank: int, experts: int) -> None:
        super().__init__()

        def param(*shape: int) -> nn.Parameter:
            return nn.Parameter(nn.init.xavier_normal_(torch.empty(*shape)))

        self.V = nn.ParameterList(param(experts, width, rank) for _ in range(layers))
        self.C = nn.ParameterList(param(experts, rank, rank) for _ in range(layers))
        self.U = nn.ParameterList(param(experts, width, rank) for _ in range(layers))
        self.bias = nn.ParameterList(nn.Parameter(torch.zeros(width)) for _ in range(layers))
        self.gates = nn.ModuleList(nn.Linear(width, experts, bias=False) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for V, C, U, b, gate in zip(self.V, self.C, self.U, self.bias, self.gates):
            v = torch.tanh(torch.einsum("bd,edr->ber", x, V))  # project to each expert's rank-r space
            v = torch.tanh(torch.einsum("ber,esr->bes", v, C))
            experts = x0.unsqueeze(1) * (torch.einsum("ber,edr->bed", v, U) + b)  # (B, E, width)
            weights = torch.softmax(gate(x), dim=-1).unsqueeze(-1)  # (B, E, 1)
            x = (weights * experts).sum(1) + x
        return x


class DCNv2Module(CTRModule):
    def __init__(self, schema: Schema, cfg: DCNv2Config) -> None:
        super().__init__()
        self.embedding = FieldEmbedding(schema, cfg.embedding_dim)
        width = self.embedding.num_fields * cfg.embedding_dim
        self.cross = (CrossNetMix(width, cfg.num_cross_layers, cfg.low_rank, cfg.num_experts)
                      if cfg.low_rank_mixture else CrossNetV2(width, cfg.num_cross_layers))
        self.stacked = cfg.structure == "stacked"
        self.dnn = mlp([width, *cfg.hidden_units], cfg.net_dropout, cfg.batch_norm) if cfg.hidden_units else None
        out = width if self.dnn is None else cfg.hidden_units[-1] + (0 if self.stacked else width)
        self.fc = nn.Linear(out, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0 = self.embedding(batch).flatten(1)
        cross = self.cross(x0)
        if self.dnn is None:
            h = cross
        elif self.stacked:
            h = self.dnn(cross)
        else:
            h = torch.cat([cross, self.dnn(x0)], dim=-1)
        return self.fc(h).squeeze(-1)


class DCNv2(Ranker):
    name = "dcnv2"
    Config = DCNv2Config

    def _module(self, schema: Schema) -> DCNv2Module:
        return DCNv2Module(schema, self.config)
