"""Building blocks the CTR rankers share: per-field embeddings, the first-order (linear) term, an MLP.

:class:`FieldEmbedding` turns a batch (field name -> tensor, as :meth:`Encoded.batch` gives it) into one
``D``-wide vector per field, ``(B, F, D)``: a categorical field looks up its table; ``tags`` and ``sequence``
fields average the embeddings of their non-padding tokens (DIN-style models read sequences themselves through
:meth:`FieldEmbedding.lookup`); a numeric field scales a learned vector by its standardised value; a vector
field (content embeddings) goes through a linear projection. Fields whose ``vocab_from`` names another field
share that field's table, so a behaviour sequence of items lives in the same space as the target item.

How the token tables are laid out -- one per vocabulary, hashed, or one Unified Embedding table for all -- is
``RankerConfig.embedding_table`` (see :mod:`._tables`): ``FieldEmbedding(schema, dim)`` builds under the spec the
:class:`Ranker` set around ``_module`` (``table=`` overrides it), and :meth:`FieldEmbedding.lookup` reads any
layout, so a model written against one table per vocabulary runs unchanged on the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...ranking.schema import PAD, Schema
from ._tables import TableSet, TableSpec, current_spec, current_widths


class FieldEmbedding(nn.Module):
    def __init__(self, schema: Schema, dim: int, fields: Sequence[str] | None = None, *,
                 table: str | None = None) -> None:
        super().__init__()
        self.schema, self.dim = schema, dim
        self.fields = list(fields) if fields is not None else schema.names()
        self.kinds = {n: schema.field(n).kind for n in self.fields}
        self.table_of = {n: schema.table_of(n) for n in self.fields if self.kinds[n] in ("categorical", "tags",
                                                                                         "sequence")}
        self.table_spec = TableSpec.parse(table) if table is not None else current_spec()
        # one entry per vocabulary, shared by its fields (or the one unified table): see _tables
        vocabularies = {v: schema.cardinality(v) for v in dict.fromkeys(self.table_of.values())}
        self.tables = TableSet(self.table_spec, vocabularies, dim, current_widths())
        self.numeric = nn.ParameterDict({n: nn.Parameter(torch.randn(dim) * 0.01) for n in self.fields
                                         if self.kinds[n] == "numeric"})
        self.vectors = nn.ModuleDict({n: nn.Linear(schema.dims[n], dim) for n in self.fields
                                      if self.kinds[n] == "vector"})

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def lookup(self, name: str, idx: torch.Tensor) -> torch.Tensor:
        """Embeddings of token indices of field ``name`` (its table's), shape ``idx.shape + (D,)``."""
        return self.tables.lookup(self.table_of[name], idx)

    def field_vector(self, name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch[name]
        kind = self.kinds[name]
        if kind == "categorical":
            return self.lookup(name, x)
        if kind in ("tags", "sequence"):
            mask = (x != PAD).unsqueeze(-1).float()
            return (self.lookup(name, x) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if kind == "numeric":
            return x.unsqueeze(-1) * self.numeric[name]
        return self.vectors[name](x)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([self.field_vector(n, batch) for n in self.fields], dim=1)

    def penalty(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean over the batch of the squared norms of the embeddings it looked up."""
        total = torch.zeros(())
        for name in self.table_of:
            total = total + self.lookup(name, batch[name]).pow(2).sum()
        return total / max(1, len(next(iter(batch.values()))))


class FieldLinear(nn.Module):
    """The first-order term ``b + sum_f w_f(x_f)``: a scalar weight per token (tags / sequences: mean), per
    numeric field, and a linear map per vector field."""

    def __init__(self, schema: Schema, fields: Sequence[str] | None = None) -> None:
        super().__init__()
        self.emb = FieldEmbedding(schema, 1, fields)
        for table in self.emb.tables.values():
            nn.init.zeros_(table.weight)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.emb(batch).sum(dim=(1, 2)) + self.bias


def mlp(sizes: Sequence[int], dropout: float = 0.0, batch_norm: bool = False, last_activation: bool = True
        ) -> nn.Sequential:
    """``Linear -> [BatchNorm] -> ReLU -> [Dropout]`` for each consecutive pair of ``sizes``."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class CTRModule(nn.Module):
    """Base of the rankers' modules: ``embedding_penalty`` for the shared task's ``embedding_l2``."""

    embedding: FieldEmbedding

    def embedding_penalty(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embedding.penalty(batch)
