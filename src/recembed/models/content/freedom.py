"""FREEDOM: freezing and denoising graph structures for multimodal recommendation.

Reference: Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
Recommendation", ACM MM 2023 (reference implementation: MMRec's ``freedom.py``).

Two graphs. (1) A FROZEN item-item graph, built once from the item table's vector columns (``features``,
default all; e.g. tiktok-mm's image and audio): per modality m, each item is linked to its ``knn_k``
nearest items by cosine similarity of the raw features (itself included, as the reference), normalised
``D^-1/2 A_m D^-1/2`` with D the (out-)degree; the modality graphs are summed with ``modality_weights``.
(2) The user-item graph, LightGCN-normalised; while training it is DENOISED by degree-sensitive edge
pruning: each epoch keeps a ``1 - dropout`` fraction of the edges, drawn without replacement with
probability proportional to ``1 / sqrt(d_u d_i)``, and re-normalises the kept graph. Validation, test and
export use the full graph.

Embeddings: ``h = S^L q`` (ID item embeddings propagated ``n_layers`` times on the item-item graph S);
``(u, i)`` = mean of the ``n_ui_layers + 1`` LightGCN layers on the (pruned) user-item graph; the final
item embedding is ``i + h``, the final user embedding ``u``. Loss: BPR(u, i+, i-) + ``reg_weight`` *
sum_m BPR(u, W_m f_m[i+] + b_m, W_m f_m[i-] + b_m), where f_m are the item features of modality m (kept as
trainable tables initialised from the data, as the reference) and W_m a linear projection to the
embedding dimension. The modality terms only shape training; scores are ``<u, i + h>``.

Cold items (no training interaction) are reached through S. In the reference their embedding is
``e_i / (n_ui_layers + 1) + h_i``, where their own ID embedding ``e_i`` is trained only as a sampled negative;
with ``cold_items="neighbours"`` (default) evaluation and export instead give a cold item the S-weighted
mean of the final embeddings of its warm neighbours (``"reference"`` keeps the reference's form).
Training is the same either way. Items without a modality (an all-zero feature row) are
left out of that modality's kNN graph (no edges from or to them, no NaN from normalising a zero row).

Deviations from the reference: the per-modality weights are a config string instead of MMRec's
``mm_image_weight`` (image vs text); rows of items that miss a modality are re-weighted over the modalities
they have (the fused rows of complete items are unchanged); edges are sampled with the Efraimidis-Spirakis
key trick (same distribution as ``torch.multinomial`` without replacement) from the trainer's seeded
per-epoch generator, so a resumed run samples the same graphs; the cold-item rule above
(``cold_items``); propagation is SciPy CSR matmuls.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ...config import check
from ...errors import ConfigError
from ...options import FitOptions
from ...training.device import sparse_times
from ...training.losses import bpr_loss
from ...training.tasks import BPRTask, PairBatch, bpr_on_tables, l2_of_ego
from ...training.trainer import TrainConfig
from ..cf.lightgcn import GraphEmbeddingModule, normalized_adjacency, propagate
from ..trainable import EmbeddingRecommender


@dataclass(frozen=True)
class FREEDOMConfig(TrainConfig):
    embedding_dim: int = 64
    """Dimension of the user / item ID embeddings and of the projected modality features."""
    features: str = ""
    """Comma-separated vector columns of the item table, one modality each ("" = all vector columns)."""
    modality_weights: str = ""
    """Weights of the modality kNN graphs in the fused item-item graph, e.g. "image_feat=0.1,audio_feat=0.9"
    (normalised to sum to 1; "" = equal weights; an unnamed modality gets weight 0)."""
    knn_k: int = 10
    """Neighbours per item in each modality's item-item graph (the item itself included)."""
    n_layers: int = 1
    """Propagation layers on the frozen item-item graph."""
    n_ui_layers: int = 2
    """LightGCN layers on the user-item graph (layers averaged)."""
    dropout: float = 0.8
    """Fraction of user-item edges pruned each training epoch (degree-sensitive; 0 = no pruning)."""
    reg_weight: float = 1e-4
    """Weight of the modality BPR terms (MMRec's ``reg_weight``, searched in {0, 1e-5, 1e-4, 1e-3})."""
    l2_weight: float = 0.0
    """L2 on the batch's layer-0 (ID) embeddings, as LightGCN's ``reg_weight`` (not in the reference: 0)."""
    num_negatives: int = 1
    """Uniform negatives per positive (the BPR terms average over them; the reference uses 1)."""
    feature_norm: Literal["none", "l2"] = "none"
    """Row normalisation of the features fed to the projections (the reference uses raw features; the kNN
    graph always uses cosine similarity)."""
    cold_items: Literal["neighbours", "reference"] = "neighbours"
    """Embedding of items without training interactions at evaluation / export: the mean of their warm
    item-item neighbours' final embeddings, or the reference's ``e_i / (n_ui_layers + 1) + h_i``."""
    learning_rate: float = 1e-3
    """Adam step size."""
    batch_size: int = 2048
    """Triples per step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_graph_fields(self)
        check(self.reg_weight >= 0, "reg_weight", f"must be >= 0, got {self.reg_weight}")
        check(self.l2_weight >= 0, "l2_weight", f"must be >= 0, got {self.l2_weight}")
        check(self.num_negatives >= 1, "num_negatives", f"must be >= 1, got {self.num_negatives}")
        parse_weights(self.modality_weights)


def check_graph_fields(cfg) -> None:  # noqa: ANN001 - FREEDOM's or MGCN's config
    """The checks of the fields FREEDOM and MGCN share (ConfigError naming the field)."""
    check(cfg.embedding_dim >= 1, "embedding_dim", f"must be >= 1, got {cfg.embedding_dim}")
    check(cfg.knn_k >= 1, "knn_k", f"must be >= 1, got {cfg.knn_k}")
    check(cfg.n_layers >= 0, "n_layers", f"must be >= 0, got {cfg.n_layers}")
    check(cfg.n_ui_layers >= 0, "n_ui_layers", f"must be >= 0, got {cfg.n_ui_layers}")
    check(0 <= cfg.dropout < 1, "dropout", f"must be in [0, 1), got {cfg.dropout}")


def parse_weights(spec: str) -> dict[str, float]:
    """``"a=0.1,b=0.9"`` (or ``a:0.1``) -> ``{"a": 0.1, "b": 0.9}``; ConfigError naming the key if malformed."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, value = part.replace(":", "=").partition("=")
        try:
            w = float(value)
        except ValueError:
            w = float("nan")
        check(bool(sep) and bool(name.strip()) and np.isfinite(w) and w >= 0, "modality_weights",
              f"expected NAME=WEIGHT with WEIGHT >= 0, got {part!r}")
        out[name.strip()] = w
    return out


