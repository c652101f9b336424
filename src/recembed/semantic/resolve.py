"""Where a model's semantic IDs come from: a config string resolved at fit time, saved with the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .ids import SemanticIds


def resolve_semantic_ids(spec: str, num_items: int, item_ids: np.ndarray | None = None, *, seed: int = 0,
                         levels: int = 3, codebook: int = 256, id_offset: int = 0,
                         field: str = "semantic_ids") -> SemanticIds:
    """``spec``: ``random`` (``levels`` random codes of ``codebook`` values, the TIGER paper's ablation), a
    folder written by ``SemanticIds.save`` / ``recembed tokenize``, or a LETTER / LC-Rec ``*.index.json`` file
    (an item's key is its external id plus ``id_offset``). Collisions get the disambiguation level, so the
    result is always unique. ``field`` names the config key in errors."""
    if spec == "random":
        rng = np.random.default_rng(seed)
        sid = SemanticIds(rng.integers(0, codebook, (num_items, levels)), (codebook,) * levels, "random")
    else:
        path = Path(spec)
        if path.is_dir():
            sid = SemanticIds.load(path)
        elif path.suffix == ".json" and path.exists():
            ids = item_ids if item_ids is not None else np.arange(num_items).astype(str)
            sid = SemanticIds.read_index_json(path, ids, id_offset=id_offset)
        else:
            raise ConfigError(f"{field}: {spec!r} is not 'random', a semantic-ID folder or an existing "
                              "*.index.json file")
    if sid.num_items != num_items:
        raise ConfigError(f"{field}: {spec!r} has codes for {sid.num_items} items, the data has {num_items}")
    return sid if sid.is_unique() else sid.deduplicated()


def semantic_ids_for_fit(config: Any, num_items: int, context: dict[str, Any], seed: int) -> SemanticIds:
    """Resolve ``config.semantic_ids`` (with its ``id_offset`` and, when present, ``levels`` / ``codebook``) for
    a model being fitted; ``context["items"]`` (the item vocabulary) maps external ids for ``*.index.json``."""
    items = context.get("items")
    return resolve_semantic_ids(config.semantic_ids, num_items, None if items is None else items.ids, seed=seed,
                                levels=getattr(config, "levels", 3), codebook=getattr(config, "codebook", 256),
                                id_offset=config.id_offset)


def sid_state(sid: SemanticIds) -> dict[str, Any]:
    """Arrays that save a model's semantic IDs with its weights."""
    return {"sid_codes": sid.codes, "sid_sizes": np.asarray(sid.sizes, np.int64)}


def sid_from_state(state: dict[str, Any]) -> SemanticIds | None:
    """Pop what :func:`sid_state` wrote (None when the model was saved without semantic IDs)."""
    if "sid_codes" not in state:
        return None
    codes, sizes = state.pop("sid_codes"), state.pop("sid_sizes")
    return SemanticIds(codes, tuple(int(s) for s in sizes), "saved")
