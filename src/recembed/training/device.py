"""Where tensors live: the one place that resolves ``--device``, moves batches and task tensors, picks the
sparse kernel, and opens mixed precision.

``resolve_device("auto" | "cpu" | "cuda" | "cuda:N" | "mps")`` refuses a device this machine does not have
with a :class:`~recembed.errors.ConfigError` naming ``--device`` (the CLI turns it into exit code 2), instead
of a torch traceback in the middle of a fit. ``to_device(batch, device)`` walks a batch (a tensor, a
dataclass, a tuple / list / dict of them) and moves every tensor; ``move_tensors(obj, device)`` moves the plain
tensor attributes of a task (log-popularity tables, masks), which ``module.to`` cannot see.

Sparse graph propagation (LightGCN and the graph family) stays on SciPy on a CPU, where its CSR kernel is an
order of magnitude faster than torch's; on an accelerator it goes through torch sparse CSR on the device:
:class:`SymmetricSpMM` makes that choice once for every caller.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("fp32", "bf16")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """The torch device for ``name``; ``auto`` is CUDA when present, else MPS, else the CPU."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "cpu").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device: unknown device {name!r}; expected one of {', '.join(DEVICES)}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine (torch "
                              f"{torch.__version__}, built {'with' if torch.backends.cuda.is_built() else 'without'} "
                              "CUDA); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not _mps_available():
            raise ConfigError(f"--device {name}: MPS (Apple GPU) is not available on this machine; use --device cpu")
    elif device.type != "cpu":
        raise ConfigError(f"--device: {name!r} is not supported; expected one of {', '.join(DEVICES)}")
    return device


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it on ``device`` (the same object when it is already there)."""
    if isinstance(batch, torch.Tensor):
        return batch if batch.device == device else batch.to(device, non_blocking=True)
    if device.type == "cpu":
        return batch  # the tasks build their batches on the CPU
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {f.name: to_device(getattr(batch, f.name), device) for f in dataclasses.fields(batch)}
        return dataclasses.replace(batch, **changes)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def move_tensors(obj: Any, device: torch.device) -> None:
    """Move the plain tensor attributes of ``obj`` (a task: popularity tables, masks) to ``device``."""
    if device.type == "cpu":
        return
    for name, value in list(vars(obj).items()):
        if isinstance(value, torch.Tensor) and value.device != device:
            setattr(obj, name, value.to(device))


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (the CPU for a module without parameters)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` for ``precision="bf16"``; a no-op context for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float32 / int host array of ``t`` (a copy only when it is on an accelerator or in bf16)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.cpu().numpy() if t.device.type != "cpu" else t.numpy()


# -- sparse propagation ---------------------------------------------------------------------------
_ON_DEVICE: dict[int, dict[torch.device, torch.Tensor]] = {}  # id(SciPy matrix) -> {device: torch CSR copy}


def _on(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    key = id(matrix)
    if key not in _ON_DEVICE:  # SciPy matrices are unhashable: keyed by id, dropped when the matrix is
        _ON_DEVICE[key] = {}
        weakref.finalize(matrix, _ON_DEVICE.pop, key, None)
    copies = _ON_DEVICE[key]
    if device not in copies:
        from .._compute import torch_csr

        copies[device] = torch_csr(matrix).to(device)
    return copies[device]


def sparse_times(matrix: sp.csr_matrix, dense: torch.Tensor) -> torch.Tensor:
    """``matrix @ dense`` (no autograd) where ``dense`` lives: SciPy's CSR kernel on a CPU (an order of magnitude
    faster than torch's CPU sparse kernels for these shapes), a torch sparse CSR copy of ``matrix`` on an
    accelerator (made once per device, dropped with the matrix)."""
    dense = dense.detach()
    if dense.device.type == "cpu":
        return torch.from_numpy(matrix @ dense.float().numpy())
    return _on(matrix, dense.device) @ dense.float()


class SymmetricSpMM(torch.autograd.Function):
    """``A @ E`` for a fixed symmetric sparse ``A`` (SciPy CSR); the gradient is ``A^T @ grad = A @ grad``.
    The graph models' propagation (LightGCN, SimGCL, AlphaRec, BM3, MGCN, FREEDOM) goes through here."""

    @staticmethod
    def forward(ctx, adjacency: sp.csr_matrix, dense: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.adjacency = adjacency
        return sparse_times(adjacency, dense)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:  # noqa: ANN001
        return None, sparse_times(ctx.adjacency, grad.contiguous())