def modality_matrices(table, features: str, num_items: int) -> dict[str, np.ndarray]:
    """``{name: (I, F_m) float32}``: the item table's vector columns, one per modality (raw values)."""
    if table is None or not table.names("vector"):
        raise ConfigError("this model needs item content: an item table with vector columns (e.g. tiktok-mm's "
                          "image_feat / audio_feat, or `recembed encode` output)")
    names = [n.strip() for n in features.split(",") if n.strip()] or table.names("vector")
    out = {}
    for n in names:
        if table.kinds.get(n) != "vector":
            raise ConfigError(f"features: {n!r} is not a vector column; vector columns: {table.names('vector')}")
        v = np.ascontiguousarray(table[n], dtype=np.float32)
        if v.shape[0] != num_items:
            raise ConfigError(f"item table has {v.shape[0]} rows, the interactions {num_items} items")
        out[n] = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def knn_graph(features: np.ndarray, k: int, chunk: int = 2048,
              weighted: bool = False) -> tuple[sp.csr_matrix, np.ndarray]:
    """Normalised kNN graph by cosine similarity, ``D^-1/2 A D^-1/2`` with D the out-degree, and the mask of
    items that have this modality (non-zero rows). ``A``'s edges weigh 1 (FREEDOM: every present row has
    degree k, so each edge weighs 1/k) or, ``weighted``, the neighbour's cosine similarity (LATTICE / MGCN).
    Absent items have no edges either way."""
    n = features.shape[0]
    norms = np.linalg.norm(features, axis=1)
    present = norms > 0
    idx = np.flatnonzero(present)
    k = min(k, len(idx))
    if k == 0:
        return sp.csr_matrix((n, n), dtype=np.float32), present
    x = torch.from_numpy(features[idx] / norms[idx, None])
    cols = np.empty((len(idx), k), dtype=np.int64)
    vals = np.ones((len(idx), k), dtype=np.float32)
    for start in range(0, len(idx), chunk):
        top = torch.topk(x[start : start + chunk] @ x.T, k, dim=1)
        cols[start : start + chunk] = top.indices.numpy()
        if weighted:
            vals[start : start + chunk] = top.values.numpy()
    rows = np.repeat(idx, k)
    adj = sp.csr_matrix((vals.ravel(), (rows, idx[cols.ravel()])), shape=(n, n))
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.zeros_like(deg)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    scale = sp.diags(inv.astype(np.float32))
    out = sp.csr_matrix(scale @ adj @ scale, dtype=np.float32)
    out.sort_indices()
    return out, present


