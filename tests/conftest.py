from __future__ import annotations

import os
from pathlib import Path

import pytest

try:  # tiny test models: one thread avoids OpenMP spin-waits on a busy 2-core machine
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

DATA_ROOT = Path(os.environ.get("RECEMBED_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))


def data_dir(name: str) -> Path:
    """The shared dataset folder, or skip the test with the reason."""
    path = DATA_ROOT / name
    if not path.is_dir():
        pytest.skip(f"shared dataset {name!r} not found under {DATA_ROOT} (set RECEMBED_DATA_ROOT)")
    return path
