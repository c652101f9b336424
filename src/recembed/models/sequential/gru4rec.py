"""GRU4Rec: session-based recommendation with recurrent neural networks.

Hidasi, Karatzoglou, Baltrunas & Tikk, "Session-based Recommendations with Recurrent Neural Networks",
ICLR 2016; Hidasi & Karatzoglou, "Recurrent Neural Networks with Top-k Gains for Session-based
Recommendations", CIKM 2018 (the cross-entropy / BPR-max losses, tied "constrained" embeddings).

Item embedding -> dropout -> GRU (``num_layers``, ``hidden_dim``) -> dropout -> linear to the embedding
width; the hidden state after the last item is the user; items are scored by dot product with the same
item embeddings (the official code's ``constrained_embedding``). Loss: cross-entropy over all items
(the official implementation's ``cross-entropy`` loss, without sampling), or sampled softmax with
``num_negatives``.

Deviation: training runs on windows of ``max_len`` steps from each history (truncated back-propagation
through time with the state reset at each window) instead of session-parallel mini-batches that carry the
state across a whole session; for histories shorter than ``max_len`` the two see the same transitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ...config import check
from .core import ItemTableModule, OutputItems, SequentialConfig, SequentialRecommender


@dataclass(frozen=True)
class GRU4RecConfig(SequentialConfig):
    hidden_dim: int = 128
    """GRU state width."""
    num_layers: int = 1
    """Stacked GRU layers."""
    dropout: float = 0.3
    """Dropout on the input embeddings and the GRU output."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.hidden_dim >= 1, "hidden_dim", f"must be >= 1, got {self.hidden_dim}")
        check(self.num_layers >= 1, "num_layers", f"must be >= 1, got {self.num_layers}")


class GRU4RecModule(ItemTableModule):
    def __init__(self, num_items: int, cfg: GRU4RecConfig) -> None:
        super().__init__()
        self.items = OutputItems(num_items, cfg.embedding_dim)
        self.gru = nn.GRU(cfg.embedding_dim, cfg.hidden_dim, cfg.num_layers, batch_first=True)
        self.proj = nn.Linear(cfg.hidden_dim, cfg.embedding_dim)
        self.drop = nn.Dropout(cfg.dropout)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t = tokens.shape
        lengths = (tokens != 0).sum(1)
        shift = (t - lengths)[:, None]
        steps = torch.arange(t)[None]
        right = tokens.gather(1, (steps + shift) % t)  # right-aligned -> left-aligned for packing
        packed = pack_padded_sequence(self.drop(self.items.emb(right)), lengths.clamp(min=1), batch_first=True,
                                      enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        out = self.proj(self.drop(out))
        back = ((steps - shift) % t)[..., None].expand(-1, -1, out.shape[-1])
        return out.gather(1, back)  # position j again holds the state after the j-th right-aligned token



class GRU4Rec(SequentialRecommender):
    name = "gru4rec"
    Config = GRU4RecConfig

    def _make_module(self, weights: dict[str, np.ndarray] | None) -> nn.Module:
        return GRU4RecModule(self.num_items_, self.config)
