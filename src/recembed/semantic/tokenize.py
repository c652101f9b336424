"""One entry point from item vectors to semantic IDs, and the helpers that build those vectors.

:func:`tokenize` fits a tokenizer (``rkmeans``, ``rqvae`` or ``fsq``), encodes every item, appends TIGER's
collision level when ``dedup`` (so every item's code is unique) and records in ``info`` the tokenizer config,
fit / encode wall time, the training history and the statistics of the codes *before* deduplication
(``info["raw_stats"]``: utilisation per level, collision rate, items per tuple).

Input vectors (row ``i`` = item index ``i`` of the dataset):

* :func:`vectors_from_column` -- an item-table column: ``vector`` as is, ``tags`` / ``categorical`` as
  multi-hot -> TF-IDF -> truncated SVD (:func:`tag_vectors`), ``text`` via :class:`~recembed.encoders.TfidfEncoder`;
* :func:`vectors_from_run` -- a fitted run directory's ``item_embeddings()`` (CF embeddings);
* :func:`vectors_from_npy` -- an ``(I, d)`` ``.npy`` file;
* :func:`combine_vectors` -- several sources, each row L2-normalised, concatenated.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import build_config, config_to_dict
from ..errors import ConfigError, DataError
from .ids import SemanticIds

METHODS = ("rkmeans", "rqvae", "fsq")


def make_tokenizer(method: str, levels: int = 3, codebook: int = 256, **params: Any):  # noqa: ANN201
    """The unfitted tokenizer ``method`` with ``levels`` x ``codebook`` and config ``params`` (strings allowed)."""
    if method == "rkmeans":
        from . import rkmeans

        cls, config_cls = rkmeans.ResidualKMeans, rkmeans.RKMeansConfig
    elif method == "rqvae":
        from . import rqvae

        cls, config_cls = rqvae.RQVAE, rqvae.RQVAEConfig
    elif method == "fsq":
        from . import fsq

        cls, config_cls = fsq.FSQ, fsq.FSQConfig
    else:
        raise ConfigError(f"method: unknown tokenizer {method!r}; expected one of {list(METHODS)}")
    return cls(build_config(config_cls, {**params, "levels": levels, "codebook": codebook}))


def check_vectors(vectors: np.ndarray, *, num_items: int | None = None, name: str = "vectors") -> np.ndarray:
    """``vectors`` as a C-contiguous ``(I, d)`` float32 array, or a :class:`DataError` saying what is wrong."""
    try:
        x = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"not a numeric array ({exc})", field=name) from None
    if x.ndim != 2:
        raise DataError(f"expected a 2-D (items, dim) array, got shape {x.shape}", field=name)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"empty array of shape {x.shape}", field=name)
    if num_items is not None and x.shape[0] != num_items:
        raise DataError(f"{x.shape[0]} rows but the dataset has {num_items} items", field=name)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise DataError(f"{int(bad.sum())} row(s) with NaN/inf values, first at row {int(np.flatnonzero(bad)[0])}",
                        field=name)
    return np.ascontiguousarray(x)


def tokenize(vectors: np.ndarray, method: str, levels: int = 3, codebook: int = 256, *, seed: int = 0,
             dedup: bool = True, progress: bool = False, threads: int | None = None,
             **method_kwargs: Any) -> SemanticIds:
    """Semantic IDs of the rows of ``vectors (I, d)``: ``levels`` codes of ``codebook`` values (+ the collision
    level when ``dedup``). ``method_kwargs`` are config fields of the method (``epochs``, ``ema``, ...)."""
    x = check_vectors(vectors)
    tokenizer = make_tokenizer(method, levels, codebook, **method_kwargs)
    if threads:
        import torch

        torch.set_num_threads(threads)
    t = time.perf_counter()
    tokenizer.fit(x, seed=seed, progress=progress)
    fit_seconds = time.perf_counter() - t
    t = time.perf_counter()
    codes = tokenizer.encode(x)
    encode_seconds = time.perf_counter() - t
    info: dict[str, Any] = {
        "tokenizer": method, "config": config_to_dict(tokenizer.config), "seed": seed,
        "input_dim": int(x.shape[1]), **_input_duplicates(x), "fit_seconds": round(fit_seconds, 3),
        "encode_seconds": round(encode_seconds, 3),
    }
    if hasattr(tokenizer, "history_"):
        info["history"] = tokenizer.history_
    if hasattr(tokenizer, "info_"):
        info.update(tokenizer.info_)
    recon = tokenizer.decode(codes)
    info["reconstruction_mse"] = float(((recon - x) ** 2).mean())
    info["relative_reconstruction_error"] = float(((recon - x) ** 2).sum() / max(float((x**2).sum()), 1e-12))
    info["raw_stats"] = SemanticIds(codes, (codebook,) * levels, method).stats()
    ids = SemanticIds(codes, (codebook,) * levels, method, info)
    return ids.deduplicated() if dedup else ids


def _input_duplicates(x: np.ndarray) -> dict[str, Any]:
    """Identical input rows get identical codes: the collision rate no tokenizer can go below."""
    _, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    return {"input_distinct_rows": len(counts),
            "input_duplicate_rate": float((counts[inverse.reshape(-1)] > 1).mean())}


# ---------------------------------------------------------------------------------------------- input vectors
def l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def combine_vectors(blocks: list[np.ndarray]) -> np.ndarray:
    """Each block's rows L2-normalised (no source dominates by scale), then concatenated: ``(I, sum d)``."""
    if not blocks:
        raise DataError("no vector sources given")
    blocks = [check_vectors(b, name=f"source {i + 1}") for i, b in enumerate(blocks)]
    rows = {b.shape[0] for b in blocks}
    if len(rows) != 1:
        raise DataError(f"vector sources have different numbers of rows: {sorted(rows)}")
    return np.concatenate([l2_normalize(b) for b in blocks], axis=1)


