"""Multimodal Mult-VAE: Mult-VAE whose item weights are propagated on a frozen modality item-item graph.

References: the backbone is Liang et al., "Variational Autoencoders for Collaborative Filtering", WWW 2018
(``multvae.py``); the item-item graph is LATTICE's idea (Zhang et al., "Mining Latent Structures for
Multimedia Recommendation", MM 2021: a modality kNN graph over items, item representations propagated on it
and added to any CF backbone's) in FREEDOM's frozen form (Zhou & Shen, MM 2023; ``freedom.py``). This
combination is ours; there is no paper of this exact model.

The item table's vector columns (``features``) give, per modality, each item's ``knn_k`` nearest items by
cosine similarity, normalised ``D^-1/2 A D^-1/2`` and summed with ``modality_weights`` into S (FREEDOM's
graph, ``fused_item_graph``). Mult-VAE has two per-item parameter blocks: the decoder's output layer
(weight row ``w_i`` and bias ``b_i``: item i's logit is ``<h, w_i> + b_i``) and the encoder's input layer
(column ``v_i``: a history is encoded from ``sum_i x_i v_i``). Both are replaced by their graph-smoothed
versions, ``W' = W + graph_weight * S^L W`` (``n_layers`` = L; the bias rides along with the decoder rows),
the encoder's only when ``encoder_graph``. An item thus shares the logits (and the encoding) of the items
whose content it resembles -- the same role S plays for FREEDOM's ID embeddings, on a backbone that does not
sample negatives. Everything else is Mult-VAE: multinomial likelihood, annealed KL, input dropout. Option
``content_decoder`` adds a learned linear map of the item's content to its decoder row and bias before the
smoothing (``w_i + P f_i``, VBPR's item side; ``P`` starts at zero).

Cold items (no training interaction) get, at evaluation and export, the S-weighted mean of their warm
neighbours' final decoder rows (FREEDOM's ``cold_items="neighbours"`` rule); ``cold_items="own"`` keeps their
own rows (trained only to be pushed down by the softmax). Items without a modality have no edges in that
modality's graph. The fitted model is saved as a plain Mult-VAE whose per-item weights are the final ones
(the graph is baked in), so a bundle needs no item table to score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ...config import check
from ...options import FitOptions
from ..cf.multvae import MultVAE, MultVAEConfig, MultVAEModule, MultVAETask
from .freedom import ColdItems, _SpMM, fused_item_graph, modality_matrices, parse_weights


@dataclass(frozen=True)
class MMultVAEConfig(MultVAEConfig):
    latent_dim: int = 200
    """Dimension of z (the paper's 200; kept when Mult-VAE's default became 64)."""
    total_anneal_steps: int = 200_000
    """Optimizer steps of the KL annealing (the paper's 200,000; kept when Mult-VAE's default became 200)."""
    features: str = ""
    """Comma-separated vector columns of the item table, one modality each ("" = all vector columns)."""
    modality_weights: str = ""
    """Weights of the modality kNN graphs in S, e.g. "image_feat=0.1,audio_feat=0.9" ("" = equal)."""
    knn_k: int = 10
    """Neighbours per item in each modality's kNN graph (the item itself included)."""
    n_layers: int = 1
    """Propagation steps L on S."""
    graph_weight: float = 1.0
    """Weight of the propagated rows: ``W' = W + graph_weight * S^L W`` (0 = plain Mult-VAE)."""
    encoder_graph: bool = True
    """Also smooth the encoder's input-layer columns on S (a history item also votes for its neighbours)."""
    cold_items: Literal["neighbours", "own"] = "neighbours"
    """Decoder rows of items without training interactions at evaluation / export (see the module doc)."""
    content_decoder: bool = False
    """Add a learned linear map of the item's content (L2-normalised per modality, concatenated) to its decoder
    row and bias before the smoothing, VBPR-style: ``w_i + P f_i``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.knn_k >= 1, "knn_k", f"must be >= 1, got {self.knn_k}")
        check(self.n_layers >= 1, "n_layers", f"must be >= 1, got {self.n_layers}")
        check(self.graph_weight >= 0, "graph_weight", f"must be >= 0, got {self.graph_weight}")
        parse_weights(self.modality_weights)


class GraphMultVAEModule(MultVAEModule):
    """Mult-VAE with graph-smoothed per-item weights (training form; ``baked()`` gives the plain module)."""

    def __init__(self, train: sp.csr_matrix, item_graph: sp.csr_matrix, hidden_dims: tuple[int, ...],
                 latent_dim: int, dropout: float, *, n_layers: int, graph_weight: float, encoder_graph: bool,
                 cold_neighbours: bool, content: np.ndarray | None = None) -> None:
        super().__init__(train.shape[1], hidden_dims, latent_dim, dropout)
        self.content_proj = None
        if content is not None:  # (I, F) fixed, rebuilt from the data (not in the state dict)
            self.register_buffer("content", torch.from_numpy(content), persistent=False)
            self.content_proj = nn.Linear(content.shape[1], self.decoder[-1].in_features + 1, bias=False)
            nn.init.zeros_(self.content_proj.weight)  # starts as plain Mult-VAE
        self.item_graph, self.item_graph_t = item_graph, sp.csr_matrix(item_graph.T)  # frozen, never saved
        self.n_layers, self.graph_weight, self.encoder_graph = n_layers, graph_weight, encoder_graph
        self.cold_items = ColdItems(train, item_graph if cold_neighbours else None)

    def _smooth(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows + graph_weight * S^L rows`` for an ``(I, D)`` per-item block."""
        h = rows
        for _ in range(self.n_layers):
            h = _SpMM.apply(self.item_graph, self.item_graph_t, h)
        return rows + self.graph_weight * h

    def item_blocks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The smoothed per-item layers (``MultVAEModule.forward`` uses them): encoder weight (H, I), encoder
        bias, decoder weight (I, H'), decoder bias (I,); cold items' decoder rows replaced in evaluation mode."""
        first, last = self.encoder[0], self.decoder[-1]
        enc = self._smooth(first.weight.T.contiguous()).T if self.encoder_graph else first.weight
        dec = torch.cat([last.weight, last.bias.unsqueeze(1)], dim=1)
        if self.content_proj is not None:
            dec = dec + self.content_proj(self.content)
        dec = self._smooth(dec)
        if not self.training:
            dec = self.cold_items(dec)
        return enc, first.bias, dec[:, :-1], dec[:, -1]

    def baked(self) -> MultVAEModule:
        """A plain :class:`MultVAEModule` computing the same evaluation-mode logits (graph folded in)."""
        hidden = tuple(m.out_features for m in self.encoder if isinstance(m, nn.Linear))[:-1]
        plain = MultVAEModule(self.item_graph.shape[0], hidden, self.encoder[-1].out_features // 2, self.dropout)
        plain.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith("content_proj.")})
        was_training = self.training
        self.eval()
        with torch.no_grad():
            enc_w, _, dec_w, dec_b = self.item_blocks()
            plain.encoder[0].weight.copy_(enc_w)
            plain.decoder[-1].weight.copy_(dec_w)
            plain.decoder[-1].bias.copy_(dec_b)
        self.train(was_training)
        return plain.eval()


class MMultVAE(MultVAE):
    name = "mmultvae"
    Config = MMultVAEConfig

    def _build(self, train: sp.csr_matrix, options: FitOptions) -> tuple[nn.Module, MultVAETask]:
        cfg = self.config
        mods = modality_matrices(self._context.get("item_table"), cfg.features, train.shape[1])
        self.feature_names_ = list(mods)
        graph = fused_item_graph(mods, parse_weights(cfg.modality_weights), cfg.knn_k)
        content = None
        if cfg.content_decoder:
            norms = {m: np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12) for m, f in mods.items()}
            content = np.concatenate([f / norms[m] for m, f in mods.items()], axis=1).astype(np.float32)
        module = GraphMultVAEModule(train, graph, tuple(cfg.hidden_dims), cfg.latent_dim, cfg.dropout,
                                    n_layers=cfg.n_layers, graph_weight=cfg.graph_weight,
                                    encoder_graph=cfg.encoder_graph, cold_neighbours=cfg.cold_items == "neighbours",
                                    content=content)
        task = MultVAETask(train, self._batch(train.shape[0]), anneal_cap=cfg.anneal_cap, total_anneal_steps=cfg.total_anneal_steps)
        return module, task

    def _export(self, module: nn.Module) -> None:
        self.module_ = module.baked() if isinstance(module, GraphMultVAEModule) else module.eval()
