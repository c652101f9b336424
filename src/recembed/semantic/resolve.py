"""Where a model's semantic IDs come from: a config string resolved at fit time, saved with the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .ids import SemanticIds

#: specs that make codes at fit time from the training data (see :func:`derive_semantic_ids`)
DERIVED = ("auto", "content", "cf", "cf+tags")


def resolve_semantic_ids(spec: str, num_items: int, item_ids: np.ndarray | None = None, *, seed: int = 0,
                         levels: int = 3, codebook: int = 256, id_offset: int = 0,
                         field: str = "semantic_ids") -> SemanticIds:
    """``spec``: ``random`` (``levels`` random codes of ``codebook`` values, the TIGER paper's ablation), a
    folder written by ``SemanticIds.save`` / ``recembed tokenize``, or a LETTER / LC-Rec ``*.index.json`` file
    (an item's key is its external id plus ``id_offset``). Collisions get the disambiguation level, so the
    result is always unique. ``field`` names the config key in errors."""
    if spec in DERIVED:
        raise ConfigError(f"{field}: {spec!r} makes codes from the training data; fit a model to derive them")
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


def derive_semantic_ids(spec: str, train: Any, context: dict[str, Any], *, levels: int, codebook: int,
                        options: Any, field: str = "semantic_ids") -> SemanticIds:
    """Codes made at fit time (TIGER's recipe: RQ-VAE over item vectors, 200 epochs): ``content`` from the item
    table's vector columns (each L2-normalised, concatenated: text encoded with ``--text-columns``, image or
    audio features); ``cf`` from the item embeddings of a BPR model fitted first on the same training part
    (default settings, early-stopped on ``context["valid"]`` when there is one), the codes that came within 3%
    of LETTER's text + CF codes for TIGER on Beauty (benchmarks/RESULTS.md, [Generative]); ``cf+tags``: the BPR
    item embeddings (L2-normalised) beside the multi-hot of the item table's tags / categorical columns
    (brand, categories: each column L2-normalised per row, so each block weighs alike), the stand-in for
    TIGER's "title, price, brand, category" text where the data has attributes but no text (opt-in); ``auto``:
    ``content`` when the item table has vector columns, else ``cf``."""
    import dataclasses

    from .tokenize import l2_normalize, tokenize

    table = context.get("item_table")
    has_content = table is not None and bool(table.names("vector"))
    tag_columns = [] if table is None else [*table.names("tags"), *table.names("categorical")]
    if spec == "auto":  # cf+tags is opt-in until its default fit on amazon-seq is measured (RESULTS.md)
        source = "content" if has_content else "cf"
    else:
        source = spec
    if source == "cf+tags" and not tag_columns:
        raise ConfigError(f"{field}: 'cf+tags' needs an item table with tags or categorical columns (attributes, "
                          "brand, categories); 'cf' makes codes from the interactions alone")
    if source == "content":
        from ..models.content._content import content_matrix

        if not has_content:
            raise ConfigError(f"{field}: 'content' needs an item table with vector columns (--items with "
                              "--text-columns, or a dataset with item features); 'cf' makes codes from the "
                              "interactions alone")
        vectors, names = content_matrix(table, "", "l2", train.num_items)
        info: dict[str, Any] = {"source": "content", "columns": names}
    else:
        from ..models.cf.bpr import BPR
        from ..options import FitOptions

        base = options if isinstance(options, FitOptions) else FitOptions()
        # its own fit: no bars, never the caller's checkpoint folder
        cf_options = dataclasses.replace(base, show_progress=False, checkpoint_dir=None, resume=False)
        valid = context.get("valid")
        bpr = BPR().fit(train, options=cf_options, **({"valid": valid} if valid is not None else {}))
        vectors = bpr.item_embeddings()
        info = {"source": source, "model": "bpr", "epochs": len(getattr(bpr, "history_", []) or [])}
        if source == "cf+tags":
            vectors, info["columns"] = _with_tags(l2_normalize(np.asarray(vectors, np.float32)), table,
                                                  tag_columns, train.num_items)
    sid = tokenize(l2_normalize(np.asarray(vectors, dtype=np.float32)), "rqvae", levels, codebook,
                   seed=getattr(options, "seed", 0), threads=getattr(options, "threads", None))
    sid.info.update({"derived": info})
    return sid


def _with_tags(vectors: np.ndarray, table: Any, columns: list[str], num_items: int) -> tuple[np.ndarray, list[str]]:
    """``vectors`` beside one multi-hot block per tags / categorical column (tokens on fewer than 2 items
    dropped: they separate nothing), every block unit-norm per row."""
    from ..encoders.fields import encode_categorical, encode_tags

    blocks = [vectors]
    for name in columns:
        values = table[name][:num_items]
        if table.kinds[name] == "tags":
            hot, _, _ = encode_tags(values, min_count=2, name=name)
        else:
            hot, _, _ = encode_categorical(values, min_count=2, name=name)
        blocks.append(hot.astype(np.float32))
    return np.hstack(blocks), ["bpr", *columns]


def semantic_ids_for_fit(config: Any, num_items: int, context: dict[str, Any], seed: int, *, train: Any = None,
                         options: Any = None) -> SemanticIds:
    """Resolve ``config.semantic_ids`` (with its ``id_offset`` and, when present, ``levels`` / ``codebook``) for
    a model being fitted; ``context["items"]`` (the item vocabulary) maps external ids for ``*.index.json``;
    ``auto`` / ``content`` / ``cf`` derive codes from ``train`` (:func:`derive_semantic_ids`)."""
    if config.semantic_ids in DERIVED:
        if train is None:
            raise ConfigError(f"semantic_ids: {config.semantic_ids!r} needs the training interactions")
        return derive_semantic_ids(config.semantic_ids, train, context, levels=getattr(config, "levels", 3),
                                   codebook=getattr(config, "codebook", 256), options=options)
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
