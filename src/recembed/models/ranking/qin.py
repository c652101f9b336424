"""QIN: Quadratic Interest Network -- multimodal target attention over the behaviour sequence, then a
quadratic network.

Li, Li, Zhang, Zhang, Yu, Sang and Zhang, "Quadratic Interest Network for Multimodal Click-Through Rate
Prediction", WWW 2025 EReL@MIR workshop (arXiv 2504.17699; 2nd place of its multimodal CTR challenge). Each item
is described by an *item vector* ``e = [id embedding; W_f c_f for each content field f]`` -- its ID embedding
next to a learned projection of every content vector (text / image embeddings, ``vector`` fields). The target's
vector ``t`` comes from the row; the history items' vectors from the same ID table and from an
**item -> content-vector table** that the model builds from the training rows (``item_id`` -> the row's vector
fields; history items never seen as a training target get zeros) and keeps as buffers, saved with the weights.

* **Adaptive sparse target attention (ASTA)**: ``q = W_q t``, ``k_j = W_k e_j``, ``v_j = W_v e_j``, weights
  ``a_j = ReLU(q . k_j / sqrt(d_a))`` over the non-padding positions -- ReLU instead of softmax, so a history
  can receive no attention at all and the weights stay sparse -- and the interest ``u = W_o sum_j a_j v_j + t``
  (residual to the target). ``d_a`` is twice the item-vector width unless ``attention_dim`` is set (the
  authors' code).
* **Quadratic neural network (QNN)** over ``x_0 = [other fields' embeddings; t; u]``: ``L`` residual layers
  ``x <- x + Dropout(PReLU(BN(x * (W x + b))))`` -- each a product of the input with a linear map of itself, so
  layer ``l`` reaches degree ``2^l`` interactions among the target's content, the interest and the other fields --
  then ``logit = w^T x_L + b``.

Defaults: 3 quadratic layers, batch norm on (the authors' released config uses batch norm; 3 is their model's
default depth, the challenge run used 4), the rankers' shared embedding width (16), learning rate, patience and
dropout (0). Deviations, documented choices:

* the authors' "Khatri-Rao" layer sums ``R`` products ``x * (W_r x + b_r)``; that equals one product with
  ``W = sum_r W_r`` (a re-parameterisation), so it is written as one (no ``num_row``);
* the authors feed item-side categorical features into the item vector too; here the item vector is the ID plus
  the content fields, and the item's other fields enter ``x_0`` as ordinary fields (only the item ID and the
  content vectors have a per-history-item lookup);
* the paper's pseudo-labelling and learning-rate-on-plateau schedule are challenge tricks, not the model, and
  are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...config import check
from ...errors import ConfigError
from ...ranking.schema import OOV, PAD, Encoded, Schema
from ._layers import CTRModule, FieldEmbedding
from .base import Ranker, RankerConfig


class SparseTargetAttention(nn.Module):
    """ASTA: ReLU-gated scaled dot-product attention of the target over the history, residual to the target."""

    def __init__(self, dim: int, attention_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, attention_dim, bias=False)
        self.key = nn.Linear(dim, attention_dim, bias=False)
        self.value = nn.Linear(dim, attention_dim, bias=False)
        self.out = nn.Linear(attention_dim, dim)
        self.scale = attention_dim ** -0.5

    def weights(self, target: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("bd,bld->bl", self.query(target), self.key(history)) * self.scale
        return torch.relu(scores) * mask

    def forward(self, target: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = self.weights(target, history, mask)
        return self.out(torch.einsum("bl,bld->bd", w, self.value(history))) + target


class QuadraticNetwork(nn.Module):
    """Residual quadratic layers ``x + act(norm(x * (W x + b)))``, then a linear read-out."""

    def __init__(self, dim: int, num_layers: int, dropout: float, batch_norm: bool) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(dim) if batch_norm else nn.Identity() for _ in range(num_layers))
        self.acts = nn.ModuleList(nn.PReLU() for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, norm, act in zip(self.linears, self.norms, self.acts):
            x = x + self.dropout(act(norm(x * linear(x))))
        return self.fc(x).squeeze(-1)


@dataclass(frozen=True)
class QINConfig(RankerConfig):
    sequence_field: str = ""
    """The behaviour sequence attended (empty: the first ``sequence`` field with ``vocab_from``); its
    ``vocab_from`` field is the target item."""
    content_fields: tuple[str, ...] = ()
    """Item content ``vector`` fields in the item vector (empty: every vector field)."""
    attention_dim: int = 0
    """Width of the attention's query / key / value (0: twice the item vector's)."""
    num_layers: int = 3
    """Quadratic layers."""
    batch_norm: bool = True
    """Batch normalisation in each quadratic layer."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.attention_dim >= 0, "attention_dim", f"must be >= 0, got {self.attention_dim}")
        check(self.num_layers >= 0, "num_layers", f"must be >= 0, got {self.num_layers}")


