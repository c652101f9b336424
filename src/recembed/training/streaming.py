"""MF-BPR trained from a split on disk (:mod:`recembed.data.outofcore`): batches streamed, tables updated sparsely.

For catalogs and logs larger than memory: the training part is read file by file in a shuffled order into a
shuffle buffer of ``buffer_rows`` rows (the order within an epoch is a buffered shuffle, not a global
permutation -- the usual trade of streaming readers), negatives are drawn uniformly from the catalog (not
checked against the user's positives: that needs the positives in memory; with 10^5+ items a collision is
rare and only adds noise), and the embedding tables take sparse gradients with ``SparseAdam``, so a step
costs O(batch x dim), not O(table) as a dense Adam step over 10^6-row tables does. Validation and the test
use a fixed sample of users (``valid_sample``, default 10,000), their targets and their training items read
in one pass each (bounded memory; full ranking over every item for them).

Deviations from :class:`recembed.models.cf.bpr.BPR` (in memory): buffered shuffle, unchecked negatives,
SparseAdam (no ``weight_decay``; ``reg_weight`` is the same per-example L2 on the looked-up rows).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn

from ..data.outofcore import StreamedSplit, read_part_rows, users_with_events
from ..evaluation.ranking import evaluate
from ..options import FitOptions
from .tasks import PairBatch
from .trainer import Trainer, TrainResult, seed_everything


class SparseMF(nn.Module):
    """User and item tables with sparse gradients; ``forward()`` returns them whole (for scoring)."""

    def __init__(self, num_users: int, num_items: int, dim: int) -> None:
        super().__init__()
        self.user = nn.Embedding(num_users, dim, sparse=True)
        self.item = nn.Embedding(num_items, dim, sparse=True)
        nn.init.xavier_normal_(self.user.weight)
        nn.init.xavier_normal_(self.item.weight)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight  # (U, D), (I, D)


class StreamingPairTask:
    """BPR over (user, item) rows streamed from ``split``'s train files."""

    def __init__(self, split: StreamedSplit, batch_size: int, *, reg_weight: float = 0.0, num_negatives: int = 1,
                 buffer_rows: int = 1 << 21) -> None:
        self.files = sorted(split.part("train").glob("*.parquet"))
        self.rows = split.sizes["train"]
        self.num_items = split.num_items
        self.batch_size, self.reg_weight, self.num_negatives = batch_size, reg_weight, num_negatives
        self.buffer_rows = max(buffer_rows, batch_size)
        self.peak_buffer_rows = 0

    def num_batches(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[PairBatch]:
        carry_u, carry_i = np.zeros(0, np.int64), np.zeros(0, np.int64)
        order = rng.permutation(len(self.files))
        for n, f in enumerate(order):
            table = pq.read_table(self.files[f], columns=["user_idx", "item_idx"])
            carry_u = np.concatenate([carry_u, table.column("user_idx").to_numpy().astype(np.int64)])
            carry_i = np.concatenate([carry_i, table.column("item_idx").to_numpy().astype(np.int64)])
            last = n == len(order) - 1
            if len(carry_u) < self.buffer_rows and not last:
                continue
            self.peak_buffer_rows = max(self.peak_buffer_rows, len(carry_u))
            perm = rng.permutation(len(carry_u))
            carry_u, carry_i = carry_u[perm], carry_i[perm]
            full = len(carry_u) if last else len(carry_u) - len(carry_u) % self.batch_size
            for s in range(0, full, self.batch_size):
                u, i = carry_u[s : s + self.batch_size], carry_i[s : s + self.batch_size]
                neg = rng.integers(0, self.num_items, (len(u), self.num_negatives))
                yield PairBatch(torch.from_numpy(u), torch.from_numpy(i), torch.from_numpy(neg))
            carry_u, carry_i = carry_u[full:], carry_i[full:]

    def loss(self, module: SparseMF, batch: PairBatch, epoch: int) -> torch.Tensor:
        u = module.user(batch.users)  # (B, D)
        p = module.item(batch.pos_items)  # (B, D)
        n = module.item(batch.neg_items)  # (B, k, D)
        diff = (u.unsqueeze(1) * (p.unsqueeze(1) - n)).sum(-1)  # (B, k)
        loss = nn.functional.softplus(-diff).mean()
        if self.reg_weight > 0:
            loss = loss + self.reg_weight * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (2 * len(u))
        return loss


def sample_users(split: StreamedSplit, part: str, count: int, seed: int) -> np.ndarray:
    """A boolean mask of ``count`` users (at most) drawn from those with events in ``part``."""
    has = np.flatnonzero(users_with_events(split, part))
    mask = np.zeros(split.num_users, dtype=bool)
    if len(has):
        mask[has if len(has) <= count else np.random.default_rng(seed).choice(has, count, replace=False)] = True
    return mask


def evaluate_part(user_emb: np.ndarray, item_emb: np.ndarray, split: StreamedSplit, part: str, keep: np.ndarray,
                  ks: tuple[int, ...], exclude_parts: tuple[str, ...]) -> dict:
    """Full ranking for the users in ``keep`` on ``part``; items of ``exclude_parts`` are never recommended."""
    target = read_part_rows(split, part, keep)
    exclude = None
    for name in exclude_parts:
        rows = read_part_rows(split, name, keep)
        exclude = rows if exclude is None else ((exclude + rows) > 0).astype(np.float32).tocsr()
    u, items_t = torch.from_numpy(user_emb), torch.from_numpy(item_emb).T.contiguous()
    result = evaluate(lambda users: (u[torch.from_numpy(np.asarray(users))] @ items_t).numpy(), target, exclude,
                      ks=ks)
    return result.summary


def fit_streaming_bpr(split: StreamedSplit, config, options: FitOptions, *, buffer_rows: int = 1 << 21,  # noqa: ANN001
                      ) -> tuple[SparseMF, TrainResult, StreamingPairTask]:
    """Train MF-BPR (``config``: a BPR config whose ``optimizer`` is ``sparse_adam``) on ``split``'s train files,
    validating on a fixed sample of ``config.valid_sample`` validation users."""
    seed_everything(options.seed)
    module = SparseMF(split.num_users, split.num_items, config.embedding_dim)
    task = StreamingPairTask(split, config.batch_size, reg_weight=config.reg_weight,
                             num_negatives=config.num_negatives, buffer_rows=buffer_rows)
    validate = None
    if split.sizes["valid"]:
        keep = sample_users(split, "valid", config.valid_sample or 10_000, options.seed)
        target = read_part_rows(split, "valid", keep)
        exclude = read_part_rows(split, "train", keep)
        metric, k = config.valid_metric.split("@")

        def validate() -> dict[str, float]:
            user_emb, item_emb = (t.detach() for t in module())
            items_t = item_emb.T.contiguous()
            res = evaluate(lambda users: (user_emb[torch.from_numpy(np.asarray(users))] @ items_t).numpy(), target,
                           exclude, ks=(int(k),), metrics=tuple(dict.fromkeys((metric, "recall", "ndcg"))))
            return res.summary

    result = Trainer(config, options).fit(module, task, validate)
    return module, result, task


def save_factors(out: Path, module: SparseMF) -> None:
    from safetensors.numpy import save_file

    from ..io import atomic_write

    user_emb, item_emb = (t.detach().numpy() for t in module())
    atomic_write(out / "factors.safetensors", lambda p: save_file({"user_factors": user_emb.copy(),
                                                                   "item_factors": item_emb.copy()}, str(p)))
