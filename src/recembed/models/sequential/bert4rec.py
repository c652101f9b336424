"""BERT4Rec: sequential recommendation with bidirectional encoder representations from Transformer.

Sun, Liu, Wu, Pei, Lin, Ou & Jiang, CIKM 2019.

Item + position embeddings, LayerNorm, dropout, ``num_layers`` bidirectional post-LN Transformer blocks
(GELU feed-forward of width 4d); the Cloze task masks each item with probability ``mask_prob`` and predicts
it; a share of training windows masks only the last item (the paper's extra samples that match inference).
Prediction head: linear + GELU + LayerNorm, then dot product with the shared item embeddings plus an output
bias. At inference the history's last ``max_len - 1`` items are followed by the mask token, whose output is
the user. Cross-entropy over all items (the paper's softmax), or sampled softmax with ``num_negatives``.

Defaults are the paper's (d 64, 2 layers, 2 heads, dropout 0.1, mask_prob 0.2 as for ML-1m; the paper
uses 0.6 on Beauty). Deviation: long histories are cut into non-overlapping windows of ``max_len``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...config import check
from ...training.sequences import MaskedItemTask, Sequences
from ._seqnets import TransformerEncoder
from .core import ItemTableModule, OutputItems, SequentialConfig, SequentialRecommender


@dataclass(frozen=True)
class BERT4RecConfig(SequentialConfig):
    num_layers: int = 2
    """Transformer blocks."""
    num_heads: int = 2
    """Attention heads."""
    dropout: float = 0.1
    """Dropout on embeddings, attention and feed-forward outputs."""
    mask_prob: float = 0.2
    """Share of items masked in a training window."""
    last_prob: float = 0.1
    """Share of training windows that mask only their last item."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.mask_prob < 1, "mask_prob", f"must be in (0, 1), got {self.mask_prob}")
        check(0 <= self.last_prob <= 1, "last_prob", f"must be in [0, 1], got {self.last_prob}")
        check(self.max_len >= 2, "max_len", f"must be >= 2 (history + mask), got {self.max_len}")
        check(self.embedding_dim % self.num_heads == 0, "num_heads",
              f"embedding_dim {self.embedding_dim} is not divisible by {self.num_heads}")


class BERT4RecModule(ItemTableModule):
    def __init__(self, num_items: int, cfg: BERT4RecConfig) -> None:
        super().__init__()
        d = cfg.embedding_dim
        self.items = OutputItems(num_items, d, extra_tokens=1)  # token num_items + 1 = [mask]
        nn.init.normal_(self.items.emb.weight, std=0.02)  # BERT's initializer range (learns order far sooner)
        with torch.no_grad():
            self.items.emb.weight[0].zero_()
        self.encoder = TransformerEncoder(d, cfg.max_len, cfg.num_layers, cfg.num_heads, cfg.dropout, "bert",
                                          causal=False)
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d, eps=1e-12))
        self.bias = nn.Parameter(torch.zeros(num_items))

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.items.emb(tokens), tokens))

    def logits(self, hidden: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        bias = self.bias if candidates is None else self.bias[candidates]
        return self.items.logits(hidden, candidates) + bias



class BERT4Rec(SequentialRecommender):
    name = "bert4rec"
    Config = BERT4RecConfig

    def _make_module(self, weights: dict[str, np.ndarray] | None) -> nn.Module:
        return BERT4RecModule(self.num_items_, self.config)

    def _task(self, sequences: Sequences) -> MaskedItemTask:
        c = self.config
        return self._sized(MaskedItemTask(sequences, c.max_len, c.batch_size, self.num_items_, c.mask_prob,
                                          c.last_prob, c.num_negatives))

    def _context_tokens(self, seqs: Sequences, users: np.ndarray) -> np.ndarray:
        history = seqs.last(users, self.config.max_len - 1)
        return np.concatenate([history, np.full((len(users), 1), self.num_items_ + 1, dtype=np.int64)], axis=1)
