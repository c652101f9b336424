"""AutoInt: automatic feature interaction learning via self-attentive neural networks.

Song, Shi, Xiao, Duan, Xu, Zhang and Tang, "AutoInt: Automatic Feature Interaction Learning via Self-Attentive
Neural Networks", CIKM 2019. Each field's embedding is a token; ``attention_layers`` layers of multi-head
self-attention over the fields (eq. 5-7) let every field attend to every other, each layer's output being
``ReLU(concat_h(softmax(Q_h K_h^T) V_h) + W_res e)`` (the residual projected when the width changes, eq. 8).
The last layer's field vectors, concatenated, go through a logit layer (eq. 9). ``use_dnn`` adds a feed-forward
network over the concatenated embeddings to the logit -- the paper's AutoInt+ (section 5.6); ``use_wide`` adds
the first-order (LR) term.

Defaults: FuxiCTR's ``AutoInt_default`` (embedding_dim 40, 3 attention layers, 2 heads, attention_dim 40,
residual on, no scaling of the scores, no layer norm, no wide part, and a DNN of 400-400 -- so the default is
AutoInt+, ``use_dnn=false`` the paper's plain AutoInt; no dropout, no regularisation, lr 1e-3). Deviations:
batches of 1,024 rows (``RankerConfig``'s, shrunk by ``min_steps`` on small data; FuxiCTR: 10,000); linear layers
keep PyTorch's default initialisation (FuxiCTR: Xavier normal); early stopping on valid AUC with patience 2 and no
learning rate decay on plateau (FuxiCTR: AUC - logloss, x0.1 decay); tags / sequences enter as the mean of their
tokens' embeddings (FuxiCTR's pooling); ``net_dropout`` applies to the attention weights and the DNN (as FuxiCTR).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...config import check
from ...ranking.schema import Schema
from ._layers import CTRModule, FieldEmbedding, FieldLinear, mlp
from .base import Ranker, RankerConfig


@dataclass(frozen=True)
class AutoIntConfig(RankerConfig):
    embedding_dim: int = 40
    """Width of every field's embedding (FuxiCTR's AutoInt default: 40)."""
    attention_layers: int = 3
    """Stacked self-attention layers over the fields."""
    num_heads: int = 2
    """Attention heads per layer."""
    attention_dim: int = 40
    """Width of each layer's output per field (all heads together; a multiple of ``num_heads``)."""
    use_residual: bool = True
    """Add each layer's (projected) input to its attention output."""
    use_scale: bool = False
    """Divide the attention scores by sqrt(head width) (the paper does not)."""
    layer_norm: bool = False
    """Layer normalisation of each attention layer's output (before the ReLU)."""
    use_dnn: bool = True
    """AutoInt+: add an MLP over the concatenated embeddings to the logit (FuxiCTR's default has it)."""
    dnn_hidden_units: tuple[int, ...] = (400, 400)
    """Widths of the AutoInt+ MLP's hidden layers."""
    batch_norm: bool = False
    """Batch normalisation after each hidden layer of the AutoInt+ MLP."""
    use_wide: bool = False
    """Add the first-order (logistic regression) term to the logit."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.attention_layers >= 1, "attention_layers", f"must be >= 1, got {self.attention_layers}")
        check(self.num_heads >= 1, "num_heads", f"must be >= 1, got {self.num_heads}")
        check(self.attention_dim >= 1 and self.attention_dim % self.num_heads == 0, "attention_dim",
              f"must be a positive multiple of num_heads={self.num_heads}, got {self.attention_dim}")
        check(all(h >= 1 for h in self.dnn_hidden_units), "dnn_hidden_units",
              f"must be >= 1, got {self.dnn_hidden_units}")


class FieldSelfAttention(nn.Module):
    """One interacting layer: multi-head self-attention over the fields ``(B, F, d_in) -> (B, F, d_out)``."""

    def __init__(self, d_in: int, d_out: int, heads: int, dropout: float, residual: bool, scale: bool,
                 layer_norm: bool) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, d_out // heads
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=False)
        self.res = (nn.Linear(d_in, d_out, bias=False) if d_in != d_out else nn.Identity()) if residual else None
        self.scale = self.head_dim ** -0.5 if scale else 1.0
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm = nn.LayerNorm(d_out) if layer_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, F, _ = x.shape
        q, k, v = (t.view(B, F, self.heads, self.head_dim).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        attn = self.dropout(torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(B, F, self.heads * self.head_dim)
        if self.res is not None:
            out = out + self.res(x)
        return torch.relu(self.norm(out))


class AutoIntModule(CTRModule):
    def __init__(self, schema: Schema, cfg: AutoIntConfig) -> None:
        super().__init__()
        self.embedding = FieldEmbedding(schema, cfg.embedding_dim)
        F, D = self.embedding.num_fields, cfg.embedding_dim
        self.attention = nn.Sequential(*(
            FieldSelfAttention(D if i == 0 else cfg.attention_dim, cfg.attention_dim, cfg.num_heads,
                               cfg.net_dropout, cfg.use_residual, cfg.use_scale, cfg.layer_norm)
            for i in range(cfg.attention_layers)))
        self.fc = nn.Linear(F * cfg.attention_dim, 1)
        self.dnn = None
        if cfg.use_dnn:
            hidden = list(cfg.dnn_hidden_units)
            self.dnn = nn.Sequential(mlp([F * D, *hidden], cfg.net_dropout, cfg.batch_norm),
                                     nn.Linear(hidden[-1] if hidden else F * D, 1))
        self.linear = FieldLinear(schema) if cfg.use_wide else None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        e = self.embedding(batch)
        logit = self.fc(self.attention(e).flatten(1)).squeeze(-1)
        if self.dnn is not None:
            logit = logit + self.dnn(e.flatten(1)).squeeze(-1)
        if self.linear is not None:
            logit = logit + self.linear(batch)
        return logit


class AutoInt(Ranker):
    name = "autoint"
    Config = AutoIntConfig

    def _module(self, schema: Schema) -> AutoIntModule:
        return AutoIntModule(schema, self.config)
