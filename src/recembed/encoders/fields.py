"""Categorical, tag and numeric item fields as dense float32 feature blocks with a present mask."""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def encode_categorical(values: np.ndarray, *, min_count: int = 1, name: str = "categorical"
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One-hot of a single-token column (``""`` = missing). Tokens seen fewer than ``min_count`` times
    share one ``<rare>`` column. Returns ``(matrix (n, k), present (n,), column names)``."""
    values = np.asarray(values, dtype=object)
    present = np.array([v is not None and str(v) != "" for v in values], dtype=bool)
    tokens, counts = np.unique(np.asarray([str(v) for v in values[present]], dtype=object), return_counts=True)
    common = [str(t) for t, c in zip(tokens, counts) if c >= min_count]
    has_rare = len(common) < len(tokens)
    names = common + (["<rare>"] if has_rare else [])
    col = {t: i for i, t in enumerate(common)}
    out = np.zeros((len(values), len(names)), dtype=np.float32)
    rows = np.flatnonzero(present)
    idx = np.array([col.get(str(values[r]), len(common)) for r in rows], dtype=np.int64)
    out[rows, idx] = 1.0
    return out, present, [f"{name}={n}" for n in names]


def encode_tags(values: np.ndarray, *, min_count: int = 1, name: str = "tags"
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Multi-hot of a set-of-tokens column, each row scaled to unit L2 norm (an item with many tags does
    not outweigh one with few); tokens rarer than ``min_count`` are dropped."""
    values = np.asarray(values, dtype=object)
    counts: dict[str, int] = {}
    for v in values:
        for t in set(v or ()):
            counts[str(t)] = counts.get(str(t), 0) + 1
    names = sorted(t for t, c in counts.items() if c >= min_count)
    col = {t: i for i, t in enumerate(names)}
    out = np.zeros((len(values), len(names)), dtype=np.float32)
    for r, v in enumerate(values):
        idx = [col[str(t)] for t in set(v or ()) if str(t) in col]
        if idx:
            out[r, idx] = 1.0 / np.sqrt(len(idx))
    present = out.any(axis=1)
    return out, present, [f"{name}={n}" for n in names]


def encode_numeric(values: np.ndarray, *, name: str = "numeric", log1p: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Standardised numeric column (NaN = missing -> 0 after standardising, i.e. the mean) plus a
    missing-indicator column; ``log1p`` first for heavy-tailed counts (must then be >= 0)."""
    x = np.asarray(values, dtype=np.float64)
    if np.isinf(x).any():
        raise DataError(f"infinite value at row {int(np.flatnonzero(np.isinf(x))[0])}", field=name)
    present = ~np.isnan(x)
    if log1p:
        if (x[present] < 0).any():
            raise DataError(f"log1p needs values >= 0; row {int(np.flatnonzero(present & (x < 0))[0])} is negative",
                            field=name)
        x = np.log1p(x)
    mean = x[present].mean() if present.any() else 0.0
    std = x[present].std() if present.sum() > 1 else 1.0
    z = np.where(present, (x - mean) / (std if std > 0 else 1.0), 0.0)
    out = np.stack([z, (~present).astype(np.float64)], axis=1).astype(np.float32)
    return out, present, [name, f"{name}_missing"]
