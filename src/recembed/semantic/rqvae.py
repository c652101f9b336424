"""RQ-VAE tokenizer: an MLP autoencoder whose latent is quantised by ``L`` residual codebooks.

Residual quantisation as in SoundStream (Zeghidour et al. 2021) and TIGER's semantic IDs (Rajput et al. 2023,
"Recommender Systems with Generative Retrieval", Section 3.1): ``z = E(x)``; level ``l`` picks the code
nearest to the residual ``r_l`` (``r_1 = z``, ``r_{l+1} = r_l - e_l``); the decoder reads
``z_q = e_1 + ... + e_L`` with the straight-through estimator (``z + sg(z_q - z)``). Loss:
``MSE(D(z_q), x) + sum_l ||sg(r_l) - e_l||^2 + beta ||r_l - sg(e_l)||^2`` with ``beta = 0.25``.

* Codebooks are initialised by k-means on the first batch's residuals, level by level (TIGER).
* ``ema=True``: codebooks move by exponential moving averages of the residuals assigned to them (van den
  Oord et al. 2017, Appendix; Razavi et al. 2019) and the loss keeps only the commitment term.
* Dead-code restarts (Dhariwal et al. 2020, Jukebox; Zeghidour et al. 2021): after each epoch, codes that
  no item of the epoch used are re-seeded from random current residuals of a sample of items.

Deviations from TIGER: Adam at 1e-3 for ``epochs`` (default 200) instead of Adagrad at 0.4 for 20k epochs;
losses are means per element (MSE), not sums; the residual passed to the next level is detached from the
codebook (as in common RQ implementations); the input is any item vector, not only Sentence-T5 text vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config import check
from .autoencoder import AutoencoderConfig, QuantizedAutoencoder, mlp
from .rkmeans import kmeans, nearest


@dataclass(frozen=True)
class RQVAEConfig(AutoencoderConfig):
    """RQ-VAE tokenizer."""

    latent_dim: int = 32
    """Width of the quantised latent ``z``."""
    beta: float = 0.25
    """Weight of the commitment loss ``||r - sg(e)||^2``."""
    ema: bool = False
    """Update codebooks by exponential moving averages instead of the codebook loss."""
    ema_decay: float = 0.99
    """EMA decay (``ema=True``)."""
    kmeans_init: bool = True
    """Initialise the codebooks by k-means on the first batch's residuals (False: random normal)."""
    kmeans_iterations: int = 20
    """Lloyd iterations of that initialisation."""
    restart_dead: bool = True
    """Re-seed codes unused for a whole epoch from random current residuals."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.latent_dim >= 1, "latent_dim", f"must be >= 1, got {self.latent_dim}")
        check(self.beta >= 0, "beta", f"must be >= 0, got {self.beta}")
        check(0 < self.ema_decay < 1, "ema_decay", f"must be in (0, 1), got {self.ema_decay}")
        check(self.kmeans_iterations >= 1, "kmeans_iterations", f"must be >= 1, got {self.kmeans_iterations}")


class ResidualQuantizer(nn.Module):
    """``L`` codebooks ``(L, K, d)``; ``forward(z) -> (z_q straight-through, codes (B, L), loss)``."""

    def __init__(self, levels: int, size: int, dim: int, *, beta: float = 0.25, ema: bool = False,
                 decay: float = 0.99, eps: float = 1e-5) -> None:
        super().__init__()
        self.levels, self.size, self.dim, self.beta, self.ema, self.decay, self.eps = (
            levels, size, dim, beta, ema, decay, eps)
        init = torch.randn(levels, size, dim) * 0.1
        if ema:
            self.register_buffer("codebooks", init)
            self.register_buffer("cluster_size", torch.ones(levels, size))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.codebooks = nn.Parameter(init)

    def _assign(self, residual: torch.Tensor, level: int) -> torch.Tensor:
        return nearest(residual.detach(), self.codebooks[level].detach())[0]

    @torch.no_grad()
    def _set_codes(self, level: int, which: torch.Tensor, vectors: torch.Tensor) -> None:
        self.codebooks.data[level, which] = vectors
        if self.ema:
            self.cluster_size[level, which] = 1.0
            self.embed_sum[level, which] = vectors

    @torch.no_grad()
    def _ema_update(self, level: int, residual: torch.Tensor, idx: torch.Tensor) -> None:
        counts = torch.bincount(idx, minlength=self.size).to(residual.dtype)
        sums = torch.zeros(self.size, self.dim, dtype=residual.dtype).index_add_(0, idx, residual)
        self.cluster_size[level].mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum[level].mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size[level].sum()
        smoothed = (self.cluster_size[level] + self.eps) / (n + self.size * self.eps) * n  # Laplace smoothing
        self.codebooks[level] = self.embed_sum[level] / smoothed[:, None]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        residual, total = z, torch.zeros_like(z)
        loss = z.new_zeros(())
        codes = []
        for level in range(self.levels):
            idx = self._assign(residual, level)
            e = F.embedding(idx, self.codebooks[level])  # (B, d)
            if self.ema:
                loss = loss + self.beta * F.mse_loss(residual, e.detach())
                if self.training:
                    self._ema_update(level, residual.detach(), idx)
            else:
                loss = loss + F.mse_loss(e, residual.detach()) + self.beta * F.mse_loss(residual, e.detach())
            total = total + e
            residual = residual - e.detach()
            codes.append(idx)
        z_q = z + (total - z).detach()  # straight-through: the decoder's gradient reaches the encoder
        return z_q, torch.stack(codes, 1), loss

    @torch.no_grad()
    def kmeans_init(self, z: torch.Tensor, rng: np.random.Generator, iterations: int) -> None:
        residual = z.detach()
        for level in range(self.levels):
            centroids, _ = kmeans(residual, self.size, rng=rng, iterations=iterations)
            self._set_codes(level, torch.arange(self.size), centroids)
            residual = residual - centroids[nearest(residual, centroids)[0]]

    @torch.no_grad()
    def restart_dead(self, usage: torch.Tensor, z: torch.Tensor, rng: np.random.Generator) -> list[int]:
        """Re-seed the codes with ``usage == 0`` from random residuals of ``z``, level by level."""
        residual, restarted = z.detach(), []
        for level in range(self.levels):
            dead = torch.nonzero(usage[level] == 0).flatten()
            if len(dead):
                rows = rng.choice(len(residual), size=len(dead), replace=len(dead) > len(residual))
                self._set_codes(level, dead, residual[torch.from_numpy(rows)])
            restarted.append(len(dead))
            residual = residual - self.codebooks[level][self._assign(residual, level)]
        return restarted


class RQVAEModule(nn.Module):
    def __init__(self, input_dim: int, config: RQVAEConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.encoder = mlp([input_dim, *c.hidden, c.latent_dim], c.dropout)
        self.decoder = mlp([c.latent_dim, *reversed(c.hidden), input_dim])
        self.quantizer = ResidualQuantizer(c.levels, c.codebook, c.latent_dim, beta=c.beta, ema=c.ema,
                                           decay=c.ema_decay)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z_q, codes, loss = self.quantizer(self.encoder(x))
        return self.decoder(z_q), codes, loss

    def initialise(self, x: torch.Tensor, rng: np.random.Generator) -> None:
        if self.config.kmeans_init:
            with torch.no_grad():
                self.quantizer.kmeans_init(self.encoder(x), rng, self.config.kmeans_iterations)

    def end_epoch(self, usage: torch.Tensor, x: torch.Tensor, rng: np.random.Generator) -> list[int]:
        if not self.config.restart_dead:
            return [0] * self.config.levels
        with torch.no_grad():
            self.eval()
            return self.quantizer.restart_dead(usage, self.encoder(x), rng)

    @torch.no_grad()
    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer(self.encoder(x))[1]

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        q = self.quantizer
        z_q = sum(q.codebooks[lv][codes[:, lv]] for lv in range(codes.shape[1]))
        return self.decoder(z_q)


class RQVAE(QuantizedAutoencoder):
    """``fit(x)`` trains the autoencoder; ``encode(x) -> codes (n, L)``; ``decode(codes) -> (n, D)``.

    ``history_`` holds per epoch: ``recon`` (MSE), ``quant`` (codebook + commitment loss), ``utilisation``
    per level, ``restarted`` codes per level, ``seconds``.
    """

    module_class = RQVAEModule
    label = "RQ-VAE"

    @classmethod
    def default_config(cls) -> RQVAEConfig:
        return RQVAEConfig()
