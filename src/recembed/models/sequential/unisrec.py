"""UniSRec-style text-based sequential recommendation: items are their text, so unseen items can be recommended.

Hou, Mu, Zhao, Li, Ding & Wen, "Towards Universal Sequence Representation Learning for Recommender Systems",
KDD 2022 (the idea also behind Recformer, KDD 2023).

Each item's frozen text vector ``x_i`` (an item-table vector column: MiniLM vectors from ``--text-columns``,
or a dataset's own, ``features``) passes through UniSRec's mixture-of-experts adaptor with parametric
whitening, ``v_i = sum_k softmax(x_i W_g)_k (x_i - b_k) W_k`` (dropout on ``x_i``); with ``use_id`` a learned
ID embedding is added (the paper's transductive setting; without it, the inductive one). A SASRec-style causal
Transformer reads the history of item vectors; the output at the last position is the user; items are scored
by cosine similarity over a temperature (0.07, as the paper), cross-entropy over all items.

Items that never occur in training get their vector from text alone: their ID embedding (untrained) is
zeroed in evaluation mode, so a held-out item is scored like a trained one from its text. They are also left
out of the training softmax: as negatives only, they would learn to rank below every item seen in training.

Deviations: no pre-training on other domains (the paper pre-trains the adaptor and encoder on five Amazon
categories with sequence-item and sequence-sequence contrastive tasks, then fine-tunes); here everything is
trained on the target data with the next-item loss, and text comes from MiniLM (or the dataset's vectors)
instead of BERT — small enough for a CPU. Because of that, the default is the paper's inductive setting,
text only (``use_id=false``): without pre-training, text + ID was below text only on scientific (test NDCG@10
0.0376 / 0.0723 with patience 10 / 30 against 0.0777; benchmarks/RESULTS.md [Sequential]); saves that do not
name ``use_id`` load as text + ID, the default until 2026-12-03.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...config import check
from ..content._content import ContentFields, content_matrix
from ._seqnets import TransformerEncoder
from .core import SequentialConfig, SequentialRecommender


@dataclass(frozen=True)
class UniSRecConfig(SequentialConfig, ContentFields):
    num_layers: int = 2
    """Self-attention blocks."""
    num_heads: int = 2
    """Attention heads."""
    num_experts: int = 8
    """Experts of the MoE adaptor."""
    adaptor_dropout: float = 0.2
    """Dropout on the text vectors entering the adaptor."""
    use_id: bool = False
    """Add a learned item-ID embedding to the text vector (transductive); False (the default since
    2026-12-03): text only (inductive), better on scientific without the paper's pre-training (header)."""
    temperature: float = 0.07
    """Softmax temperature on cosine scores."""

    #: saves that do not name ``use_id`` were made with text + ID (the default until 2026-12-03)
    FORMER_DEFAULTS: ClassVar[dict[str, Any]] = {**SequentialConfig.FORMER_DEFAULTS, "use_id": True}

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.num_experts >= 1, "num_experts", f"must be >= 1, got {self.num_experts}")
        check(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        check(self.embedding_dim % self.num_heads == 0, "num_heads",
              f"embedding_dim {self.embedding_dim} is not divisible by {self.num_heads}")


class MoEAdaptor(nn.Module):
    """Parametric whitening ``(x - b_k) W_k`` per expert, mixed by a softmax gate on ``x``."""

    def __init__(self, in_dim: int, out_dim: int, experts: int, dropout: float) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(experts, in_dim))
        self.proj = nn.Parameter(torch.empty(experts, in_dim, out_dim))
        nn.init.normal_(self.proj, std=in_dim ** -0.5)
        self.gate = nn.Linear(in_dim, experts, bias=False)
        nn.init.zeros_(self.gate.weight)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(x)
        gate = torch.softmax(self.gate(x), dim=-1)  # (I, K)
        experts = torch.einsum("ikf,kfd->ikd", x[:, None, :] - self.shift[None], self.proj)  # (I, K, d)
        return (gate[..., None] * experts).sum(1)


class UniSRecModule(nn.Module):
    def __init__(self, text: np.ndarray, seen: np.ndarray, cfg: UniSRecConfig) -> None:
        super().__init__()
        num_items, f = text.shape
        d = cfg.embedding_dim
        self.temperature = cfg.temperature
        self.register_buffer("text", torch.from_numpy(np.ascontiguousarray(text, dtype=np.float32)))
        self.register_buffer("seen", torch.from_numpy(np.asarray(seen, dtype=np.float32))[:, None])
        self.adaptor = MoEAdaptor(f, d, cfg.num_experts, cfg.adaptor_dropout)
        self.ids = nn.Embedding(num_items, d) if cfg.use_id else None
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=0.02)
        self.encoder = TransformerEncoder(d, cfg.max_len, cfg.num_layers, cfg.num_heads, cfg.dropout, "sasrec",
                                          causal=True)
        self._cache: torch.Tensor | None = None

    def item_table(self) -> torch.Tensor:
        if not self.training and self._cache is not None:
            return self._cache
        v = self.adaptor(self.text)
        if self.ids is not None:
            v = v + (self.ids.weight if self.training else self.ids.weight * self.seen)
        if not self.training:
            self._cache = v
        return v

    def train(self, mode: bool = True) -> UniSRecModule:
        self._cache = None
        return super().train(mode)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        table = self.item_table()
        padded = torch.cat([table.new_zeros(1, table.shape[1]), table])
        return self.encoder(padded[tokens], tokens)

    def logits(self, hidden: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        table = self.item_table()[:, : hidden.shape[-1]]  # a narrower hidden: a Matryoshka prefix
        seen = self.seen[:, 0] > 0
        if candidates is not None:
            table, seen = table[candidates], seen[candidates]
        logits = F.normalize(hidden, dim=-1) @ F.normalize(table, dim=-1).T / self.temperature
        if self.training:  # items absent from training are not negatives either (else they learn to rank last)
            logits = logits.masked_fill(~seen, float("-inf"))
        return logits


class UniSRec(SequentialRecommender):
    name = "unisrec"
    Config = UniSRecConfig

    def _make_module(self, weights: dict[str, np.ndarray] | None) -> nn.Module:
        c = self.config
        if weights is not None:
            return UniSRecModule(np.asarray(weights["text"]), np.asarray(weights["seen"])[:, 0], c)
        text, self.feature_names_ = content_matrix(self._context.get("item_table"), c.features, c.feature_norm,
                                                   self.num_items_)
        seen = np.diff(self.user_items_.tocsc().indptr) > 0
        return UniSRecModule(text, seen, c)
