"""DeepFM: an FM and a deep network over the same field embeddings, summed.

Guo, Tang, Ye, Li and He, "DeepFM: A Factorization-Machine based Neural Network for CTR Prediction", IJCAI 2017.
``logit = FM(x) + MLP([v_1; ...; v_F])``, the FM's second-order term and the MLP sharing the embeddings.
Defaults follow FuxiCTR's DeepFM config (hidden units 64-64-64, ReLU, no batch norm); no deviation from the
paper beyond FuxiCTR's pooling of multi-token fields (mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ...config import check
from ...ranking.schema import Schema
from ...tuning.space import Choice, Float
from ._layers import CTRModule, FieldEmbedding, FieldLinear, mlp
from .base import Ranker, RankerConfig
from .fm import fm_interaction


@dataclass(frozen=True)
class DeepFMConfig(RankerConfig):
    hidden_units: tuple[int, ...] = (64, 64, 64)
    """Widths of the deep part's hidden layers."""
    batch_norm: bool = False
    """Batch normalisation after each hidden layer."""

    #: ``recembed tune deepfm``: what the search varies (docs/tuning.md)
    SEARCH_SPACE: ClassVar[dict[str, Any]] = {
        "learning_rate": Float(1e-4, 1e-2, log=True, doc="Adam step size, a decade either side of the default 1e-3"),
        "embedding_dim": Choice((8, 16, 32), doc="field embedding width (FuxiCTR / BARS: 10-16)"),
        "net_dropout": Float(0.0, 0.5, doc="MLP dropout"),
        "embedding_l2": Float(1e-8, 1e-3, log=True, doc="L2 on the looked-up embeddings"),
        "hidden_units": Choice(((64, 64, 64), (200, 200), (400, 400, 400)), doc="deep part's widths"),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check(all(h >= 1 for h in self.hidden_units), "hidden_units", f"must be >= 1, got {self.hidden_units}")


class DeepFMModule(CTRModule):
    def __init__(self, schema: Schema, cfg: DeepFMConfig) -> None:
        super().__init__()
        self.linear = FieldLinear(schema)
        self.embedding = FieldEmbedding(schema, cfg.embedding_dim)
        width = self.embedding.num_fields * cfg.embedding_dim
        self.dnn = nn.Sequential(mlp([width, *cfg.hidden_units], cfg.net_dropout, cfg.batch_norm),
                                 nn.Linear(cfg.hidden_units[-1] if cfg.hidden_units else width, 1))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        e = self.embedding(batch)
        return self.linear(batch) + fm_interaction(e) + self.dnn(e.flatten(1)).squeeze(-1)


class DeepFM(Ranker):
    name = "deepfm"
    Config = DeepFMConfig

    def _module(self, schema: Schema) -> DeepFMModule:
        return DeepFMModule(schema, self.config)
