"""Transformer pieces shared by the sequential models (SASRec, BERT4Rec, UniSRec).

Two block layouts: ``"sasrec"`` as in Kang & McAuley's code (the query is the layer-normalised input and
the residual adds to it; point-wise feed-forward with ReLU; padded positions zeroed after each block; a
final LayerNorm) and ``"bert"`` (post-LN, GELU feed-forward of width 4d, as BERT4Rec). Attention is
``scaled_dot_product_attention`` with a boolean mask: causal or bidirectional, padded keys hidden, and
every position may attend to itself (so fully padded rows stay finite; their outputs are never used).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = query.shape
        split = lambda x: x.view(b, x.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(query)), split(self.k(key)), split(self.v(key))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(o.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, style: Literal["sasrec", "bert"]) -> None:
        super().__init__()
        self.style = style
        self.attn = Attention(dim, heads, dropout)
        self.ln1, self.ln2 = nn.LayerNorm(dim, eps=1e-8 if style == "sasrec" else 1e-12), nn.LayerNorm(dim)
        hidden = dim if style == "sasrec" else 4 * dim
        self.ff1, self.ff2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)
        self.act = nn.ReLU() if style == "sasrec" else nn.GELU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self.style == "sasrec":
            q = self.ln1(x)
            x = q + self.drop(self.attn(q, x, mask))
            x = self.ln2(x)
            x = x + self.drop(self.ff2(self.drop(self.act(self.ff1(x)))))
            return x * real
        x = self.ln1(x + self.drop(self.attn(x, x, mask)))
        return self.ln2(x + self.drop(self.ff2(self.drop(self.act(self.ff1(x))))))


def attention_mask(tokens: torch.Tensor, causal: bool, group: int = 1) -> torch.Tensor:
    """``(B, 1, T * group, T * group)`` boolean, True = may attend; ``group`` states per token (e.g. one per
    code of an item): causal masking is by token, so a state sees every state of its own and earlier tokens."""
    t = tokens.shape[1] * group
    real = tokens != 0
    keys = (real.repeat_interleave(group, dim=1) if group > 1 else real)[:, None, None, :]
    eye = torch.eye(t, dtype=torch.bool)
    if not causal:
        return keys | eye
    position = torch.arange(tokens.shape[1]).repeat_interleave(group)
    return (keys & (position[None, :] <= position[:, None])) | eye


class TransformerEncoder(nn.Module):
    """Position embeddings + blocks over already-embedded items ``(B, T, D)``. Sequences are right-aligned:
    the last column is always position ``max_len - 1`` ("now"), column ``j`` is ``T - 1 - j`` steps earlier.
    With ``group > 1`` each item enters as ``group`` consecutive states ``(B, T * group, D)`` sharing its
    position (e.g. one per semantic-ID code); masking stays per item (:func:`attention_mask`)."""

    def __init__(self, dim: int, max_len: int, layers: int, heads: int, dropout: float,
                 style: Literal["sasrec", "bert"], causal: bool, group: int = 1) -> None:
        super().__init__()
        self.style, self.causal, self.max_len, self.group = style, causal, max_len, group
        self.pos = nn.Embedding(max_len, dim)
        nn.init.normal_(self.pos.weight, std=0.02 if style == "bert" else 1.0)  # BERT's initializer range
        self.blocks = nn.ModuleList(Block(dim, heads, dropout, style) for _ in range(layers))
        self.in_norm = nn.LayerNorm(dim, eps=1e-12) if style == "bert" else None
        self.out_norm = nn.LayerNorm(dim, eps=1e-8) if style == "sasrec" else None
        self.drop = nn.Dropout(dropout)

    def forward(self, emb: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        t, g = tokens.shape[1], self.group
        if t > self.max_len:
            raise ValueError(f"sequence of {t} positions is longer than max_len {self.max_len}")
        pos = self.pos(torch.arange(self.max_len - t, self.max_len))
        x = emb + (pos.repeat_interleave(g, dim=0) if g > 1 else pos)[None]
        if self.in_norm is not None:
            x = self.in_norm(x)
        real = ((tokens != 0).repeat_interleave(g, dim=1) if g > 1 else tokens != 0).unsqueeze(-1).to(x.dtype)
        x = self.drop(x) * real
        mask = attention_mask(tokens, self.causal, g)
        for block in self.blocks:
            x = block(x, mask, real)
        return self.out_norm(x) if self.out_norm is not None else x
