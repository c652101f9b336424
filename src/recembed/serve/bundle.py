"""Model bundles: everything the service needs, in one verified directory.

Layout::

    BUNDLE/
      manifest.json            format + version, model name / config / sizes, serving kind, vocabulary hashes,
                               metrics of the run, library versions, and the SHA-256 + size of every other file
      model/model.json         the model's own saved form (``Recommender.save``: config + safetensors state)
      model/model.safetensors
      embeddings.safetensors   "embedding" bundles: ``user_vectors (U, D)``, ``item_vectors (I, D)``; a user's
                               scores are ``user_vectors[u] @ item_vectors.T`` (checked against the model)
      history.safetensors      ``indptr (U+1,)``, ``items (N,)``: each user's known items, oldest first
                               (train + valid + test; sequential models: the sequence they condition on)
      users.parquet            user vocabulary (``id``, index order)
      items.parquet            item vocabulary (``id``) and ``title`` when the run had titles
      content/...              content encoder state and head arrays (content-capable bundles only)
      index/items.<kind>.faiss optional FAISS index over ``item_vectors`` (FAISS's own binary format); a compressed
                               run's (``recembed compress``, PQ kinds) is its own PQ codes, kind ``codes``, and the
                               manifest's ``compression`` records its bytes per item (``item_vectors`` then holds the
                               decoded vectors, for exact fallbacks and similar items)
      ranker/...               optional ranking stage (``--ranker``): the ranker's model.json + model.safetensors and
                               the user / item feature tables it reads (:mod:`.ranker`)
      cutoff/counts.safetensors optional relevance cut-off's training counts (the map: manifest ``cutoff``)
      signature.json           optional HMAC-SHA256 of manifest.json (``sign`` / ``--sign``; see :mod:`.signing`)

Written into a temporary directory beside ``BUNDLE`` and renamed into place (a crash leaves no half
bundle). :func:`load_bundle` checks the format version and every file's checksum, and refuses files that the
manifest does not list; checksums catch accidental corruption and truncation, not deliberate edits (anyone can
recompute a SHA-256): the signature does (:mod:`.signing`). Nothing is pickled: arrays are safetensors, tables
Parquet, metadata JSON.

Serving kinds: ``embedding`` (the model's scores are an inner product of exported user and item vectors:
recommendations are an index search) and ``model`` (scores come from the model: history models, Mult-VAE,
sequential models; the index serves similar items when the model has item vectors).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..config import config_to_dict
from ..data.vocab import Vocabulary
from ..io import sha256_file, write_json
from ..models.base import Recommender
from .bundle_read import (  # noqa: F401 - re-exported: the reading side of this module's API
    EMBEDDINGS_FILE,
    FORMAT,
    FORMAT_VERSION,
    HISTORY_FILE,
    MANIFEST,
    Bundle,
    BundleError,
    _load_tensors,
    is_bundle,
    load_bundle,
    seen_matrix,
    verify_bundle,
)
from .content import CONTENT_HEADS, ENCODER_FILE, HEAD_FILE, VOCAB_FILE, ContentEncoder
from .cutoff import CutoffPart, cutoff_for_run, write_cutoff
from .ranker import RankerPart, write_ranker
from .signing import SIGNATURE, bundle_key, is_signed, sign_manifest


def _versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    out = {"recembed": __version__, "python": platform.python_version()}
    for dist in ("numpy", "scipy", "pyarrow", "safetensors", "torch", *extra):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def serving_vectors(model: Recommender, sample: int = 64) -> tuple[np.ndarray, np.ndarray] | None:
    """``(user_vectors, item_vectors)`` when the model's scores are their inner product (checked on up to
    ``sample`` users), else None."""
    if not (hasattr(model, "user_embeddings") and hasattr(model, "item_embeddings")):
        return None
    users = np.asarray(model.user_embeddings(), dtype=np.float32)
    items = model.item_embeddings()
    if items is None or users.ndim != 2 or users.shape[0] != model.num_users_:
        return None
    items = np.asarray(items, dtype=np.float32)
    probe = np.linspace(0, model.num_users_ - 1, num=min(sample, model.num_users_)).astype(np.int64)
    if not np.allclose(model.score(probe), users[probe] @ items.T, rtol=1e-4, atol=1e-4):
        return None
    return np.ascontiguousarray(users), np.ascontiguousarray(items)


def _write_parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _save_tensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))


def _swap_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BundleError("already exists (pass overwrite / --overwrite to replace it)", path=out)
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / "bundle")
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _finish(tmp: Path, manifest: dict[str, Any], sign_key: bytes | None = None) -> None:
    """Checksum every file under ``tmp`` into the manifest and write it last (then its signature, with a key)."""
    (tmp / SIGNATURE).unlink(missing_ok=True)
    files = {}
    for p in sorted(tmp.rglob("*")):
        if p.is_file():
            rel = p.relative_to(tmp).as_posix()
            if rel != MANIFEST:
                files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest["files"] = files
    write_json(tmp / MANIFEST, manifest)
    if sign_key is not None:
        sign_manifest(tmp, sign_key)


def write_bundle(
    out: str | Path,
    *,
    model: Recommender,
    users: Vocabulary,
    items: Vocabulary,
    history_indptr: np.ndarray,
    history_items: np.ndarray,
    titles: list[str] | None = None,
    metrics: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    content: ContentEncoder | None = None,
    index: str | None = None,
    index_params: dict[str, Any] | None = None,
    overwrite: bool = False,
    sign: bool = False,
    progress: Callable[[str], None] | None = None,
    ranker: RankerPart | None = None,
    cutoff: CutoffPart | None = None,
) -> Path:
    """Write a bundle directory atomically (see the module docstring); returns its path.

    ``index`` (``flat`` / ``hnsw`` / ``ivfpq``) also builds and stores a FAISS index over the item vectors
    (embedding bundles only; the exact index needs no file). ``sign``: also write ``signature.json`` with the key
    in ``RECEMBED_BUNDLE_KEY`` (an error when unset). ``progress``: called with the name of each step
    (:data:`WRITE_STEPS`) as it starts. ``ranker``: also store a ranking stage (:mod:`.ranker`), its features
    aligned to ``users`` / ``items``. ``cutoff``: also store a relevance cut-off map (:mod:`.cutoff`).
    """
    step = progress or (lambda name: None)
    sign_key = bundle_key(required=True, purpose="signing a bundle (--sign)") if sign else None
    out = Path(out)
    model._check_fitted()
    if len(users) != model.num_users_ or len(items) != model.num_items_:
        raise BundleError(f"vocabularies ({len(users)} users, {len(items)} items) do not match the model "
                          f"({model.num_users_} users, {model.num_items_} items)")
    indptr = np.asarray(history_indptr, dtype=np.int64)
    hist = np.asarray(history_items, dtype=np.int64)
    if indptr.shape != (len(users) + 1,) or indptr[-1] != len(hist):
        raise BundleError(f"history indptr must have {len(users) + 1} entries ending at {len(hist)}")
    if titles is not None and len(titles) != len(items):
        raise BundleError(f"{len(titles)} titles for {len(items)} items", field="title")
    vectors = serving_vectors(model)
    if index is not None and vectors is None:
        raise BundleError(f"{model.name}: no user/item vectors whose inner product gives its scores, so no index "
                          "to build; it is served through its own scoring")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        step("model")
        model.save(tmp / "model")
        step("vocabularies and history")
        _write_parquet(tmp / "users.parquet", pa.table({"id": users.arrow}))
        cols: dict[str, Any] = {"id": items.arrow}
        if titles is not None:
            cols["title"] = pa.array([str(t) for t in titles])
        _write_parquet(tmp / "items.parquet", pa.table(cols))
        _save_tensors(tmp / HISTORY_FILE, {"indptr": indptr, "items": hist})
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "model": {"name": model.name, "config": config_to_dict(model.config), "num_users": model.num_users_,
                      "num_items": model.num_items_},
            "serving": {"kind": "embedding" if vectors is not None else "model",
                        "embedding_dim": None if vectors is None else int(vectors[1].shape[1]),
                        "sequential": hasattr(model, "scorer_after"),
                        "history_scoring": _scores_histories(model)},
            "vocabularies": {"users": {"size": len(users), "sha256": users.content_hash()},
                             "items": {"size": len(items), "sha256": items.content_hash()}},
            "metrics": metrics or {},
            "source": source or {},
            "content": None,
            "index": None,
            "ranker": None,
            "libraries": _versions(("faiss-cpu",) if index else ()),
        }
        step("vectors and content")
        if vectors is not None:
            _save_tensors(tmp / EMBEDDINGS_FILE, {"user_vectors": vectors[0], "item_vectors": vectors[1]})
        if content is not None and model.name in CONTENT_HEADS:
            tensors, terms = content.arrays()
            if tensors:
                _save_tensors(tmp / ENCODER_FILE, tensors)
            if terms is not None:
                _write_parquet(tmp / VOCAB_FILE, pa.table({"term": pa.array(terms, pa.string())}))
            _save_tensors(tmp / HEAD_FILE, CONTENT_HEADS[model.name].state(model))
            manifest["content"] = {**content.spec(), "head": model.name}
        if ranker is not None:
            step(f"ranker ({ranker.model.name})")
            manifest["ranker"] = write_ranker(tmp, ranker, len(users), len(items))
        if cutoff is not None:
            manifest["cutoff"] = write_cutoff(tmp, cutoff)
        step(f"index ({index})" if index else "index (none)")
        if index is not None:
            manifest["index"] = _build_index_file(tmp, index, index_params or {}, vectors[1])
        if hasattr(model, "compression_info"):  # a compressed run (recembed compress): its codes and byte counts
            manifest["compression"] = model.compression_info()
            if index is None and vectors is not None and model.stored_index() is not None:
                manifest["index"] = _store_codes_index(tmp, model, vectors[1])
        step("checksums" + (" and signature" if sign_key else ""))
        _finish(tmp, manifest, sign_key)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_into_place(tmp, out, overwrite)
    return out


def _scores_histories(model: Recommender) -> bool:
    return type(model).score_histories is not Recommender.score_histories


def _build_index_file(root: Path, kind: str, params: dict[str, Any], item_vectors: np.ndarray) -> dict[str, Any]:
    from .index import build_index

    idx = build_index(kind, item_vectors, **params)
    if kind == "exact":
        return {"kind": "exact", "params": idx.params(), "file": None}
    rel = f"index/items.{kind}.faiss"
    (root / "index").mkdir(parents=True, exist_ok=True)
    idx.save(root / rel)
    return {"kind": kind, "params": idx.params(), "file": rel}


def _store_codes_index(root: Path, model: Recommender, item_vectors: np.ndarray) -> dict[str, Any]:
    """A compressed model's FAISS index (its PQ codes) as the bundle's ``codes`` index."""
    from .index import CodesIndex

    params = {"nprobe": model.config.nprobe} if model.config.method == "ivfpq" else {}
    idx = CodesIndex.from_faiss(model.stored_index(), item_vectors, params)
    rel = "index/items.codes.faiss"
    (root / "index").mkdir(parents=True, exist_ok=True)
    idx.save(root / rel)
    return {"kind": "codes", "params": idx.params(), "file": rel}


def bundle_from_run(run_dir: str | Path, out: str | Path, *, index: str | None = None,
                    index_params: dict[str, Any] | None = None, data_root: str | Path | None = None,
                    overwrite: bool = False, sign: bool = False, progress: Callable[[str], None] | None = None,
                    ranker_dir: str | Path | None = None, candidates: int | None = None, dim: int | None = None
                    ) -> tuple[Path, list[str]]:
    """Bundle a run directory (``recembed fit`` output); returns ``(path, notes)``: notes say what was left
    out and why (e.g. no content encoder). ``sign`` / ``progress``: see :func:`write_bundle` (``progress`` also
    gets ``"run"``, ``"ranker features"`` and ``"content encoder"``). ``ranker_dir``: a ranker run fitted on the
    same data and split (``recembed fit deepfm --data D --split S``), stored with the feature tables it reads
    (read from its dataset under ``data_root`` now, so that serving needs none); ``candidates``: how many items
    the retriever proposes to it per request by default (200). ``dim``: bundle the model cut to its first ``dim``
    embedding coordinates (a Matryoshka prefix, :func:`recembed.compact.matryoshka.truncate`; ConfigError naming
    ``--dim`` for a model without embeddings or a ``dim`` above its width); the bundle's metrics are the run's
    ``matryoshka`` metrics at that width when it has them."""
    from ..data.interactions import Interactions
    from ..runs import load_run
    from .content import encoder_for_run

    if progress is not None:
        progress("run")
    run = load_run(run_dir)
    notes: list[str] = []
    part = None
    if ranker_dir is not None:
        from .ranker import DEFAULT_CANDIDATES, ranker_for_run

        if progress is not None:
            progress("ranker features")
        part = ranker_for_run(run, ranker_dir, data_root=None if data_root is None else str(data_root),
                              candidates=DEFAULT_CANDIDATES if candidates is None else candidates)
    elif candidates is not None:
        from ..errors import ConfigError

        raise ConfigError("--candidates: only with --ranker (the retriever's candidates for the ranker to re-rank)")
    split = run.split
    if hasattr(run.model, "sequences_"):  # the sequence a sequential model conditions on, through test
        seqs = run.model.sequences_.extend(Interactions.concat([split.valid, split.test]))
        indptr, hist = seqs.indptr, seqs.items
    else:
        indptr, hist = Interactions.concat([split.train, split.valid, split.test]).histories()
    content = None
    if run.model.name in CONTENT_HEADS:
        if progress is not None:
            progress("content encoder")
        content, note = encoder_for_run(run, data_root)
        if content is None:
            notes.append(f"no content encoder: {note}; POST /v1/items will answer 501")
    metrics = {k: run.metrics[k] for k in ("dataset", "split", "split_hash", "test", "valid", "test_cold",
                                           "compression")
               if k in run.metrics}
    if dim is not None:
        run.model, metrics, note = _prefix_model(run, metrics, dim)
        notes += [note] if note else []
    path = write_bundle(out, model=run.model, users=run.users, items=run.items, history_indptr=indptr,
                        history_items=hist, titles=None if run.titles is None else [str(t) for t in run.titles],
                        metrics=metrics, source={"run_dir": str(Path(run_dir).resolve()), "config": run.config,
                                                 **({"dim": dim} if dim is not None else {})},
                        content=content, index=index, index_params=index_params, overwrite=overwrite, sign=sign,
                        progress=progress, ranker=part, cutoff=cutoff_for_run(run_dir, run))
    return path, notes


def _prefix_model(run: Any, metrics: dict[str, Any], dim: int) -> tuple[Recommender, dict[str, Any], str]:
    """``run``'s model cut to ``dim`` coordinates, the bundle metrics at that width, and a note (or '')."""
    from ..compact.matryoshka import model_width, truncate

    width = model_width(run.model)
    small = truncate(run.model, dim, flag="--dim")
    prefix = run.metrics.get("matryoshka", {}).get(str(dim))
    metrics = {k: v for k, v in metrics.items() if k not in ("test", "valid", "test_cold")}
    metrics["matryoshka"] = {"dim": dim, "full_dim": width,
                             "trained_dims": list(getattr(run.model.config, "matryoshka_dims", ()))}
    if prefix is not None:
        return small, {**metrics, **prefix}, ""
    trained = dim in metrics["matryoshka"]["trained_dims"]
    return small, metrics, (f"--dim {dim}: the run has no metrics at this width" +
                            ("" if trained else " and was not trained for it (matryoshka_dims)"))


