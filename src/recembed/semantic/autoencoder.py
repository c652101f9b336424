"""What RQ-VAE and FSQ share: the MLP encoder / decoder, the config, and the training loop.

A quantised autoencoder module implements

* ``forward(x (B, D)) -> (recon (B, D), codes (B, L) int64, quant_loss scalar)``;
* ``encode_codes(x (B, D)) -> codes (B, L)`` and ``decode_codes(codes (B, L)) -> (B, D)`` (eval mode);
* optionally ``initialise(x_first_batch, rng)`` (called once, before the first step) and
  ``end_epoch(usage (L, K), x_sample, rng) -> list[int]`` (after each epoch; returns codes restarted per level).

:func:`train_quantized_autoencoder` runs Adam on ``MSE(recon, x) + quant_loss`` over shuffled mini-batches and
records per epoch the reconstruction MSE, the quantisation loss, the codebook utilisation of each level (the
fraction of codes that at least one item of the epoch used) and the codes restarted.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config import check
from ..errors import NotFittedError


@dataclass(frozen=True)
class AutoencoderConfig:
    """Shared by the RQ-VAE and FSQ tokenizers."""

    levels: int = 3
    """Code levels of the semantic ID (before the collision level)."""
    codebook: int = 256
    """Codes per level."""
    hidden: tuple[int, ...] = (512, 256, 128)
    """Encoder hidden widths (the decoder mirrors them)."""
    epochs: int = 200
    """Training epochs (passes over the items)."""
    batch_size: int = 1024
    """Items per step."""
    learning_rate: float = 1e-3
    """Adam step size."""
    weight_decay: float = 0.0
    """Adam L2 weight decay."""
    dropout: float = 0.0
    """Dropout between the encoder's hidden layers."""

    def __post_init__(self) -> None:
        check(self.levels >= 1, "levels", f"must be >= 1, got {self.levels}")
        check(self.codebook >= 2, "codebook", f"must be >= 2, got {self.codebook}")
        check(all(h >= 1 for h in self.hidden), "hidden", f"widths must be >= 1, got {self.hidden}")
        check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """``Linear -> ReLU (-> Dropout)`` between consecutive ``sizes``; no activation after the last layer."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def train_quantized_autoencoder(module: nn.Module, x: torch.Tensor, config: AutoencoderConfig, *, seed: int,
                                progress: bool = False, label: str = "tokenizer") -> list[dict[str, Any]]:
    """Fit ``module`` on ``x (n, D)``; returns the per-epoch history (see the module docstring)."""
    n = x.shape[0]
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng([seed, 1])
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    levels, size = config.levels, config.codebook
    steps = -(-n // config.batch_size)
    history: list[dict[str, Any]] = []
    bar = StepBar(progress, config.epochs, label)
    with bar:
        for epoch in range(config.epochs):
            t0 = time.perf_counter()
            module.train()
            perm = torch.randperm(n, generator=gen)
            usage = torch.zeros(levels, size, dtype=torch.int64)
            rec_sum = quant_sum = 0.0
            for step in range(steps):
                xb = x[perm[step * config.batch_size : (step + 1) * config.batch_size]]
                if epoch == 0 and step == 0 and hasattr(module, "initialise"):
                    module.initialise(xb, rng)
                recon, codes, quant = module(xb)
                rec = F.mse_loss(recon, xb)
                loss = rec + quant
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {float(loss)} at epoch {epoch + 1}; lower learning_rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                rec_sum += float(rec.detach()) * len(xb)
                quant_sum += float(quant.detach()) * len(xb)
                usage += _usage(codes, size)
            restarted = [0] * levels
            if hasattr(module, "end_epoch"):
                sample = x[torch.randperm(n, generator=gen)[: max(config.batch_size, 4 * size)]]
                restarted = module.end_epoch(usage, sample, rng)
            record = {
                "epoch": epoch + 1,
                "recon": rec_sum / n,
                "quant": quant_sum / n,
                "utilisation": [round(float(u), 4) for u in (usage > 0).float().mean(1)],
                "restarted": [int(r) for r in restarted],
                "seconds": round(time.perf_counter() - t0, 4),
            }
            history.append(record)
            bar.advance(f"recon {record['recon']:.4g}  quant {record['quant']:.3g}  "
                        f"util {'/'.join(f'{u:.2f}' for u in record['utilisation'])}")
    module.eval()
    return history


def _usage(codes: torch.Tensor, size: int) -> torch.Tensor:
    """``(L, K)`` how often each code of each level occurs in ``codes (B, L)``."""
    levels = codes.shape[1]
    offsets = torch.arange(levels, dtype=torch.int64) * size
    return torch.bincount((codes + offsets).reshape(-1), minlength=levels * size).view(levels, size)


@torch.no_grad()
def batched(fn, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:  # noqa: ANN001
    """``fn`` applied to row blocks of ``x`` and concatenated (inference without building one huge graph)."""
    return torch.cat([fn(x[s : s + batch_size]) for s in range(0, max(len(x), 1), batch_size)])


class StepBar:
    """A rich progress bar, one step per epoch or level (no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled, self.total, self.label, self._bar = enabled, total, label, None

    def __enter__(self) -> StepBar:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, info: str = "") -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, info=info)


class QuantizedAutoencoder:
    """The tokenizer facade shared by RQ-VAE and FSQ: ``fit(x)`` trains ``module_class(input_dim, config)``;
    ``encode(x) -> codes (n, L)``; ``decode(codes) -> (n, D)``. Subclasses set ``module_class`` and ``label``."""

    module_class: type[nn.Module]
    label: str

    def __init__(self, config: AutoencoderConfig | None = None) -> None:
        self.config = config if config is not None else self.default_config()
        self.module_: nn.Module | None = None
        self.history_: list[dict] = []

    @classmethod
    def default_config(cls) -> AutoencoderConfig:
        raise NotImplementedError

    def fit(self, x: np.ndarray, *, seed: int = 0, progress: bool = False) -> QuantizedAutoencoder:
        torch.manual_seed(seed)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.module_ = self.module_class(xt.shape[1], self.config)
        self.history_ = train_quantized_autoencoder(self.module_, xt, self.config, seed=seed, progress=progress,
                                                    label=self.label)
        return self

    def _module(self) -> nn.Module:
        if self.module_ is None:
            raise NotFittedError(f"{type(self).__name__} used before fit")
        self.module_.eval()
        return self.module_

    def encode(self, x: np.ndarray) -> np.ndarray:
        m = self._module()
        return batched(m.encode_codes, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    def decode(self, codes: np.ndarray) -> np.ndarray:
        m = self._module()
        return batched(m.decode_codes, torch.as_tensor(np.asarray(codes, dtype=np.int64))).numpy()

    def reconstruction_mse(self, x: np.ndarray) -> float:
        """Mean squared error of ``decode(encode(x))`` against ``x``."""
        x = np.asarray(x, dtype=np.float32)
        return float(((self.decode(self.encode(x)) - x) ** 2).mean())