def fused_item_graph(mods: dict[str, np.ndarray], weights: dict[str, float], k: int) -> sp.csr_matrix:
    """Weighted sum of the modality kNN graphs; each row is re-weighted over the modalities the item has."""
    unknown = sorted(set(weights) - set(mods))
    if unknown:
        raise ConfigError(f"modality_weights: {unknown} not among the modalities {list(mods)}")
    w = {m: (weights.get(m, 0.0) if weights else 1.0) for m in mods}
    if sum(w.values()) <= 0:
        raise ConfigError("modality_weights: all weights are zero")
    n = next(iter(mods.values())).shape[0]
    total = sp.csr_matrix((n, n), dtype=np.float32)
    row_weight = np.zeros(n, dtype=np.float64)
    for m, f in mods.items():
        if w[m] <= 0:
            continue
        g, present = knn_graph(f, k)
        total = total + w[m] * g
        row_weight += w[m] * present
    inv = np.zeros(n, dtype=np.float32)
    inv[row_weight > 0] = 1.0 / row_weight[row_weight > 0]
    out = sp.csr_matrix(sp.diags(inv) @ total, dtype=np.float32)
    out.sort_indices()
    return out


class _SpMM(torch.autograd.Function):
    """``A @ E`` for a fixed (not necessarily symmetric) SciPy CSR ``A``; the gradient is ``A^T @ grad``."""

    @staticmethod
    def forward(ctx, adjacency: sp.csr_matrix, adjacency_t: sp.csr_matrix, dense: torch.Tensor) -> torch.Tensor:
        ctx.adjacency_t = adjacency_t
        return sparse_times(adjacency, dense)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, sparse_times(ctx.adjacency_t, grad.contiguous())


class ColdItems:
    """Items without training interactions get, at evaluation and export, the ``item_graph``-weighted mean of
    their warm neighbours' final embeddings (``item_graph`` None: embeddings unchanged)."""

    def __init__(self, train: sp.csr_matrix, item_graph: sp.csr_matrix | None) -> None:
        warm = np.asarray(train.sum(axis=0)).ravel() > 0
        self.cold = np.flatnonzero(~warm) if item_graph is not None else np.zeros(0, dtype=np.int64)
        if len(self.cold):
            to_warm = sp.csr_matrix(item_graph[self.cold] @ sp.diags(warm.astype(np.float32)))
            weight = np.asarray(to_warm.sum(axis=1)).ravel()
            inv = np.where(weight > 0, 1.0 / np.maximum(weight, 1e-12), 0.0).astype(np.float32)
            self.graph = sp.csr_matrix(sp.diags(inv) @ to_warm, dtype=np.float32)  # (cold, I), rows sum to 1
            self.graph_t = sp.csr_matrix(self.graph.T)

    def __call__(self, items: torch.Tensor) -> torch.Tensor:
        if not len(self.cold):
            return items
        return items.index_copy(0, torch.from_numpy(self.cold), _SpMM.apply(self.graph, self.graph_t, items))


