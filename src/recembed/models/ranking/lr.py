"""LR: logistic regression over the fields (the first-order baseline every CTR paper reports).

``logit = b + sum_f w_f(x_f)``: one weight per token of every categorical / tag / sequence field (tags and
sequences: the mean of their tokens' weights), per numeric field and a linear map per vector field. It can
model no interaction between fields, which is what the planted-cross test checks the others do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...ranking.schema import Schema
from ._layers import CTRModule, FieldEmbedding, FieldLinear
from .base import Ranker, RankerConfig


@dataclass(frozen=True)
class LRConfig(RankerConfig):
    pass


class LRModule(CTRModule):
    def __init__(self, schema: Schema) -> None:
        super().__init__()
        self.linear = FieldLinear(schema)

    @property
    def embedding(self) -> FieldEmbedding:  # the linear term's tables (a property: not a second state-dict entry)
        return self.linear.emb

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(batch)


class LR(Ranker):
    name = "lr"
    Config = LRConfig

    def _module(self, schema: Schema) -> LRModule:
        return LRModule(schema)
