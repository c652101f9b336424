"""SASRec: self-attentive sequential recommendation.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.

Item embeddings (scaled by sqrt(d)) plus learned position embeddings, ``num_layers`` causal self-attention
blocks in the authors' layout (see :mod:`recembed.models.sequential._seqnets`), the output at the last position is the
user; items are scored by dot product with the shared item embeddings.

Deviations from the paper:

* Loss: cross-entropy over all items at every position (the paper samples one negative per position with a
  binary loss). Full-softmax SASRec is much stronger (Klenitskiy & Vasilev, "Turning Dross Into Gold Loss:
  is BERT4Rec really better than SASRec?", RecSys 2023; Petrov & Macdonald's gSASRec). ``num_negatives > 0``
  switches to a sampled softmax for large catalogs.
* Histories longer than ``max_len + 1`` are cut into non-overlapping windows, so every training transition is
  used (the paper keeps only the last ``max_len`` items).

With ``semantic_ids`` set, item vectors (input and output) are built from the items' semantic IDs
(:mod:`recembed.models.generative._sidemb`, Singh et al., RecSys 2024) in place of, or next to (``sid_use_id``),
ID embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from ...config import check
from ...data.interactions import Interactions
from ...options import FitOptions
from ...semantic.ids import SemanticIds
from ...semantic.resolve import semantic_ids_for_fit, sid_from_state, sid_state
from ...tuning.space import Choice, Float, Int
from ..generative._sidemb import SemanticItemTable
from ._seqnets import TransformerEncoder
from .core import ItemTableModule, OutputItems, SequentialConfig, SequentialRecommender


@dataclass(frozen=True)
class SASRecConfig(SequentialConfig):
    num_layers: int = 2
    """Self-attention blocks."""
    num_heads: int = 1
    """Attention heads (the paper uses one)."""
    semantic_ids: str = ""
    """Build item vectors from semantic IDs: ``random``, a ``recembed tokenize`` folder or a ``*.index.json``
    file ('' = plain ID embeddings)."""
    id_offset: int = 0
    """For ``*.index.json`` semantic IDs: the file's key of an item is its external id plus this."""
    sid_mode: Literal["prefix", "unigram"] = "prefix"
    """Semantic-ID n-grams: ``prefix`` (codes 1..l at level l) or ``unigram`` (code l alone)."""
    sid_use_id: bool = True
    """Add each item's own ID embedding to its semantic-ID vector (False: semantic IDs in place of IDs)."""
    sid_buckets: int = 0
    """Hash each level's n-grams into this many rows (0: one row per distinct n-gram)."""

    #: ``recembed tune sasrec``: what the search varies (docs/tuning.md)
    SEARCH_SPACE: ClassVar[dict[str, Any]] = {
        "learning_rate": Float(1e-4, 1e-2, log=True, doc="Adam step size, a decade either side of the default 1e-3"),
        "dropout": Float(0.0, 0.5, doc="dropout on embeddings, attention and feed-forward (paper: 0.2-0.5)"),
        "num_layers": Int(1, 3, doc="self-attention blocks (paper: 2)"),
        "num_heads": Choice((1, 2), doc="attention heads (every width choice is divisible by both)"),
        "embedding_dim": Choice((32, 64, 128), doc="item embedding / hidden width"),
        "max_len": Choice((50, 100, 200), doc="longest history read (paper: 200 on ML-1M, 50 on sparse data)"),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.num_layers >= 1, "num_layers", f"must be >= 1, got {self.num_layers}")
        check(self.embedding_dim % self.num_heads == 0, "num_heads",
              f"embedding_dim {self.embedding_dim} is not divisible by {self.num_heads}")


class SASRecModule(ItemTableModule):
    def __init__(self, num_items: int, cfg: SASRecConfig, sid: SemanticIds | None = None) -> None:
        super().__init__()
        self.scale = cfg.embedding_dim ** 0.5
        if sid is None:
            self.items = OutputItems(num_items, cfg.embedding_dim)
        else:
            self.items = SemanticItemTable(sid.codes, cfg.embedding_dim, cfg.sid_mode, cfg.sid_use_id, cfg.sid_buckets)
        self.encoder = TransformerEncoder(cfg.embedding_dim, cfg.max_len, cfg.num_layers, cfg.num_heads,
                                          cfg.dropout, "sasrec", causal=True)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.items.emb(tokens) * self.scale, tokens)



class SASRec(SequentialRecommender):
    name = "sasrec"
    Config = SASRecConfig

    semantic_ids_: SemanticIds | None = None

    def _fit(self, train: Interactions, options: FitOptions, **context: Any) -> None:
        self.semantic_ids_ = (semantic_ids_for_fit(self.config, train.num_items, context, options.seed)
                              if self.config.semantic_ids else None)
        super()._fit(train, options, **context)

    def _make_module(self, weights: dict[str, np.ndarray] | None) -> nn.Module:
        return SASRecModule(self.num_items_, self.config, self.semantic_ids_)

    def _state(self) -> dict[str, Any]:
        extra = sid_state(self.semantic_ids_) if self.semantic_ids_ is not None else {}
        return {**extra, **super()._state()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.semantic_ids_ = sid_from_state(state)
        super()._set_state(state)