class FREEDOMModule(GraphEmbeddingModule):
    def __init__(self, train: sp.csr_matrix, item_graph: sp.csr_matrix, mods: dict[str, np.ndarray], dim: int,
                 n_layers: int, n_ui_layers: int, cold_neighbours: bool = True) -> None:
        super().__init__(normalized_adjacency(train), train.shape[0], train.shape[1], dim, n_ui_layers,
                         init="xavier")  # the reference: xavier_uniform per table
        self.item_graph = item_graph  # frozen: rebuilt from the data, never saved
        self.item_graph_t = sp.csr_matrix(item_graph.T)
        self.n_layers = n_layers
        self.names = list(mods)
        self.feats = nn.ParameterList([nn.Parameter(torch.from_numpy(f.copy())) for f in mods.values()])
        self.proj = nn.ModuleList([nn.Linear(f.shape[1], dim) for f in mods.values()])
        self.cold_items = ColdItems(train, item_graph if cold_neighbours else None)

    def forward(self, adjacency: sp.csr_matrix | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(users, items)``; ``adjacency`` (a pruned user-item graph) is used in training mode only."""
        adj = adjacency if adjacency is not None and self.training else self.adjacency
        _, h = self.ego()
        for _ in range(self.n_layers):
            h = _SpMM.apply(self.item_graph, self.item_graph_t, h)
        users, items = self.split(propagate(adj, self.weight, self.num_layers))
        items = items + h
        if not self.training:
            items = self.cold_items(items)
        return users, items

    def projected(self, m: int, items: torch.Tensor) -> torch.Tensor:
        return self.proj[m](self.feats[m][items])


class PrunedGraphTask(BPRTask):
    """BPR triples whose epochs first sample a pruned user-item graph (``self.pruned``) from the epoch's rng:
    FREEDOM's degree-sensitive edge pruning (also MGCN's ``dropout`` extension). Subclasses write the loss."""

    def __init__(self, train: sp.csr_matrix, batch_size: int, *, dropout: float, num_negatives: int = 1) -> None:
        super().__init__(train, batch_size, num_negatives=num_negatives)
        self.dropout = dropout
        self.shape = train.shape
        du = np.bincount(self.users, minlength=train.shape[0]).astype(np.float64)
        di = np.bincount(self.items, minlength=train.shape[1]).astype(np.float64)
        self.edge_weight = 1.0 / np.sqrt(du[self.users] * di[self.items])
        self.pruned: sp.csr_matrix | None = None

    def prune(self, rng: np.random.Generator) -> sp.csr_matrix | None:
        """Keep ``(1 - dropout)`` of the edges, without replacement, with probability ~ 1/sqrt(d_u d_i):
        the ``keep`` smallest of Exp(1)/w (Efraimidis & Spirakis), then LightGCN-normalise the kept graph."""
        if self.dropout <= 0 or len(self.users) == 0:
            return None
        keep = max(1, int(len(self.users) * (1.0 - self.dropout)))
        keys = rng.exponential(size=len(self.users)) / self.edge_weight
        sel = np.argpartition(keys, keep - 1)[:keep] if keep < len(keys) else np.arange(len(keys))
        kept = sp.csr_matrix((np.ones(len(sel), dtype=np.float32), (self.users[sel], self.items[sel])),
                             shape=self.shape)
        return normalized_adjacency(kept)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[PairBatch]:
        self.pruned = self.prune(rng)
        yield from super().batches(epoch, rng)


class FREEDOMTask(PrunedGraphTask):
    """BPR + modality BPR terms on the pruned graph."""

    def __init__(self, train: sp.csr_matrix, batch_size: int, *, reg_weight: float, dropout: float,
                 l2_weight: float = 0.0, num_negatives: int = 1) -> None:
        super().__init__(train, batch_size, dropout=dropout, num_negatives=num_negatives)
        self.modality_weight, self.l2_weight = reg_weight, l2_weight

    def loss(self, module: FREEDOMModule, batch: PairBatch, epoch: int) -> torch.Tensor:
        users, items = module(self.pruned)
        loss = bpr_on_tables(users, items, batch)
        if self.l2_weight > 0:
            loss = loss + self.l2_weight * l2_of_ego(module, batch)
        if self.modality_weight > 0:
            u = users.index_select(0, batch.users)  # (B, D)
            for m in range(len(module.proj)):
                p, n = module.projected(m, batch.pos_items), module.projected(m, batch.neg_items)
                loss = loss + self.modality_weight * bpr_loss((u * p).sum(-1), (u.unsqueeze(1) * n).sum(-1))
        return loss


class FREEDOM(EmbeddingRecommender):
    name = "freedom"
    Config = FREEDOMConfig

    def _build(self, train: sp.csr_matrix, options: FitOptions) -> tuple[nn.Module, FREEDOMTask]:
        cfg = self.config
        mods = modality_matrices(self._context.get("item_table"), cfg.features, train.shape[1])
        self.feature_names_ = list(mods)
        graph = fused_item_graph(mods, parse_weights(cfg.modality_weights), cfg.knn_k)
        if cfg.feature_norm == "l2":
            mods = {m: f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12) for m, f in mods.items()}
        module = FREEDOMModule(train, graph, mods, cfg.embedding_dim, cfg.n_layers, cfg.n_ui_layers,
                               cold_neighbours=cfg.cold_items == "neighbours")
        return module, FREEDOMTask(train, self._batch(train.nnz), reg_weight=cfg.reg_weight, dropout=cfg.dropout,
                                   l2_weight=cfg.l2_weight, num_negatives=cfg.num_negatives)
