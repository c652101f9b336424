"""Item content for content models: which item-table vector columns to read, and how.

``ContentFields`` is the config block every content model shares (``features``, ``feature_norm``);
:func:`content_matrix` reads those columns into one ``(I, F)`` matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ...errors import ConfigError


@dataclass(frozen=True)
class ContentFields:
    features: str = ""
    """Comma-separated vector columns of the item table to use ("" = all vector columns)."""
    feature_norm: Literal["l2", "none"] = "l2"
    """Per-column row normalisation of the content vectors before concatenation."""


def content_matrix(table, features: str, norm: str, num_items: int) -> tuple[np.ndarray, list[str]]:  # noqa: ANN001
    """``(I, F)`` float32 content vectors from the item table's vector columns (see the module docstring)."""
    if table is None or not table.names("vector"):
        raise ConfigError("this model needs item content: an item table with vector columns (e.g. tiktok-mm's "
                          "image_feat / audio_feat, or `recembed encode` output)")
    names = [n for n in features.split(",") if n] or table.names("vector")
    blocks = []
    for n in names:
        if table.kinds.get(n) != "vector":
            raise ConfigError(f"features: {n!r} is not a vector column; vector columns: {table.names('vector')}")
        v = np.asarray(table[n], dtype=np.float32)
        if norm == "l2":
            norms = np.linalg.norm(v, axis=1, keepdims=True)
            v = v / np.where(norms > 0, norms, 1.0)
        blocks.append(v)
    out = np.concatenate(blocks, axis=1)
    if out.shape[0] != num_items:
        raise ConfigError(f"item table has {out.shape[0]} rows, the interactions {num_items} items")
    return np.ascontiguousarray(out, dtype=np.float32), names
