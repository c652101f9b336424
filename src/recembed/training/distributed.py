"""Data-parallel training under ``torchrun``: the process group, batch sharding and the module wrapper.

``torchrun --nproc_per_node N -m recembed fit MODEL ... --distributed`` starts N processes; each builds the same
model from the same seed, draws the same *global* batch from the epoch's seeded generator (the task's order
and negatives), and trains on its slice of it: rank r takes rows ``[B r / N, B (r + 1) / N)``. The loss
and its task run inside :class:`TaskStep`, a module wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`
(gloo on the CPU, NCCL on CUDA), whose all-reduce averages the ranks' gradients; each rank's loss is
scaled by ``N b_r / B`` so that the average is the gradient of the global batch's mean loss, whatever the
split of the last, short batch. With a deterministic model (MF-BPR: no dropout) N ranks therefore follow
the 1-rank trajectory up to float summation order (``tests/test_distributed.py``); models with dropout draw
their masks per rank (torch's seed is offset by the rank), so they are equivalent in distribution only.

Rank 0 validates, decides early stopping and the time budget, writes checkpoints and the run; the other
ranks receive its decisions by broadcast every epoch. A resumed run loads the same checkpoint on every
rank, so resume is exact as in one process.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DistContext:
    rank: int
    world: int
    device: torch.device


def env_rank() -> int:
    """This process's rank under torchrun (0 outside it)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process(distributed: bool) -> bool:
    return not distributed or env_rank() == 0


def init_distributed(device: torch.device) -> DistContext:
    """Join (or reuse) the process group torchrun describes; the rank's device (``cuda:LOCAL_RANK`` on CUDA)."""
    import torch.distributed as dist

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ConfigError("--distributed: run under torchrun (torchrun --nproc_per_node N -m recembed fit ... "
                          "--distributed); RANK / WORLD_SIZE are not set")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"--distributed: supported on cpu (gloo) and cuda (NCCL), not {device.type}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def shard_batch(batch: Any, rank: int, world: int) -> tuple[Any, float]:
    """Rank ``rank``'s rows of a global batch and the weight ``N b_r / B`` of its mean loss.

    Every tensor (in a dataclass, tuple, list or dict) whose first dimension is the batch size ``B`` (that of
    the first tensor found) is sliced; other values (a step counter, a shared table) are kept whole."""
    size = _batch_size(batch)
    if size is None:
        raise ConfigError("--distributed: this model's training batches hold no tensor to shard")
    lo, hi = size * rank // world, size * (rank + 1) // world
    return _slice(batch, size, lo, hi), (hi - lo) * world / size


def _batch_size(batch: Any) -> int | None:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        values = [getattr(batch, f.name) for f in dataclasses.fields(batch)]
    elif isinstance(batch, dict):
        values = list(batch.values())
    elif isinstance(batch, (tuple, list)):
        values = list(batch)
    else:
        return None
    for v in values:
        size = _batch_size(v)
        if size is not None:
            return size
    return None


def _slice(batch: Any, size: int, lo: int, hi: int) -> Any:
    if isinstance(batch, torch.Tensor):
        if not batch.dim() or batch.shape[0] != size:
            return batch
        if batch.is_sparse:
            return batch.index_select(0, torch.arange(lo, hi, device=batch.device))
        return batch[lo:hi]
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: _slice(getattr(batch, f.name), size, lo, hi)
                                             for f in dataclasses.fields(batch)})
    if isinstance(batch, dict):
        return {k: _slice(v, size, lo, hi) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_slice(v, size, lo, hi) for v in batch)
    return batch


class TaskStep(nn.Module):
    """The loss of one step as a module (the task's loss on the wrapped model), so that DDP wraps the whole
    step: the model's own methods (``ego()``, ``encode()``, ...) stay reachable by the task, and DDP's
    forward bookkeeping sees every parameter the loss touches."""

    def __init__(self, module: nn.Module, task: Any) -> None:
        super().__init__()
        self.module = module
        self.task = task

    def forward(self, batch: Any, epoch: int, weight: float = 1.0) -> torch.Tensor:
        if weight == 0.0:  # a rank with no rows in a batch shorter than the world: a zero that touches every weight
            return sum((p.reshape(-1)[:1].sum() * 0.0 for p in self.module.parameters() if p.requires_grad),
                       torch.zeros((), device=_first_device(self.module)))
        loss = self.task.loss(self.module, batch, epoch)
        return loss * weight if weight != 1.0 else loss


def _first_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def wrap(step: TaskStep, ctx: DistContext) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(step, device_ids=ids, find_unused_parameters=_leaves_parameters_out(step, ctx))


def _leaves_parameters_out(step: TaskStep, ctx: DistContext) -> bool:
    """Whether a probe step (the first batch of a throwaway order; the weights, buffers and gradients restored
    after it) leaves a trainable parameter without a gradient: DDP must then look for unused parameters every
    step (an extra pass over the graph), else it can skip that."""
    import numpy as np

    from .device import to_device

    params = [p for p in step.module.parameters() if p.requires_grad]
    saved = {k: v.detach().clone() for k, v in step.module.state_dict().items()}
    rng_state = torch.get_rng_state()
    try:
        batch = next(iter(step.task.batches(0, np.random.default_rng(0))), None)
        if batch is None:
            return True
        batch, _ = shard_batch(to_device(batch, ctx.device), ctx.rank, ctx.world)
        step(batch, 0).backward()
        unused = any(p.grad is None for p in params)
    finally:
        for p in params:
            p.grad = None
        step.module.load_state_dict(saved)
        torch.set_rng_state(rng_state)
    import torch.distributed as dist

    flag = torch.tensor([float(unused)], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # unused on any rank
    return bool(flag.item())


def broadcast_decision(ctx: DistContext, values: list[float]) -> list[float]:
    """Rank 0's ``values`` (stop flags, the epoch's metric) on every rank."""
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if ctx.device.type == "cuda":
        t = t.to(ctx.device)
    dist.broadcast(t, src=0)
    return t.cpu().tolist()
