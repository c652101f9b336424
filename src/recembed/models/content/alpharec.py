"""AlphaRec: collaborative filtering on top of frozen language representations of the items.

Reference: Sheng et al., "Language Representations Can be What Recommenders Need: Findings and
Potentials", ICLR 2025 (code: github.com/LehengTHU/AlphaRec).

No ID embeddings: each item's layer-0 representation is a learned MLP (Linear -> LeakyReLU -> Linear) of
its frozen language embedding ``x_i`` (the item table's vector columns, ``features``, default all of them,
each L2-normalised per modality and concatenated, as VBPR's content); a user's is the same MLP applied to
the mean of the language embeddings of the user's training items. LightGCN propagation (symmetric
normalised user-item graph, ``num_layers`` layers, mean of the layers) follows; gradients reach only the MLP.
Trained with InfoNCE on cosine similarity with temperature ``temperature`` (paper / code: 0.15, 0.2 on some
datasets), scored by cosine: the exported user and item embeddings are L2-normalised.

Cold (zero-shot) items have no graph edges, so in the paper's form (``cold_items="layer0"``) their final
embedding is their own layer-0 MLP output. Ranked against warm items that systematically loses: warm items
and users share the propagated (graph-smoothed) components that a lone layer-0 vector lacks (ml-100k-text,
cold-items:0.2: full-ranking R@20 0.005, below random). Extension, default ``cold_items="neighbours"``:
at evaluation and export a cold item gets its layer-0 output plus the weighted mean of the propagated
layers 1..K of its ``cold_neighbours`` most similar warm items by language cosine; warm items are unchanged,
and so is training. ``embed_history`` embeds a new user
from a list of items the way a training user is embedded (MLP of the mean plus the propagation layers).
Items whose language vector is missing (a zero row) get the MLP's output for the zero vector (finite).

Deviations from the reference code: the ``num_negatives`` uniform negatives are drawn once per batch and
shared by its rows (a ``(B, N)`` matmul instead of ``(B, N, D)`` gathers), from the items that occur in
training only (an item held out of training is never pushed down as a negative), with the row's own
training items masked out (the code excludes them per positive); ``in_batch=True`` adds the batch's other
positives as negatives. MLP hidden width defaults to half the input width (the paper's ratio for its
3072-d embeddings). Paper defaults: embedding 64, 2 layers, 256 negatives, lr 5e-4, batch 4096.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from ...config import check
from ...errors import DataError
from ...options import FitOptions
from ...training.tasks import InteractionTask, PairBatch
from ...training.trainer import TrainConfig
from ..cf.lightgcn import _SymmetricSpMM, normalized_adjacency, propagate
from ..trainable import EmbeddingRecommender
from ._content import content_matrix

_SLOPE = 0.01  # nn.LeakyReLU's default negative slope


@dataclass(frozen=True)
class AlphaRecConfig(TrainConfig):
    embedding_dim: int = 64
    """Output dimension of the MLP (the embedding that is propagated and scored)."""
    hidden_dim: int = 0
    """Hidden width of the MLP (0: half the width of the language embedding, the paper's ratio)."""
    num_layers: int = 2
    """LightGCN propagation layers (the paper uses 2)."""
    features: str = ""
    """Comma-separated vector columns of the item table to use ("" = all vector columns)."""
    feature_norm: Literal["l2", "none"] = "l2"
    """Per-modality row normalisation of the language vectors before concatenation."""
    temperature: float = 0.15
    """InfoNCE temperature on cosine similarities (the paper: 0.15; 0.2 on some datasets)."""
    num_negatives: int = 256
    """Uniform negatives per batch, shared by its rows (the paper samples 256 per positive)."""
    in_batch: bool = False
    """Also use the batch's other positives as negatives."""
    cold_items: Literal["neighbours", "layer0"] = "neighbours"
    """Items never seen in training: ``layer0`` = their MLP output only (the paper); ``neighbours`` = plus the
    propagated layers of their ``cold_neighbours`` most similar warm items by language cosine (see header)."""
    cold_neighbours: int = 10
    """Warm items whose propagated layers a cold item borrows (``cold_items=neighbours``)."""
    learning_rate: float = 5e-4
    """Adam step size (the paper's code: 5e-4)."""
    batch_size: int = 4096
    """Positive pairs per step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.embedding_dim >= 1, "embedding_dim", f"must be >= 1, got {self.embedding_dim}")
        check(self.hidden_dim >= 0, "hidden_dim", f"must be >= 0, got {self.hidden_dim}")
        check(self.num_layers >= 0, "num_layers", f"must be >= 0, got {self.num_layers}")
        check(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        check(self.num_negatives >= 0, "num_negatives", f"must be >= 0, got {self.num_negatives}")
        check(self.cold_neighbours >= 1, "cold_neighbours", f"must be >= 1, got {self.cold_neighbours}")
        check(self.num_negatives > 0 or self.in_batch, "num_negatives", "must be > 0 when in_batch is false")


def user_mean_content(train: sp.csr_matrix, content: np.ndarray) -> np.ndarray:
    """``(U, F)``: the mean content vector of each user's training items (zeros for a user without any)."""
    r = sp.csr_matrix(train, dtype=np.float32)
    r.data[:] = 1.0
    counts = np.asarray(r.sum(axis=1)).ravel()
    inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0).astype(np.float32)
    return np.ascontiguousarray(sp.diags(inv) @ (r @ content), dtype=np.float32)


