"""FSQ tokenizer: finite scalar quantisation of an MLP autoencoder's latent (Mentzer et al. 2023, "Finite Scalar
Quantization: VQ-VAE Made Simple", ICLR 2024).

The encoder emits ``L x d`` numbers; each is bounded and rounded to one of ``q`` values (straight-through
gradient), so every group of ``d`` numbers is one of ``q^d`` codes. Group ``l`` gives position ``l`` of the
semantic ID as the mixed-radix number of its ``d`` digits, with ``q^d = codebook`` (256 = 4^4 by default).
There is no codebook to learn, hence no collapse and no auxiliary loss: the loss is the reconstruction MSE.

Deviations from the paper: the bound is ``(tanh(z) + 1) / 2 * q - 1/2`` rounded and clamped to
``0 .. q-1`` (equal-width bins in tanh space for every ``q``, odd or even) rather than the paper's
``floor(q/2) tanh(z)`` with an offset for even ``q``; the decoder reads the digits rescaled to ``[-1, 1]``.
Unlike RQ-VAE or residual k-means the ``L`` positions are parallel groups, not coarse-to-fine residuals, so
items that share a prefix are not necessarily closer than others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import check
from ..errors import ConfigError
from .autoencoder import AutoencoderConfig, QuantizedAutoencoder, mlp


def factor_codebook(codebook: int, dims_per_level: int = 0) -> tuple[int, int]:
    """``(q, d)`` with ``q ** d == codebook``: ``d`` given, or the most dims with ``q >= 3`` (256 -> 4^4)."""
    candidates = [dims_per_level] if dims_per_level else range(int(np.log2(max(codebook, 2))), 0, -1)
    for d in candidates:
        q = round(codebook ** (1.0 / d))
        for qq in (q - 1, q, q + 1):
            if qq >= 2 and qq**d == codebook and (dims_per_level or qq >= 3 or d == 1):
                return qq, d
    raise ConfigError(f"codebook: {codebook} is not q^d for an integer q >= 2"
                      + (f" with dims_per_level={dims_per_level}" if dims_per_level else ""))


@dataclass(frozen=True)
class FSQConfig(AutoencoderConfig):
    """FSQ tokenizer."""

    dims_per_level: int = 0
    """Bounded dims per semantic-ID position, ``d`` with ``q ** d == codebook`` (0: the most dims with
    ``q >= 3``: 256 -> 4 dims of 4 levels)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.dims_per_level >= 0, "dims_per_level", f"must be >= 0, got {self.dims_per_level}")
        factor_codebook(self.codebook, self.dims_per_level)


class FSQModule(nn.Module):
    def __init__(self, input_dim: int, config: FSQConfig) -> None:
        super().__init__()
        self.q, self.d = factor_codebook(config.codebook, config.dims_per_level)
        self.levels = config.levels
        width = config.levels * self.d
        self.encoder = mlp([input_dim, *config.hidden, width], config.dropout)
        self.decoder = mlp([width, *reversed(config.hidden), input_dim])
        self.register_buffer("radix", self.q ** torch.arange(self.d, dtype=torch.int64))  # (d,)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z (B, L*d)`` -> ``(digits rescaled to [-1, 1] with straight-through (B, L*d), codes (B, L))``."""
        q = self.q
        bounded = (torch.tanh(z) + 1.0) * (q / 2.0) - 0.5  # (B, L*d) in (-0.5, q - 0.5)
        digits = bounded.detach().round().clamp_(0, q - 1)
        st = bounded + (digits - bounded).detach()
        codes = (digits.long().view(-1, self.levels, self.d) * self.radix).sum(-1)  # (B, L)
        return st * (2.0 / max(q - 1, 1)) - 1.0, codes

    def digits_of(self, codes: torch.Tensor) -> torch.Tensor:
        """Inverse of the mixed-radix code: ``codes (B, L)`` -> ``digits (B, L*d)``."""
        return ((codes[..., None] // self.radix) % self.q).reshape(codes.shape[0], -1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z_q, codes = self.quantize(self.encoder(x))
        return self.decoder(z_q), codes, x.new_zeros(())

    @torch.no_grad()
    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize(self.encoder(x))[1]

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.digits_of(codes).float() * (2.0 / max(self.q - 1, 1)) - 1.0)


class FSQ(QuantizedAutoencoder):
    """``fit(x)`` trains the autoencoder; ``encode(x) -> codes (n, L)``; ``decode(codes) -> (n, D)``."""

    module_class = FSQModule
    label = "FSQ"

    @classmethod
    def default_config(cls) -> FSQConfig:
        return FSQConfig()
