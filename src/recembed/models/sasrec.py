"""SASRec: self-attentive sequential recommendation.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.

Item embeddings (scaled by sqrt(d)) plus learned position embeddings, ``num_layers`` causal self-attention
blocks in the authors' layout (see :mod:`recembed.models._seqnets`), the output at the last position is the
user; items are scored by dot product with the shared item embeddings.

Deviations from the paper:

* Loss: cross-entropy over all items at every position (the paper samples one negative per position with a
  binary loss). Full-softmax SASRec is much stronger (Klenitskiy & Vasilev, "Turning Dross Into Gold Loss:
  is BERT4Rec really better than SASRec?", RecSys 2023; Petrov & Macdonald's gSASRec). ``num_negatives > 0``
  switches to a sampled softmax for large catalogs.
* Histories longer than ``max_len + 1`` are cut into non-overlapping windows, so every training transition is
  used (the paper keeps only the last ``max_len`` items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import check
from ._seqnets import TransformerEncoder
from .sequential import ItemTableModule, OutputItems, SequentialConfig, SequentialRecommender


@dataclass(frozen=True)
class SASRecConfig(SequentialConfig):
    num_layers: int = 2
    """Self-attention blocks."""
    num_heads: int = 1
    """Attention heads (the paper uses one)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.num_layers >= 1, "num_layers", f"must be >= 1, got {self.num_layers}")
        check(self.embedding_dim % self.num_heads == 0, "num_heads",
              f"embedding_dim {self.embedding_dim} is not divisible by {self.num_heads}")


class SASRecModule(ItemTableModule):
    def __init__(self, num_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.scale = cfg.embedding_dim ** 0.5
        self.items = OutputItems(num_items, cfg.embedding_dim)
        self.encoder = TransformerEncoder(cfg.embedding_dim, cfg.max_len, cfg.num_layers, cfg.num_heads,
                                          cfg.dropout, "sasrec", causal=True)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.items.emb(tokens) * self.scale, tokens)



class SASRec(SequentialRecommender):
    name = "sasrec"
    Config = SASRecConfig

    def _make_module(self, weights: dict[str, np.ndarray] | None) -> nn.Module:
        return SASRecModule(self.num_items_, self.config)