def tag_vectors(values: np.ndarray, dim: int = 64, *, min_count: int = 1, seed: int = 0) -> np.ndarray:
    """Tags per row (tuples of tokens) -> multi-hot -> TF-IDF (rows L2-normalised) -> truncated SVD ``(n, dim)``.

    Rows without tags are zero vectors. ``dim`` is capped by the number of distinct tags.
    """
    import scipy.sparse as sp

    from ..models.cf.gfcf import randomized_right_singular_vectors

    values = np.asarray(values, dtype=object)
    counts: dict[str, int] = {}
    for v in values:
        for tag in set(_as_tags(v)):
            counts[tag] = counts.get(tag, 0) + 1
    vocab = {t: j for j, t in enumerate(sorted(t for t, c in counts.items() if c >= min_count))}
    if not vocab:
        raise DataError("no tag occurs often enough to build vectors (all rows empty?)")
    rows, cols = [], []
    for r, v in enumerate(values):
        for tag in set(_as_tags(v)):
            if tag in vocab:
                rows.append(r)
                cols.append(vocab[tag])
    m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(values), len(vocab)))
    df = np.asarray((m > 0).sum(axis=0)).ravel()
    m = sp.csr_matrix(m @ sp.diags(np.log((1 + len(values)) / (1 + df)) + 1.0))
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    m = sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ m)
    k = max(1, min(dim, len(vocab) - 1 if len(vocab) > 1 else 1, len(values) - 1 if len(values) > 1 else 1))
    components = randomized_right_singular_vectors(m, k, power_iterations=4, seed=seed)  # (V, k)
    out = np.zeros((len(values), dim), dtype=np.float32)
    out[:, :k] = m @ components
    return out


def _as_tags(value: Any) -> tuple[str, ...]:
    if value is None or (isinstance(value, str) and not value):
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(t) for t in value)


def vectors_from_column(dataset, column: str, *, dim: int = 64, seed: int = 0) -> np.ndarray:  # noqa: ANN001
    """An item-table column as ``(I, d)`` vectors (see the module docstring)."""
    table = dataset.item_table
    if table is None:
        raise DataError(f"{dataset.name} has no item table, so no column {column!r}", field=column)
    if column not in table:
        raise DataError(f"{dataset.name}'s item table has no column {column!r}; columns: {table.names()}",
                        field=column)
    kind = table.kinds[column]
    if kind == "vector":
        return check_vectors(table[column], name=column)
    if kind in ("tags", "categorical"):
        return tag_vectors(table[column], dim, seed=seed)
    if kind == "text":
        from ..encoders import TfidfEncoder

        return TfidfEncoder(dim=dim).fit_transform(list(table[column]))
    raise DataError(f"column {column!r} is {kind}; expected a vector, tags, categorical or text column",
                    field=column)


def vectors_from_run(run_dir: str | Path, item_ids: np.ndarray | None = None) -> np.ndarray:
    """The item embeddings of a fitted run, row-aligned to ``item_ids`` (external ids; default: the run's
    order). Items the run does not know get zero vectors; a model without item embeddings is an error."""
    from ..runs import load_run

    run = load_run(run_dir)
    emb = run.model.item_embeddings()
    if emb is None:
        raise DataError(f"model {run.config.get('model')!r} has no item embeddings; fit one that has "
                        "(bpr, lightgcn, sasrec, ...)", path=run_dir)
    emb = check_vectors(emb, name=f"{run_dir} item embeddings")
    if item_ids is None:
        return emb
    idx = run.items.index([str(i) for i in item_ids], unknown="ignore")
    if (idx < 0).all():
        raise DataError("the run shares no item ids with the dataset (fit on another dataset?)", path=run_dir)
    out = np.zeros((len(item_ids), emb.shape[1]), dtype=np.float32)
    out[idx >= 0] = emb[idx[idx >= 0]]
    return out


def vectors_from_npy(path: str | Path, num_items: int | None = None) -> np.ndarray:
    path = Path(path)
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"not a readable .npy array ({exc})", path=path) from None
    try:
        return check_vectors(x, num_items=num_items, name=path.name)
    except DataError as exc:
        raise DataError(str(exc), path=path) from None


def load_vector_sources(dataset, spec: str, *, dim: int = 64, seed: int = 0) -> np.ndarray:  # noqa: ANN001
    """``spec``: comma-separated sources, each an item-table column, a ``.npy`` path or a run directory.
    One source is returned as is; several are L2-normalised and concatenated (:func:`combine_vectors`)."""
    blocks = []
    for source in (s.strip() for s in spec.split(",")):
        if not source:
            continue
        path = Path(source)
        if dataset.item_table is not None and source in dataset.item_table:
            blocks.append(vectors_from_column(dataset, source, dim=dim, seed=seed))
        elif path.suffix == ".npy":
            blocks.append(vectors_from_npy(path, dataset.num_items))
        elif path.is_dir():
            blocks.append(vectors_from_run(path, dataset.items.ids))
        else:
            columns = dataset.item_table.names() if dataset.item_table is not None else []
            raise DataError(f"vector source {source!r} is neither an item-table column {columns}, a .npy file "
                            "nor a run directory", field="vectors")
    if not blocks:
        raise DataError("no vector sources given", field="vectors")
    return blocks[0] if len(blocks) == 1 else combine_vectors(blocks)
