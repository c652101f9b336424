"""The environment of a run, kept apart from hyperparameters: seed, threads, device, progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FitOptions:
    """How (not what) to fit: nothing here changes a model's definition."""

    seed: int = 2020
    """Random seed for everything a fit draws."""
    threads: int | None = None
    """CPU threads for BLAS / torch (None: leave the library default)."""
    device: str = "cpu"
    """Torch device for trainable models: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (CUDA, else MPS, else
    the CPU). Training steps and validation run there; the fitted weights come back to the host for export."""
    precision: str = "fp32"
    """``fp32``, or ``bf16``: the loss computed under bfloat16 autocast (weights and optimizer stay float32)."""
    distributed: bool = False
    """Data-parallel training under ``torchrun`` (``DistributedDataParallel``; gloo on the CPU, NCCL on CUDA):
    each rank trains on its slice of every global batch; rank 0 validates, checkpoints and writes the run."""
    shard: str | None = None
    """With ``distributed``: the embedding tables sharded across the ranks with TorchRec (``table`` / ``row``, or
    ``table:MB`` / ``row:MB`` to cap each rank's table memory in the planner; the optional ``recembed[torchrec]``
    extra, see :mod:`recembed.scale.sharding`). None: every rank holds every table (plain DDP)."""
    show_progress: bool = True
    """Show progress bars on the terminal."""
    memory_budget_mb: int | None = None
    """Cap on the memory a closed-form fit may plan for (None: what the machine has available)."""
    checkpoint_dir: str | None = None
    """Where trainable models write checkpoints (None: no checkpoints)."""
    resume: bool = False
    """Continue from the checkpoint in ``checkpoint_dir`` if there is one."""
    epoch_callback: Callable[[dict[str, Any]], None] | None = None
    """Called by the trainer after every epoch with that epoch's history record (``epoch``, ``loss``,
    ``valid_<metric>`` when it validated, ``elapsed_seconds``); it may raise to end the fit there (``recembed tune``
    reports to Optuna and raises ``TrialPruned``). None: nothing is called (the default)."""
