"""What ``recembed fit`` checks before it reads any data: the model name, the ``--set`` keys and values, the split
spec and the checkpoint options. A mistake there stops the command at once (exit code 2, a message naming the
flag), not after the data is loaded or training has started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def has_checkpoint(directory: str | Path) -> bool:
    """A checkpoint in ``directory`` (or in an ensemble's ``member-*`` folders)."""
    d = Path(directory)
    return (d / "checkpoint.json").is_file() or any(d.glob("member-*/checkpoint.json"))


def check_resume(model_cls: type, checkpoint_dir: str | None, resume: bool) -> None:
    """``--resume`` needs a trainable model and a ``--checkpoint-dir`` that holds a checkpoint."""
    if not (resume or checkpoint_dir):
        return
    from ..models.ensemble import Ensemble
    from ..models.trainable import TrainableRecommender

    if not issubclass(model_cls, TrainableRecommender | Ensemble):
        flag = "--resume" if resume else "--checkpoint-dir"
        raise click.UsageError(f"{flag}: {model_cls.name} is not trained epoch by epoch, so it has no checkpoints "
                               f"(drop {flag})")
    if not resume:
        return
    if not checkpoint_dir:
        raise click.UsageError("--resume needs --checkpoint-dir DIR (the folder a previous fit wrote checkpoints to); "
                               "drop --resume to start fresh")
    if not Path(checkpoint_dir).is_dir():
        raise click.UsageError(f"--resume: checkpoint folder {checkpoint_dir} does not exist; drop --resume to start "
                               f"fresh (with --checkpoint-dir {checkpoint_dir} to write checkpoints there)")
    if not has_checkpoint(checkpoint_dir):
        raise click.UsageError(f"--resume: no checkpoint in {checkpoint_dir} (no checkpoint.json); drop --resume to "
                               "start fresh")


def check_fit(model: str, params: dict[str, Any], split_spec: str | None, checkpoint_dir: str | None,
              resume: bool) -> None:
    """Everything ``fit`` can refuse without the data (RecembedError / UsageError: exit code 2)."""
    from ..data.splits import check_split_spec
    from ..models.registry import model_class

    cls = model_class(model)  # an unknown name, with the closest one suggested
    cls(**params)  # unknown --set keys (suggested), wrong types, values out of range
    if split_spec:
        check_split_spec(split_spec)
    check_resume(cls, checkpoint_dir, resume)


def device_options(f):  # noqa: ANN001, ANN201 - a click decorator
    """``--device``, ``--precision``, ``--distributed`` and ``--shard``: where and how a trainable model trains."""
    f = click.option("--shard", default=None, metavar="table|row[:MB]",
                     help="With --distributed: shard the embedding tables across the ranks with TorchRec "
                          "(table-wise or row-wise; :MB caps each rank's table memory in the planner). Needs "
                          "recembed[torchrec] (docs/scale.md).")(f)
    f = click.option("--distributed", is_flag=True,
                     help="Data-parallel training under torchrun (torchrun --nproc_per_node N -m recembed fit ...): "
                          "DistributedDataParallel, gloo on the CPU / NCCL on CUDA; rank 0 writes the run.")(f)
    f = click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
                     help="bf16: the loss under bfloat16 autocast (weights stay float32).")(f)
    return click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda|cuda:N|mps|auto",
                        help="Torch device for training and validation (auto: CUDA, else MPS, else the CPU).")(f)


def is_main_process(distributed: bool) -> bool:
    """Rank 0 under torchrun, or any process outside it (no torch import)."""
    import os

    return not distributed or os.environ.get("RANK", "0") == "0"


def check_device_options(device: str, precision: str, distributed: bool, shard: str | None = None
                         ) -> dict[str, Any]:
    """The device exists here (else exit 2 naming ``--device``), ``--distributed`` runs under torchrun and
    ``--shard`` is well-formed and used with it; the FitOptions fields they set."""
    import os

    if device != "cpu":
        from ..training.device import resolve_device

        resolve_device(device)
    if shard is not None:
        from ..scale.spec import parse_shard  # no torch / torchrec import

        parse_shard(shard)
        if not distributed:
            raise click.UsageError("--shard: shards the tables across torchrun ranks; add --distributed and run "
                                   "under torchrun (torchrun --nproc_per_node N -m recembed fit MODEL ... "
                                   "--distributed --shard row)")
    if distributed and ("RANK" not in os.environ or "WORLD_SIZE" not in os.environ):
        raise click.UsageError("--distributed: run under torchrun, e.g. torchrun --nproc_per_node 2 -m recembed fit "
                               "MODEL ... --distributed (RANK / WORLD_SIZE are not set)")
    return {"device": device, "precision": precision, "distributed": distributed, "shard": shard}
