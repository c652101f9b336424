"""FM: factorization machines.

Rendle, "Factorization Machines", ICDM 2010. ``logit = b + sum_f w_f(x_f) + sum_{f<g} <v_f, v_g>`` with the
pairwise term computed as ``0.5 * ((sum_f v_f)^2 - sum_f v_f^2)`` summed over the embedding dimensions (linear in
the number of fields). Tags and sequences enter as the mean of their tokens' vectors (FuxiCTR's pooling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...ranking.schema import Schema
from ._layers import CTRModule, FieldEmbedding, FieldLinear
from .base import Ranker, RankerConfig


def fm_interaction(e: torch.Tensor) -> torch.Tensor:
    """Sum of all pairwise inner products of the field vectors ``e (B, F, D)`` -> ``(B,)``."""
    return 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(-1)


@dataclass(frozen=True)
class FMConfig(RankerConfig):
    pass


class FMModule(CTRModule):
    def __init__(self, schema: Schema, dim: int) -> None:
        super().__init__()
        self.linear = FieldLinear(schema)
        self.embedding = FieldEmbedding(schema, dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(batch) + fm_interaction(self.embedding(batch))


class FM(Ranker):
    name = "fm"
    Config = FMConfig

    def _module(self, schema: Schema) -> FMModule:
        return FMModule(schema, self.config.embedding_dim)
