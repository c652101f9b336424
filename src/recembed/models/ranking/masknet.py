"""MaskNet: feature-wise multiplication in CTR models through instance-guided masks.

Wang, She and Zhang, "MaskNet: Introducing Feature-Wise Multiplication to CTR Ranking Models by Instance-Guided
Mask", DLP-KDD 2021 (arXiv:2102.07619). An instance-guided mask ``V_mask = W_2 ReLU(W_1 V_emb + b_1) + b_2``
(eq. 2, an aggregation and a projection layer over the concatenated embeddings ``V_emb``) multiplies a block's
input element-wise; a MaskBlock is ``ReLU(LN(W_i (V_mask * V_in)))`` (eq. 6-8). The first block's input is the
layer-normalised embeddings (each field's vector normalised on its own, eq. 5). ``model_type``: ``serial`` --
MaskBlocks stacked, block ``i`` of width ``hidden_units[i]`` reading the previous block's output (its mask still
computed from ``V_emb``), then the logit layer (SerialMaskNet, fig. 3); ``parallel`` -- ``parallel_num_blocks``
MaskBlocks of width ``parallel_block_dim`` side by side on the embeddings, concatenated, then an MLP of
``hidden_units`` and the logit layer (ParallelMaskNet, fig. 4). ``reduction_ratio`` sets the aggregation
layer's width as a multiple of the mask's.

Defaults: FuxiCTR's ``MaskNet_default`` (embedding_dim 40, SerialMaskNet, blocks 400-400-400, 1 parallel block of
64, reduction ratio 1, layer norm of the embeddings and in the blocks, no dropout, no regularisation, lr 1e-3).
Deviations: batches of 1,024 rows (``RankerConfig``'s, shrunk by ``min_steps`` on small data; FuxiCTR: 4,096);
linear layers keep PyTorch's default initialisation (FuxiCTR: Xavier normal, zero bias); early stopping on valid
AUC with patience 2 and no learning rate decay on plateau (FuxiCTR: x0.1 decay); tags / sequences enter as the
mean of their tokens' embeddings (FuxiCTR's pooling); the MaskBlocks' hidden layer has no bias (as FuxiCTR: the
layer norm that follows would cancel it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ...config import check
from ...ranking.schema import Schema
from ._layers import CTRModule, FieldEmbedding, mlp
from .base import Ranker, RankerConfig


@dataclass(frozen=True)
class MaskNetConfig(RankerConfig):
    embedding_dim: int = 40
    """Width of every field's embedding (FuxiCTR's MaskNet default: 40)."""
    model_type: Literal["serial", "parallel"] = "serial"
    """``serial``: MaskBlocks stacked; ``parallel``: MaskBlocks side by side, then an MLP."""
    hidden_units: tuple[int, ...] = (400, 400, 400)
    """``serial``: the MaskBlocks' output widths; ``parallel``: the hidden layers of the MLP after the blocks."""
    parallel_num_blocks: int = 1
    """``parallel``: MaskBlocks side by side."""
    parallel_block_dim: int = 64
    """``parallel``: output width of each MaskBlock."""
    reduction_ratio: float = 1.0
    """Width of the mask's aggregation layer as a multiple of the mask's width."""
    emb_layernorm: bool = True
    """Layer-normalise each field's embedding before the first block."""
    net_layernorm: bool = True
    """Layer normalisation inside each MaskBlock (before its ReLU)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(all(h >= 1 for h in self.hidden_units), "hidden_units", f"must be >= 1, got {self.hidden_units}")
        check(self.model_type == "parallel" or len(self.hidden_units) >= 1, "hidden_units",
              "a serial MaskNet needs at least one block width")
        check(self.parallel_num_blocks >= 1, "parallel_num_blocks", f"must be >= 1, got {self.parallel_num_blocks}")
        check(self.parallel_block_dim >= 1, "parallel_block_dim", f"must be >= 1, got {self.parallel_block_dim}")
        check(self.reduction_ratio > 0, "reduction_ratio", f"must be > 0, got {self.reduction_ratio}")


class MaskBlock(nn.Module):
    """``ReLU(LN(W (mask(V_emb) * V_in)))``: the mask from the embeddings, the input of width ``d_in``."""

    def __init__(self, d_emb: int, d_in: int, d_out: int, ratio: float, layer_norm: bool, dropout: float) -> None:
        super().__init__()
        agg = max(1, int(round(d_in * ratio)))
        self.mask = nn.Sequential(nn.Linear(d_emb, agg), nn.ReLU(), nn.Linear(agg, d_in))
        layers: list[nn.Module] = [nn.Linear(d_in, d_out, bias=False)]
        if layer_norm:
            layers.append(nn.LayerNorm(d_out))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.hidden = nn.Sequential(*layers)

    def forward(self, v_emb: torch.Tensor, v_in: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.mask(v_emb) * v_in)


class FieldLayerNorm(nn.Module):
    """Layer normalisation of each field's vector ``(B, F, D)``, with its own gain and bias per field."""

    def __init__(self, fields: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(fields, dim))
        self.bias = nn.Parameter(torch.zeros(fields, dim))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(e, e.shape[-1:]) * self.weight + self.bias


class MaskNetModule(CTRModule):
    def __init__(self, schema: Schema, cfg: MaskNetConfig) -> None:
        super().__init__()
        self.embedding = FieldEmbedding(schema, cfg.embedding_dim)
        width = self.embedding.num_fields * cfg.embedding_dim
        self.emb_norm = FieldLayerNorm(self.embedding.num_fields, cfg.embedding_dim) if cfg.emb_layernorm else None
        self.serial = cfg.model_type == "serial"
        args = (cfg.reduction_ratio, cfg.net_layernorm, cfg.net_dropout)
        if self.serial:
            sizes = [width, *cfg.hidden_units]
            self.blocks = nn.ModuleList(MaskBlock(width, a, b, *args) for a, b in zip(sizes[:-1], sizes[1:]))
            self.dnn = nn.Identity()
            out = sizes[-1]
        else:
            self.blocks = nn.ModuleList(MaskBlock(width, width, cfg.parallel_block_dim, *args)
                                        for _ in range(cfg.parallel_num_blocks))
            concat = cfg.parallel_num_blocks * cfg.parallel_block_dim
            self.dnn = mlp([concat, *cfg.hidden_units], cfg.net_dropout)
            out = cfg.hidden_units[-1] if cfg.hidden_units else concat
        self.fc = nn.Linear(out, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        e = self.embedding(batch)
        v_emb = e.flatten(1)
        v = (self.emb_norm(e) if self.emb_norm is not None else e).flatten(1)
        if self.serial:
            for block in self.blocks:
                v = block(v_emb, v)
            h = v
        else:
            h = self.dnn(torch.cat([block(v_emb, v) for block in self.blocks], dim=-1))
        return self.fc(h).squeeze(-1)


class MaskNet(Ranker):
    name = "masknet"
    Config = MaskNetConfig

    def _module(self, schema: Schema) -> MaskNetModule:
        return MaskNetModule(schema, self.config)
