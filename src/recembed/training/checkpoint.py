"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is ``checkpoint.json`` (the commit point, written last and atomically) naming a
``checkpoint-EPOCH.safetensors`` file and its SHA-256. A crash while writing leaves the previous
checkpoint intact; a truncated, edited or mismatched file is a clear error naming the file, never a
silent restart from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import DataError
from ..io import atomic_write, read_json, sha256_file, write_json

FORMAT = 1


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, extra in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(extra)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(directory: str | Path, *, model: dict[str, torch.Tensor], optimizer: dict[str, Any],
                    best: dict[str, torch.Tensor] | None, meta: dict[str, Any]) -> Path:
    """Write a checkpoint; ``meta`` must be JSON-serialisable and hold ``epoch``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.items()}
    if best is not None:
        tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best.items()})
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    tensors.update(opt_tensors)
    name = f"checkpoint-{int(meta['epoch'])}.safetensors"
    atomic_write(directory / name, lambda p: save_file(tensors, str(p)))
    previous = read_json(directory / "checkpoint.json")["file"] if (directory / "checkpoint.json").exists() else None
    write_json(directory / "checkpoint.json", {
        "format": FORMAT, "file": name, "sha256": sha256_file(directory / name), "optimizer": opt_meta, **meta,
    })
    if previous and previous != name:
        (directory / previous).unlink(missing_ok=True)
    return directory / "checkpoint.json"


def load_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """The checkpoint in ``directory`` or None if there is none; a damaged one is a DataError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    index = directory / "checkpoint.json"
    if not index.exists():
        return None
    meta = read_json(index)
    if meta.get("format") != FORMAT or "file" not in meta:
        raise DataError(f"not a recembed checkpoint (format {meta.get('format')!r})", path=index)
    path = directory / meta["file"]
    if not path.exists():
        raise DataError(f"checkpoint weights {meta['file']} are missing", path=index)
    if sha256_file(path) != meta["sha256"]:
        raise DataError("checkpoint weights do not match their recorded SHA-256 (corrupted or replaced)", path=path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise DataError(f"unreadable checkpoint weights ({exc})", path=path) from None
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    best = {k[len("best."):]: v for k, v in tensors.items() if k.startswith("best.")} or None
    optim = _unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith("optim.")}, meta["optimizer"])
    return {"model": model, "best": best, "optimizer": optim, "meta": meta, "path": path}