def add_index(bundle_dir: str | Path, kind: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rebuild ``bundle_dir`` with a (new) stored index of ``kind``, atomically; returns the index entry.

    A signed bundle is signed again (the key must be set: the old signature is checked first)."""
    bundle_dir = Path(bundle_dir)
    signed = is_signed(bundle_dir)
    sign_key = bundle_key(required=True, purpose="re-signing a signed bundle (index build --save)") if signed \
        else None
    manifest = verify_bundle(bundle_dir, require_signature=signed)
    if manifest["serving"]["kind"] != "embedding":
        raise BundleError("only embedding bundles have an item index to store", path=bundle_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}.", suffix=".tmp", dir=bundle_dir.parent))
    try:
        shutil.copytree(bundle_dir, tmp, dirs_exist_ok=True)
        old = manifest.get("index") or {}
        if old.get("file"):
            (tmp / old["file"]).unlink(missing_ok=True)
        vectors = _load_tensors(tmp / EMBEDDINGS_FILE)["item_vectors"]
        manifest["index"] = _build_index_file(tmp, kind, params or {}, vectors)
        manifest["libraries"] = _versions(("faiss-cpu",))
        _finish(tmp, manifest, sign_key)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_into_place(tmp, bundle_dir, overwrite=True)
    return manifest["index"]


def resolve_bundle(path: str | Path, workdir: str | Path, **bundle_options: Any) -> tuple[Path, list[str]]:
    """``path`` itself when it is a bundle, else a bundle of the run directory ``path`` written under
    ``workdir`` (``recembed serve RUN_DIR`` / ``export RUN_DIR``)."""
    path = Path(path)
    if is_bundle(path):
        return path, []
    if (path / "metrics.json").exists():
        return bundle_from_run(path, Path(workdir) / "bundle", **bundle_options)
    raise BundleError("neither a bundle (manifest.json) nor a run directory (metrics.json)", path=path)

