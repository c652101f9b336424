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
