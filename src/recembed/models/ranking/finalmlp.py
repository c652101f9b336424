"""FinalMLP: an enhanced two-stream MLP model for CTR prediction.

Mao, Zhu, Su, Cai, Li and Dong, "FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction", AAAI 2023. Two
MLPs read the same concatenated field embeddings ``e``, each through its own stream-specific feature gate
(feature selection, eq. 3): ``e_k = 2 sigmoid(MLP_g^k(c_k)) * e``, ``c_k`` the embeddings of the stream's
context fields (``fs1_context`` / ``fs2_context``), or a learned vector when none is named. The streams'
outputs ``o_1``, ``o_2`` are fused by multi-head bilinear aggregation (eq. 4-5): both are cut into ``num_heads``
chunks and ``logit = b + w_1^T o_1 + w_2^T o_2 + sum_h o_1h^T W_h o_2h``. ``use_fs=false`` feeds ``e`` to both
streams ungated (the paper's DualMLP with bilinear fusion).

Defaults: FuxiCTR's ``FinalMLP_default`` (embedding_dim 16, MLP 1 1024-512, MLP 2 1024-512-256, ReLU, no
dropout, no batch norm, feature selection on with gate MLPs of 1024-512 and no context fields, 2 heads, no
regularisation, lr 1e-3). Deviations: batches of 1,024 rows (``RankerConfig``'s, shrunk by ``min_steps`` on
small data; FuxiCTR: 10,000); one ``net_dropout`` / ``batch_norm`` for both streams (FuxiCTR: ``mlp1_dropout``,
``mlp2_dropout``, ...; all 0 / off by default); linear layers keep PyTorch's default initialisation (FuxiCTR:
Xavier normal, zero bias; the bilinear tensors are Xavier normal here too); early stopping on valid AUC with
patience 2 and no learning rate decay on plateau (FuxiCTR: AUC - logloss, x0.1 decay); tags / sequences enter as
the mean of their tokens' embeddings (FuxiCTR's pooling); without context fields a gate is the same for every
row, so it is computed once per batch (equal to FuxiCTR's per-row repetition of the learned vector).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...config import check
from ...errors import ConfigError
from ...ranking.schema import Schema
from ._layers import CTRModule, FieldEmbedding, mlp
from .base import Ranker, RankerConfig


@dataclass(frozen=True)
class FinalMLPConfig(RankerConfig):
    embedding_dim: int = 16
    """Width of every field's embedding (FuxiCTR's FinalMLP default: 16)."""
    mlp1_hidden_units: tuple[int, ...] = (1024, 512)
    """Widths of stream 1's hidden layers."""
    mlp2_hidden_units: tuple[int, ...] = (1024, 512, 256)
    """Widths of stream 2's hidden layers."""
    batch_norm: bool = False
    """Batch normalisation after each hidden layer of both streams."""
    use_fs: bool = True
    """Stream-specific feature gates (feature selection); off: both streams read the raw embeddings."""
    fs_hidden_units: tuple[int, ...] = (1024, 512)
    """Widths of each gate MLP's hidden layers."""
    fs1_context: tuple[str, ...] = ()
    """Fields whose embeddings condition stream 1's gate (empty: a learned vector)."""
    fs2_context: tuple[str, ...] = ()
    """Fields whose embeddings condition stream 2's gate (empty: a learned vector)."""
    num_heads: int = 2
    """Heads of the bilinear fusion (both streams' output widths must be multiples of it)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("mlp1_hidden_units", "mlp2_hidden_units", "fs_hidden_units"):
            units = getattr(self, key)
            check(all(h >= 1 for h in units), key, f"must be >= 1, got {units}")
        check(len(self.mlp1_hidden_units) >= 1, "mlp1_hidden_units", "needs at least one layer")
        check(len(self.mlp2_hidden_units) >= 1, "mlp2_hidden_units", "needs at least one layer")
        check(self.num_heads >= 1, "num_heads", f"must be >= 1, got {self.num_heads}")
        for key in ("mlp1_hidden_units", "mlp2_hidden_units"):
            last = getattr(self, key)[-1]
            check(last % self.num_heads == 0, key, f"the last width ({last}) must be a multiple of "
                                                   f"num_heads={self.num_heads}")


class FeatureGate(nn.Module):
    """``2 * sigmoid(MLP(context))`` over the ``width`` inputs of a stream; the context: ``fields``' embeddings
    (their own tables) or, with no fields, one learned vector shared by every row."""

    def __init__(self, schema: Schema, fields: tuple[str, ...], dim: int, hidden: tuple[int, ...], width: int
                 ) -> None:
        super().__init__()
        self.context = FieldEmbedding(schema, dim, fields) if fields else None
        self.bias = None if fields else nn.Parameter(torch.zeros(1, dim))
        self.gate = mlp([dim * max(1, len(fields)), *hidden, width], last_activation=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.context(batch).flatten(1) if self.context is not None else self.bias
        return 2 * torch.sigmoid(self.gate(x))


class BilinearFusion(nn.Module):
    """``b + w_1^T x + w_2^T y + sum_h x_h^T W_h y_h`` over ``heads`` chunks of ``x`` and ``y``."""

    def __init__(self, dx: int, dy: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.wx = nn.Linear(dx, 1)
        self.wy = nn.Linear(dy, 1, bias=False)
        self.W = nn.Parameter(nn.init.xavier_normal_(torch.empty(heads, dx // heads, dy // heads)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xh = x.view(len(x), self.heads, -1)
        yh = y.view(len(y), self.heads, -1)
        bilinear = torch.einsum("bhi,hij,bhj->b", xh, self.W, yh)
        return self.wx(x).squeeze(-1) + self.wy(y).squeeze(-1) + bilinear


class FinalMLPModule(CTRModule):
    def __init__(self, schema: Schema, cfg: FinalMLPConfig) -> None:
        super().__init__()
        names = schema.names()
        for key in ("fs1_context", "fs2_context"):
            unknown = [n for n in getattr(cfg, key) if n not in names]
            if unknown:
                raise ConfigError(f"{key}: no field(s) {unknown} in the data; fields: {names}")
        self.embedding = FieldEmbedding(schema, cfg.embedding_dim)
        width = self.embedding.num_fields * cfg.embedding_dim
        self.mlp1 = mlp([width, *cfg.mlp1_hidden_units], cfg.net_dropout, cfg.batch_norm)
        self.mlp2 = mlp([width, *cfg.mlp2_hidden_units], cfg.net_dropout, cfg.batch_norm)
        self.gates = None
        if cfg.use_fs:
            self.gates = nn.ModuleList(FeatureGate(schema, ctx, cfg.embedding_dim, cfg.fs_hidden_units, width)
                                       for ctx in (cfg.fs1_context, cfg.fs2_context))
        self.fusion = BilinearFusion(cfg.mlp1_hidden_units[-1], cfg.mlp2_hidden_units[-1], cfg.num_heads)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        e = self.embedding(batch).flatten(1)
        e1 = e2 = e
        if self.gates is not None:
            e1, e2 = e * self.gates[0](batch), e * self.gates[1](batch)
        return self.fusion(self.mlp1(e1), self.mlp2(e2))

    def embedding_penalty(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = self.embedding.penalty(batch)
        for gate in self.gates or ():
            if gate.context is not None:
                total = total + gate.context.penalty(batch)
        return total


class FinalMLP(Ranker):
    name = "finalmlp"
    Config = FinalMLPConfig

    def _module(self, schema: Schema) -> FinalMLPModule:
        return FinalMLPModule(schema, self.config)
