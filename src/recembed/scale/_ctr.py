"""The rankers' sharded twin: every :class:`FieldEmbedding`'s token tables as one TorchRec EmbeddingBagCollection.

A ranker's module reads its token fields through :class:`~recembed.models.ranking._layers.FieldEmbedding`
(categorical: a row; tags / sequences: the mean of the non-padding tokens' rows). The twin is a deep copy of the
module in which each FieldEmbedding (the second-order ``embedding`` and the first-order ``linear.emb`` alike)
gives its fields the vectors the collection pooled for the batch: one collection table per (FieldEmbedding,
vocabulary), one collection feature per field, MEAN pooling with padding ids dropped -- the same vectors as the
original's (an id is a bag of one; an empty bag pools to zeros, as the padding row). Numeric and vector fields
stay dense in the copy. Rankers that read per-token embeddings (DIN's attention, via ``FieldEmbedding.lookup``)
or the embedding L2 penalty are refused with a ConfigError naming ``--shard``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..models.ranking._layers import FieldEmbedding
from .sharding import Table, padded_width, pooled_lookup


class ShardedFieldEmbedding(FieldEmbedding):
    """A FieldEmbedding whose token fields read ``pooled`` (set by :class:`ShardedCTR` before every forward)."""

    pooled: dict[str, torch.Tensor]

    def field_vector(self, name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if name in self.table_of:
            return self.pooled[name]
        return super().field_vector(name, batch)

    def lookup(self, name: str, idx: torch.Tensor) -> torch.Tensor:
        raise ConfigError("--shard: this ranker reads per-token embeddings (attention over a sequence), which the "
                          "sharded bag tables do not give; shard a ranker that pools its fields (deepfm, fm, lr, "
                          "dcnv2, ...) or train it without --shard")

    def penalty(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise ConfigError("--shard: not with embedding_l2 > 0 (the penalty reads whole tables); set embedding_l2=0")


class ShardedCTR(nn.Module):
    """The twin: ``model`` (the copy, tables removed) fed by ``ebc`` (the collection DMP shards)."""

    def __init__(self, model: nn.Module, ebc: nn.Module, features: list[tuple[str, str, str, int]]) -> None:
        super().__init__()
        self.model, self.ebc = model, ebc
        self.features = features  # (collection feature key, FieldEmbedding path, field, width)
        self.owners = dict(model.named_modules())

    def embed(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        first = next(iter(batch.values()))
        pooled = pooled_lookup(self.ebc, [(key, batch[field]) for key, _, field, _ in self.features], len(first),
                               first.device)
        for key, path, field, dim in self.features:
            self.owners[path].pooled[field] = pooled[key][:, :dim]
        return pooled

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.embed(batch)
        return self.model(batch)

    def idle(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A rank without rows in this batch: the lookups' collectives, a zero loss."""
        return sum(v.sum() for v in self.embed(batch[0] if isinstance(batch, tuple) else batch).values()) * 0.0

    def copy_dense_into(self, plain: nn.Module) -> None:
        _, unexpected = plain.load_state_dict(self.model.state_dict(), strict=False)
        if unexpected:
            raise RuntimeError(f"--shard: the twin has weights the model does not: {unexpected}")


def convert_ctr(module: nn.Module, task: Any) -> tuple[ShardedCTR, Any, list[Table]]:
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

    owners = [(path, m) for path, m in module.named_modules() if isinstance(m, FieldEmbedding)]
    if getattr(task, "l2", 0) > 0:
        raise ConfigError("--shard: not with embedding_l2 > 0 (the penalty reads whole tables); set embedding_l2=0")
    configs, tables, features = [], [], []
    for path, fe in owners:
        if fe.table_spec.mode != "field" or any(type(t) is not nn.Embedding for t in fe.tables.values()):
            raise ConfigError(f"--shard: shards one table per vocabulary (embedding_table=field, no field_dims); "
                              f"got embedding_table={fe.table_spec} with {type(next(iter(fe.tables.values()))).__name__}")
        prefix = path.replace(".", "_") or "root"
        for vocab, table in fe.tables.items():
            name = f"{prefix}__{vocab}"
            fields = [f for f, v in fe.table_of.items() if v == vocab]
            keys = [f"{prefix}__field__{f}" for f in fields]
            configs.append(EmbeddingBagConfig(name=name, embedding_dim=padded_width(fe.dim),
                                              num_embeddings=table.num_embeddings, feature_names=keys,
                                              pooling=PoolingType.MEAN))
            tables.append(Table(name, table.weight, fe.dim, padded_width(fe.dim), table.num_embeddings))
            features += [(k, path, f, fe.dim) for k, f in zip(keys, fields)]
    # the copy without the tables (and without a second copy of the schemas' vocabularies)
    saved = {path: fe.tables for path, fe in owners}
    memo = {id(fe.schema): fe.schema for _, fe in owners}
    try:
        for _, fe in owners:
            fe.tables = nn.ModuleDict()
        twin = copy.deepcopy(module, memo)
    finally:
        for path, fe in owners:
            fe.tables = saved[path]
    for path, fe in twin.named_modules():
        if isinstance(fe, FieldEmbedding):
            fe.__class__ = ShardedFieldEmbedding
            fe.pooled = {}
    ebc = EmbeddingBagCollection(tables=configs, device=torch.device("meta"))
    return ShardedCTR(twin, ebc, features), task, tables