def resolve_fields(schema: Schema, cfg: QINConfig) -> tuple[str, str, list[str]]:
    """``(sequence field, target item field, content fields)``."""
    seq = cfg.sequence_field
    if not seq:
        seqs = [f.name for f in schema.fields if f.kind == "sequence" and f.vocab_from]
        if not seqs:
            raise ConfigError("qin needs a behaviour sequence: the data has no `sequence` field with vocab_from "
                              f"(fields: {[(f.name, f.kind) for f in schema.fields]})")
        seq = seqs[0]
    if seq not in schema.names():
        raise ConfigError(f"sequence_field: no field {seq!r}; fields: {schema.names()}")
    f = schema.field(seq)
    if f.kind != "sequence" or not f.vocab_from:
        raise ConfigError(f"sequence_field: {seq!r} must be a sequence field with vocab_from (the item field)")
    vectors = schema.names("vector")
    content = list(cfg.content_fields) or vectors
    for c in content:
        if c not in vectors:
            raise ConfigError(f"content_fields: {c!r} is not a vector field; vector fields: {vectors}")
    return seq, f.vocab_from, content


class QINModule(CTRModule):
    def __init__(self, schema: Schema, cfg: QINConfig) -> None:
        super().__init__()
        self.seq, self.item, self.content = resolve_fields(schema, cfg)
        d = cfg.embedding_dim
        self.embedding = FieldEmbedding(schema, d)
        self.others = [n for n in self.embedding.fields if n not in {self.seq, self.item, *self.content}]
        rows = schema.cardinality(self.item)
        for i, name in enumerate(self.content):  # item -> content vector, filled from the training rows
            self.register_buffer(f"content_table_{i}", torch.zeros(rows, schema.dims[name]))
        info = (1 + len(self.content)) * d
        self.attention = SparseTargetAttention(info, cfg.attention_dim or 2 * info)
        self.qnn = QuadraticNetwork(len(self.others) * d + 2 * info, cfg.num_layers, cfg.net_dropout, cfg.batch_norm)

    def content_table(self, i: int) -> torch.Tensor:
        return getattr(self, f"content_table_{i}")

    def fill_tables(self, train: Encoded) -> None:
        items = train.arrays[self.item]
        known, first = np.unique(items, return_index=True)
        for i, name in enumerate(self.content):
            table = torch.zeros_like(self.content_table(i))
            table[torch.from_numpy(known)] = torch.from_numpy(np.asarray(train.arrays[name][first], np.float32))
            table[[PAD, OOV]] = 0.0  # padding and the OOV bucket (many items) carry no content
            self.content_table(i).copy_(table)

    def target_vector(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding
        parts = [emb.lookup(self.item, batch[self.item])] + [emb.vectors[c](batch[c]) for c in self.content]
        return torch.cat(parts, dim=-1)

    def history_vectors(self, idx: torch.Tensor) -> torch.Tensor:
        emb = self.embedding
        parts = [emb.lookup(self.seq, idx)] + [emb.vectors[c](self.content_table(i)[idx])
                                               for i, c in enumerate(self.content)]
        return torch.cat(parts, dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        idx = batch[self.seq]
        t = self.target_vector(batch)
        u = self.attention(t, self.history_vectors(idx), (idx != PAD).float())
        parts = [self.embedding.field_vector(n, batch) for n in self.others]
        return self.qnn(torch.cat([*parts, t, u], dim=-1))


class QIN(Ranker):
    name = "qin"
    Config = QINConfig

    def _module(self, schema: Schema) -> QINModule:
        module = QINModule(schema, self.config)
        if hasattr(self, "auto_resolved_"):
            if not self.config.sequence_field:
                self.auto_resolved_["sequence_field"] = module.seq
            if not self.config.content_fields:
                self.auto_resolved_["content_fields"] = module.content
        return module

    def _prepare(self, module: nn.Module, train: Encoded) -> None:
        assert isinstance(module, QINModule)
        module.fill_tables(train)
