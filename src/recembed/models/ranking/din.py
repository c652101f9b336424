"""DIN: Deep Interest Network -- the user's behaviour sequence pooled by its relevance to the target.

Zhou, Zhu, Song, Fan, Zhu, Ma, Yan, Jin, Li and Gai, "Deep Interest Network for Click-Through Rate Prediction",
KDD 2018. Each behaviour-sequence field is paired with a target field (``din_pairs``; by default every
``sequence`` field with ``vocab_from`` is paired with that field: ``hist_items`` <-> ``item_id``,
``hist_cates`` <-> ``cate``, so both sides are rows of one embedding table). For target ``t`` and history
embeddings ``h_1..h_L`` the *activation unit* -- an MLP over ``[h_j, t, h_j - t, h_j * t]`` -- gives a weight
``a_j``, and the sequence enters as ``sum_j a_j h_j`` over its non-padding positions. As in the paper the weights
are not normalised (no softmax: the pooled vector's size carries how strongly the history matches). Every other
field is embedded as usual (:class:`~._layers.FieldEmbedding`), all field vectors are concatenated and an MLP
gives the logit.

Defaults follow FuxiCTR's DIN (``model_zoo/DIN``): MLP 512-128-64 with ReLU (``dnn_activation=dice`` for the
paper's Dice), activation unit with one hidden layer of 64 Dice units and a linear output, no softmax, no batch
norm; embedding width is the rankers' shared default (16). Deviations, all documented choices:

* the activation unit runs only on non-padding positions (padding weights are 0 exactly, and Dice's batch
  statistics are those of real behaviours; FuxiCTR feeds padding through the unit and multiplies by the mask);
* the paper's "out product" input is taken element-wise (``h * t``), as FuxiCTR and the authors' later code do;
* Dice (paper eq. 9) normalises with the batch's mean / variance (``eps = 1e-8``, the paper's) and uses running
  statistics at inference with PyTorch's momentum 0.1 (FuxiCTR: 0.01) -- an ml-100k epoch is only ~80 steps;
* the paper's mini-batch aware regulariser is replaced by the rankers' ``embedding_l2`` on looked-up rows (what
  it approximates; 0 by default, as FuxiCTR's ``embedding_regularizer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ...config import check
from ...errors import ConfigError
from ...ranking.schema import PAD, Schema
from ._layers import CTRModule, FieldEmbedding
from .base import Ranker, RankerConfig

Activation = Literal["relu", "dice", "prelu", "sigmoid"]


class Dice(nn.Module):
    """Data-adaptive activation (DIN, eq. 9): ``p(s) * s + (1 - p(s)) * alpha * s`` with ``p`` the sigmoid of the
    batch-normalised input (no affine part) and ``alpha`` learned per unit."""

    def __init__(self, units: int, eps: float = 1e-8, momentum: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(units, eps=eps, momentum=momentum, affine=False)
        self.alpha = nn.Parameter(torch.zeros(units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:  # one row has no batch variance: use the running statistics
            n = self.norm
            z = nn.functional.batch_norm(x, n.running_mean, n.running_var, training=False, eps=n.eps)
        else:
            z = self.norm(x)
        p = torch.sigmoid(z)
        return x * (p + self.alpha * (1 - p))


def activation(name: str, units: int) -> nn.Module:
    if name == "dice":
        return Dice(units)
    if name == "prelu":
        return nn.PReLU()
    if name == "sigmoid":
        return nn.Sigmoid()
    return nn.ReLU()


def tower(sizes: Sequence[int], act: str, dropout: float = 0.0, batch_norm: bool = False) -> nn.Sequential:
    """``Linear -> [BatchNorm] -> activation -> [Dropout]`` per consecutive pair of ``sizes`` (hidden layers only)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers.append(nn.Linear(a, b))
        if batch_norm:
            layers.append(nn.BatchNorm1d(b))
        layers.append(activation(act, b))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ActivationUnit(nn.Module):
    """DIN's local activation unit: target-aware weights of a behaviour sequence, and the weighted sum."""

    def __init__(self, dim: int, hidden: Sequence[int], act: str, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(tower([4 * dim, *hidden], act, dropout), nn.Linear(hidden[-1] if hidden else 4 * dim,
                                                                                    1))

    def weights(self, target: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` weights, 0 at padding; ``target (B, D)``, ``history (B, L, D)``, ``mask (B, L)`` bool."""
        out = history.new_zeros(mask.shape)
        if not bool(mask.any()):
            return out
        h = history[mask]  # (N, D): the real behaviours only
        t = target.unsqueeze(1).expand_as(history)[mask]
        out[mask] = self.net(torch.cat([h, t, h - t, h * t], dim=-1)).squeeze(-1)
        return out

    def forward(self, target: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (self.weights(target, history, mask).unsqueeze(-1) * history).sum(1)


def resolve_pairs(schema: Schema, pairs: Sequence[str]) -> list[tuple[str, str]]:
    """``[(sequence_field, target_field)]`` from ``"seq:target"`` strings, or every ``sequence`` field with
    ``vocab_from`` paired with that field when ``pairs`` is empty."""
    if not pairs:
        out = [(f.name, f.vocab_from) for f in schema.fields if f.kind == "sequence" and f.vocab_from]
        if not out:
            raise ConfigError("din needs a behaviour sequence: the data has no `sequence` field with vocab_from "
                              f"(fields: {[(f.name, f.kind) for f in schema.fields]}); set din_pairs=SEQ:TARGET")
        return out
    out = []
    for p in pairs:
        seq, sep, target = p.partition(":")
        if not sep:
            raise ConfigError(f"din_pairs: expected SEQUENCE_FIELD:TARGET_FIELD, got {p!r}")
        names = schema.names()
        for n in (seq, target):
            if n not in names:
                raise ConfigError(f"din_pairs: no field {n!r}; fields: {names}")
        if schema.field(seq).kind not in ("sequence", "tags"):
            raise ConfigError(f"din_pairs: {seq!r} is a {schema.field(seq).kind} field, not a sequence")
        if schema.field(target).kind != "categorical":
            raise ConfigError(f"din_pairs: the target {target!r} must be a categorical field")
        out.append((seq, target))
    seqs = [s for s, _ in out]
    if len(set(seqs)) != len(seqs):
        raise ConfigError(f"din_pairs: a sequence field is paired twice: {list(pairs)}")
    return out


@dataclass(frozen=True)
class DINConfig(RankerConfig):
    din_pairs: tuple[str, ...] = ()
    """``SEQUENCE:TARGET`` pairs attended (``hist_items:item_id,hist_cates:cate``); empty: every ``sequence``
    field with ``vocab_from`` paired with that field."""
    hidden_units: tuple[int, ...] = (512, 128, 64)
    """Widths of the MLP's hidden layers (FuxiCTR's DIN default)."""
    dnn_activation: Activation = "relu"
    """The MLP's activation (``dice``: the paper's)."""
    attention_units: tuple[int, ...] = (64,)
    """Hidden layers of the activation unit."""
    attention_activation: Activation = "dice"
    """The activation unit's hidden activation."""
    attention_dropout: float = 0.0
    """Dropout in the activation unit."""
    batch_norm: bool = False
    """Batch normalisation after each MLP hidden layer."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(all(h >= 1 for h in self.hidden_units), "hidden_units", f"must be >= 1, got {self.hidden_units}")
        check(all(h >= 1 for h in self.attention_units), "attention_units",
              f"must be >= 1, got {self.attention_units}")
        check(0 <= self.attention_dropout < 1, "attention_dropout", f"must be in [0, 1), got {self.attention_dropout}")


class DINModule(CTRModule):
    def __init__(self, schema: Schema, cfg: DINConfig) -> None:
        super().__init__()
        self.pairs = resolve_pairs(schema, cfg.din_pairs)
        self.embedding = FieldEmbedding(schema, cfg.embedding_dim)
        self.attention = nn.ModuleDict({seq: ActivationUnit(cfg.embedding_dim, cfg.attention_units,
                                                            cfg.attention_activation, cfg.attention_dropout)
                                        for seq, _ in self.pairs})
        width = self.embedding.num_fields * cfg.embedding_dim
        self.dnn = nn.Sequential(tower([width, *cfg.hidden_units], cfg.dnn_activation, cfg.net_dropout,
                                       cfg.batch_norm),
                                 nn.Linear(cfg.hidden_units[-1] if cfg.hidden_units else width, 1))

    def field_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, F, D)``: every field's vector, the paired sequences pooled by target attention."""
        emb = self.embedding
        pooled = {}
        for seq, target in self.pairs:
            idx = batch[seq]
            pooled[seq] = self.attention[seq](emb.lookup(target, batch[target]), emb.lookup(seq, idx), idx != PAD)
        return torch.stack([pooled[n] if n in pooled else emb.field_vector(n, batch) for n in emb.fields], dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.dnn(self.field_vectors(batch).flatten(1)).squeeze(-1)


class DIN(Ranker):
    name = "din"
    Config = DINConfig

    def _module(self, schema: Schema) -> DINModule:
        module = DINModule(schema, self.config)
        if not self.config.din_pairs and hasattr(self, "auto_resolved_"):
            self.auto_resolved_["din_pairs"] = [f"{s}:{t}" for s, t in module.pairs]
        return module
