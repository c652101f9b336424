"""Item embeddings built from semantic IDs, for ID-based sequential models (SASRec).

Singh, Vu, Mehta, Chen, Kim, Yi, Xu, Cao, Hong, Tay, Chi & Sathiamoorthy, "Better Generalization with Semantic
IDs: A Case Study in Ranking for Recommendations", RecSys 2024.

An item's vector is the sum, over code levels ``l``, of an embedding of its semantic-ID n-gram at ``l``
(optionally plus its own ID embedding): ``prefix`` n-grams (codes ``c_1..c_l``: items that share a prefix share
those rows, coarse to fine — the paper's best) or ``unigram`` (code ``c_l`` alone). Related items therefore share
most of their parameters; a rare item borrows from its prefix neighbours. ``buckets > 0`` hashes each level's
n-gram ids into that many rows (bounded tables for large catalogs; the paper's hashing) — else every distinct
n-gram gets its own row.

The table has the :class:`~recembed.models.sequential.core.OutputItems` interface (``emb(tokens)``, ``table()``,
``logits(hidden, candidates)``; token 0 = padding), so it is both the input and the output item table.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

_HASH = 0x9E3779B1  # Knuth's multiplicative constant


def ngram_ids(codes: np.ndarray, mode: Literal["prefix", "unigram"], buckets: int = 0) -> list[np.ndarray]:
    """Per level, the ``(I,)`` row of each item's n-gram (0-based, level-local)."""
    out = []
    for lv in range(codes.shape[1]):
        if mode == "prefix":
            ids = np.unique(codes[:, : lv + 1], axis=0, return_inverse=True)[1].reshape(-1)
        else:
            ids = codes[:, lv].copy()
        if buckets:
            ids = (ids.astype(np.uint64) * np.uint64(_HASH) % np.uint64(2**32)) % np.uint64(buckets)
        out.append(ids.astype(np.int64))
    return out


class SemanticItemTable(nn.Module):
    def __init__(self, codes: np.ndarray, dim: int, mode: Literal["prefix", "unigram"] = "prefix",
                 use_id: bool = True, buckets: int = 0) -> None:
        super().__init__()
        self.num_items = int(codes.shape[0])
        levels = ngram_ids(codes, mode, buckets)
        sizes = [int(ids.max()) + 1 for ids in levels]
        offsets = np.r_[0, np.cumsum(sizes)[:-1]]
        rows = np.stack([ids + off for ids, off in zip(levels, offsets)], axis=1)  # (I, L)
        self.register_buffer("rows", torch.from_numpy(rows), persistent=False)
        std = dim ** -0.5 / np.sqrt(len(levels) + int(use_id))  # the summed vector starts at SASRec's scale
        self.ngrams = nn.Embedding(int(sum(sizes)), dim)
        nn.init.normal_(self.ngrams.weight, std=std)
        self.ids = nn.Embedding(self.num_items, dim) if use_id else None
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=std)

    def table(self) -> torch.Tensor:
        t = self.ngrams(self.rows).sum(1)  # (I, D)
        return t + self.ids.weight if self.ids is not None else t

    def emb(self, tokens: torch.Tensor) -> torch.Tensor:
        """Input vectors of ``tokens`` (item index + 1; 0 = padding -> zeros), summed for these tokens only
        (the same numbers as rows of :meth:`table`, without building the whole table a second time per step)."""
        idx = (tokens - 1).clamp_min(0)
        v = self.ngrams(self.rows[idx]).sum(-2)
        if self.ids is not None:
            v = v + self.ids(idx)
        return v * (tokens > 0).unsqueeze(-1).to(v.dtype)

    def logits(self, hidden: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        table = self.table()
        table = table[:, : hidden.shape[-1]]  # a narrower hidden: a Matryoshka prefix
        return hidden @ (table if candidates is None else table[candidates]).T