class AlphaRecModule(nn.Module):
    def __init__(self, train: sp.csr_matrix, content: np.ndarray, hidden: int, dim: int, num_layers: int) -> None:
        super().__init__()
        self.num_users, self.num_layers = train.shape[0], num_layers
        self.adjacency = normalized_adjacency(train)  # fixed graph, rebuilt from the data, never saved
        inputs = np.concatenate([user_mean_content(train, content), content], axis=0)
        self.register_buffer("inputs", torch.from_numpy(inputs), persistent=False)  # (U+I, F), frozen
        self.mlp = nn.Sequential(nn.Linear(content.shape[1], hidden), nn.LeakyReLU(_SLOPE), nn.Linear(hidden, dim))

    def layers(self) -> list[torch.Tensor]:
        """``E^(0) .. E^(K)`` of the ``(U+I, D)`` graph embeddings (unnormalised)."""
        out = [self.mlp(self.inputs)]
        for _ in range(self.num_layers):
            out.append(_SymmetricSpMM.apply(self.adjacency, out[-1]))
        return out

    cold_fill: sp.csr_matrix | None = None  # (I, I): rows of cold items weight their warm content neighbours

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        e0 = self.mlp(self.inputs)
        e = propagate(self.adjacency, e0, self.num_layers)
        if self.cold_fill is not None and not self.training and self.num_layers:
            # a cold item has no edges, so its layers 1..K are zero: borrow its neighbours' (evaluation only)
            graph_part = (e - e0 / (self.num_layers + 1))[self.num_users :].detach().numpy()
            fill = torch.from_numpy(self.cold_fill @ graph_part)
            e = torch.cat([e[: self.num_users], e[self.num_users :] + fill])
        e = F.normalize(e, dim=-1)
        return e[: self.num_users], e[self.num_users :]


@dataclass
class NegBatch(PairBatch):
    """``neg_items`` is ``(N,)``, shared by the rows; ``neg_mask`` ``(B, N)`` marks each row's training items."""

    neg_mask: torch.Tensor | None = None


class AlphaRecTask(InteractionTask):
    """InfoNCE on cosine similarities: each positive against shared uniform negatives (the row's own training
    items masked) and, with ``in_batch``, the batch's other positives."""

    def __init__(self, train: sp.csr_matrix, batch_size: int, *, temperature: float, num_negatives: int,
                 in_batch: bool) -> None:
        super().__init__(train, batch_size, num_negatives=0)
        self.train = sp.csr_matrix(train, dtype=np.float32)
        self.temperature, self.shared_negatives, self.in_batch = temperature, num_negatives, in_batch
        self.candidates = np.flatnonzero(np.asarray(self.train.sum(axis=0)).ravel() > 0)  # warm items

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[NegBatch]:
        for b in super().batches(epoch, rng):
            neg, mask = np.zeros(0, dtype=np.int64), None
            if self.shared_negatives:
                neg = self.candidates[rng.integers(0, len(self.candidates), self.shared_negatives)]
                mask = torch.from_numpy(self.train[b.users.numpy()][:, neg].toarray() > 0)
            yield NegBatch(b.users, b.pos_items, torch.from_numpy(neg), mask)

    def loss(self, module: AlphaRecModule, batch: NegBatch, epoch: int) -> torch.Tensor:
        user_emb, item_emb = module()  # L2-normalised
        u = user_emb[batch.users] * (1.0 / self.temperature)
        p = item_emb[batch.pos_items]
        if self.in_batch:
            first = u @ p.T  # (B, B), diagonal = positives
            same = batch.pos_items.unsqueeze(0) == batch.pos_items.unsqueeze(1)
            same.fill_diagonal_(False)
            first.masked_fill_(same, float("-inf"))
            target = torch.arange(len(u))
        else:
            first = (u * p).sum(-1, keepdim=True)
            target = torch.zeros(len(u), dtype=torch.long)
        logits = first
        if len(batch.neg_items):
            neg = (u @ item_emb[batch.neg_items].T).masked_fill_(batch.neg_mask, float("-inf"))
            logits = torch.cat([first, neg], dim=1)
        return F.cross_entropy(logits, target)


