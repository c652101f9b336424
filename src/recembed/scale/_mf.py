"""MF-BPR's sharded twin: the user and item tables as one TorchRec EmbeddingBagCollection.

:class:`~recembed.training.tasks.BPRTask` scores a batch from the full ``(U, D)`` / ``(I, D)`` tables the module
returns, which no rank has once they are sharded. The twin looks up only the batch's rows instead -- the user,
the positive item and each of the ``k`` negatives as a feature (a bag of one id; the item features share the item
table) -- and :class:`ShardedBPRTask` computes the same loss from them (``softplus(-(s(u, i+) - s(u, i-)))``
averaged over the batch and negatives, plus ``reg_weight * (|u|^2 + |i+|^2 + |i-|^2) / (2 B)``), drawing the
same batches as the task it wraps. Not with ``item_bias`` (a width-1 table; refused).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .sharding import Table, padded_width, pooled_lookup


class ShardedMF(nn.Module):
    def __init__(self, ebc: nn.Module, negatives: int, dim: int) -> None:
        super().__init__()
        self.ebc, self.negatives, self.dim = ebc, negatives, dim

    def rows(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``u (B, D)``, ``p (B, D)``, ``n (B, k, D)``: the batch's rows, looked up where they live."""
        features = [("user", batch.users), ("pos", batch.pos_items)]
        features += [(f"neg{j}", batch.neg_items[:, j]) for j in range(self.negatives)]
        pooled = pooled_lookup(self.ebc, features, len(batch.users), batch.users.device, pad=None)
        n = torch.stack([pooled[f"neg{j}"][:, : self.dim] for j in range(self.negatives)], 1)
        return pooled["user"][:, : self.dim], pooled["pos"][:, : self.dim], n

    def idle(self, batch: Any) -> torch.Tensor:
        return sum(t.sum() for t in self.rows(batch)) * 0.0

    def copy_dense_into(self, plain: nn.Module) -> None:
        """MF has no dense weights: the tables are all of it."""


class ShardedBPRTask:
    """:class:`~recembed.training.tasks.BPRTask`'s batches and loss, on looked-up rows."""

    def __init__(self, task: Any) -> None:
        self.task = task

    def num_batches(self) -> int:
        return self.task.num_batches()

    def batches(self, epoch: int, rng: Any):  # noqa: ANN201
        return self.task.batches(epoch, rng)

    def loss(self, module: ShardedMF, batch: Any, epoch: int) -> torch.Tensor:
        u, p, n = module.rows(batch)
        diff = (u.unsqueeze(1) * (p.unsqueeze(1) - n)).sum(-1)  # (B, k)
        loss = nn.functional.softplus(-diff).mean()
        reg = self.task.reg_weight
        if reg > 0:
            loss = loss + reg * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (2 * len(batch.users))
        return loss


def convert_mf(module: nn.Module, task: Any) -> tuple[ShardedMF, ShardedBPRTask, list[Table]]:
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

    from ..training.tasks import BPRTask

    if not isinstance(module.item, torch.nn.Embedding):
        raise ConfigError("--shard: shards full tables; not with a compressed item_table (set item_table=full)")
    if module.bias is not None:
        raise ConfigError("--shard: not with item_bias=true (a width-1 bias table); set item_bias=false")
    if type(task) is not BPRTask or task.num_negatives < 1:
        raise ConfigError(f"--shard: shards MF trained with the BPR task, not {type(task).__name__}")
    dim, k = module.user.embedding_dim, task.num_negatives
    configs = [EmbeddingBagConfig(name="user", embedding_dim=padded_width(dim), num_embeddings=module.user.num_embeddings,
                                  feature_names=["user"], pooling=PoolingType.SUM),
               EmbeddingBagConfig(name="item", embedding_dim=padded_width(dim), num_embeddings=module.item.num_embeddings,
                                  feature_names=["pos", *(f"neg{j}" for j in range(k))], pooling=PoolingType.SUM)]
    tables = [Table("user", module.user.weight, dim, padded_width(dim), module.user.num_embeddings),
              Table("item", module.item.weight, dim, padded_width(dim), module.item.num_embeddings)]
    ebc = EmbeddingBagCollection(tables=configs, device=torch.device("meta"))
    return ShardedMF(ebc, k, dim), ShardedBPRTask(task), tables