def cold_neighbour_weights(train: sp.csr_matrix, content: np.ndarray, k: int, block: int = 1024
                           ) -> sp.csr_matrix | None:
    """``(I, I)`` CSR: row c of an item c unseen in training holds its ``k`` most similar warm items by content
    cosine, weighted by their (positive) similarity and summing to 1; other rows are empty. None without cold
    items or without warm ones."""
    seen = np.asarray(train.sum(axis=0)).ravel() > 0
    cold, warm = np.flatnonzero(~seen), np.flatnonzero(seen)
    if not len(cold) or not len(warm):
        return None
    norms = np.linalg.norm(content, axis=1, keepdims=True)
    unit = content / np.where(norms > 0, norms, 1.0)
    k = min(k, len(warm))
    rows, cols, vals = [], [], []
    for start in range(0, len(cold), block):  # bounded memory: (block, warm) similarities at a time
        c = cold[start : start + block]
        sim = unit[c] @ unit[warm].T
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        w = np.maximum(np.take_along_axis(sim, top, axis=1), 0.0)
        total = w.sum(axis=1, keepdims=True)
        w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / k)  # no similar item: plain mean
        rows.append(np.repeat(c, k))
        cols.append(warm[top].ravel())
        vals.append(w.ravel())
    n = content.shape[0]
    return sp.csr_matrix((np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, n))


class AlphaRec(EmbeddingRecommender):
    name = "alpharec"
    Config = AlphaRecConfig

    def _build(self, train: sp.csr_matrix, options: FitOptions) -> tuple[nn.Module, AlphaRecTask]:
        cfg = self.config
        content, self.feature_names_ = content_matrix(self._context.get("item_table"), cfg.features,
                                                      cfg.feature_norm, train.shape[1])
        hidden = cfg.hidden_dim or max(1, content.shape[1] // 2)
        module = AlphaRecModule(train, content, hidden, cfg.embedding_dim, cfg.num_layers)
        if cfg.cold_items == "neighbours":
            module.cold_fill = cold_neighbour_weights(train, content, cfg.cold_neighbours)
        self.content_ = content
        return module, AlphaRecTask(train, self._batch(train.nnz), temperature=cfg.temperature,
                                    num_negatives=cfg.num_negatives, in_batch=cfg.in_batch)

    def _export(self, module: AlphaRecModule) -> None:
        super()._export(module)
        lin1, lin2 = module.mlp[0], module.mlp[2]
        self.mlp_ = {"w1": lin1.weight.detach().numpy().T.copy(), "b1": lin1.bias.detach().numpy().copy(),
                     "w2": lin2.weight.detach().numpy().T.copy(), "b2": lin2.bias.detach().numpy().copy()}
        # item layers 0..K-1 (what a new user's layers 1..K aggregate), for embed_history
        layers = module.layers()[: module.num_layers]
        self.item_layers_ = np.stack([e[module.num_users :].detach().numpy() for e in layers]) if layers else \
            np.zeros((0, *self.item_factors_.shape), dtype=np.float32)

    def _mlp(self, x: np.ndarray) -> np.ndarray:
        m = self.mlp_
        h = x @ m["w1"] + m["b1"]
        return (np.where(h > 0, h, _SLOPE * h) @ m["w2"] + m["b2"]).astype(np.float32)

    def score_histories(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        return self.embed_history(histories) @ self.item_factors_.T

    def embed_history(self, item_idx_lists: Sequence[Sequence[int]]) -> np.ndarray:
        """``(n, D)`` L2-normalised user embeddings for item histories (item indices), computed as a training
        user's: the MLP of the mean language vector, plus propagation layers that aggregate the items' layers
        with the training graph's weights ``1 / sqrt(|H| d_i)`` (the graph itself is not updated). For a
        training user's own training items this reproduces ``user_embeddings()``. Score with
        ``embed_history(h) @ item_embeddings().T``."""
        self._check_fitted()
        num_items = self.item_factors_.shape[0]
        degree = np.maximum(np.asarray(self.user_items_.sum(axis=0)).ravel(), 1).astype(np.float32)
        out = np.zeros((len(item_idx_lists), self.item_factors_.shape[1]), dtype=np.float32)
        for row, items in enumerate(item_idx_lists):
            h = np.unique(np.asarray(items, dtype=np.int64))
            if h.size and (h.min() < 0 or h.max() >= num_items):
                raise DataError(f"item index out of range [0, {num_items}) in history {row}")
            x = self.content_[h].mean(axis=0) if h.size else np.zeros(self.content_.shape[1], dtype=np.float32)
            total = self._mlp(x[None])[0]
            if h.size:
                w = 1.0 / np.sqrt(h.size * degree[h])
                for layer in self.item_layers_:
                    total = total + w @ layer[h]
            total = total / (len(self.item_layers_) + 1)
            out[row] = total / max(float(np.linalg.norm(total)), 1e-12)
        return out

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "content": self.content_, "item_layers": self.item_layers_,
                **{f"mlp_{k}": v for k, v in self.mlp_.items()}}

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.content_ = state["content"]
        self.item_layers_ = state["item_layers"]
        self.mlp_ = {k: state[f"mlp_{k}"] for k in ("w1", "b1", "w2", "b2")}
