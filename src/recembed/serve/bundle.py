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
      index/items.<kind>.faiss optional FAISS index over ``item_vectors`` (FAISS's own binary format)
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
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from .. import __version__
from ..config import config_to_dict
from ..data.vocab import Vocabulary
from ..errors import DataError
from ..io import read_json, sha256_file, write_json
from ..models.base import Recommender
from .content import CONTENT_HEADS, ENCODER_FILE, HEAD_FILE, VOCAB_FILE, ContentEncoder
from .signing import SIGNATURE, bundle_key, check_signature, is_signed, sign_manifest

FORMAT = "recembed-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EMBEDDINGS_FILE = "embeddings.safetensors"
HISTORY_FILE = "history.safetensors"


class BundleError(DataError):
    """A bundle that is missing, of another format or version, or whose files fail verification."""


@dataclass
class Bundle:
    """A loaded, verified bundle."""

    path: Path
    manifest: dict[str, Any]
    model: Recommender
    users: Vocabulary
    items: Vocabulary
    titles: list[str] | None
    history_indptr: np.ndarray  # (U + 1,) int64
    history_items: np.ndarray  # (N,) int64
    user_vectors: np.ndarray | None  # (U, D) float32, "embedding" bundles
    item_vectors: np.ndarray | None  # (I, D) float32, "embedding" bundles
    content: ContentEncoder | None
    head_state: dict[str, np.ndarray] | None

    @property
    def kind(self) -> str:
        return self.manifest["serving"]["kind"]

    @property
    def index_meta(self) -> dict[str, Any] | None:
        return self.manifest.get("index")

    def history(self, user_idx: int) -> np.ndarray:
        return self.history_items[self.history_indptr[user_idx]: self.history_indptr[user_idx + 1]]

    def seen(self) -> sp.csr_matrix:
        """Binary user x item matrix of the known items (what ``exclude_seen`` drops)."""
        return seen_matrix(self.history_indptr, self.history_items, len(self.items))


def seen_matrix(indptr: np.ndarray, items: np.ndarray, num_items: int) -> sp.csr_matrix:
    """Binary user x item CSR of per-user histories ``items[indptr[u]:indptr[u+1]]``."""
    m = sp.csr_matrix((np.ones(len(items), dtype=np.float32), items, indptr), shape=(len(indptr) - 1, num_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


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


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
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
) -> Path:
    """Write a bundle directory atomically (see the module docstring); returns its path.

    ``index`` (``flat`` / ``hnsw`` / ``ivfpq``) also builds and stores a FAISS index over the item vectors
    (embedding bundles only; the exact index needs no file). ``sign``: also write ``signature.json`` with the key
    in ``RECEMBED_BUNDLE_KEY`` (an error when unset). ``progress``: called with the name of each step
    (:data:`WRITE_STEPS`) as it starts.
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
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
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
        step(f"index ({index})" if index else "index (none)")
        if index is not None:
            manifest["index"] = _build_index_file(tmp, index, index_params or {}, vectors[1])
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


def bundle_from_run(run_dir: str | Path, out: str | Path, *, index: str | None = None,
                    index_params: dict[str, Any] | None = None, data_root: str | Path | None = None,
                    overwrite: bool = False, sign: bool = False, progress: Callable[[str], None] | None = None
                    ) -> tuple[Path, list[str]]:
    """Bundle a run directory (``recembed fit`` output); returns ``(path, notes)``: notes say what was left
    out and why (e.g. no content encoder). ``sign`` / ``progress``: see :func:`write_bundle` (``progress`` also
    gets ``"run"`` and ``"content encoder"``)."""
    from ..data.interactions import Interactions
    from ..runs import load_run
    from .content import encoder_for_run

    if progress is not None:
        progress("run")
    run = load_run(run_dir)
    notes: list[str] = []
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
    metrics = {k: run.metrics[k] for k in ("dataset", "split", "split_hash", "test", "valid", "test_cold")
               if k in run.metrics}
    path = write_bundle(out, model=run.model, users=run.users, items=run.items, history_indptr=indptr,
                        history_items=hist, titles=None if run.titles is None else [str(t) for t in run.titles],
                        metrics=metrics, source={"run_dir": str(Path(run_dir).resolve()), "config": run.config},
                        content=content, index=index, index_params=index_params, overwrite=overwrite, sign=sign,
                        progress=progress)
    return path, notes


def add_index(bundle_dir: str | Path, kind: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rebuild ``bundle_dir`` with a (new) stored index of ``kind``, atomically; returns the index entry.

    A signed bundle is signed again (the key must be set: the old signature is checked first)."""
    bundle_dir = Path(bundle_dir)
    signed = is_signed(bundle_dir)
    manifest = verify_bundle(bundle_dir, require_signature=signed)
    sign_key = bundle_key(required=True, purpose="re-signing a signed bundle") if signed else None
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


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def is_bundle(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def verify_bundle(path: str | Path, *, require_signature: bool = False) -> dict[str, Any]:
    """Check the signature (when the bundle has one and ``RECEMBED_BUNDLE_KEY`` is set; always with
    ``require_signature``), the format, version, and every file's size and SHA-256; refuse unlisted files.
    Returns the manifest."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError("not a directory", path=path)
    if not (path / MANIFEST).is_file():
        raise BundleError(f"not a bundle: no {MANIFEST}", path=path)
    raw = (path / MANIFEST).read_bytes()
    check_signature(path, raw, require=require_signature)  # over these bytes: the manifest parsed below
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise BundleError(f"manifest is not valid JSON{line} ({exc})", path=path / MANIFEST) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"not a {FORMAT} manifest", path=path / MANIFEST, field="format")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"unsupported bundle format version {manifest.get('format_version')!r} (this recembed "
                          f"reads version {FORMAT_VERSION}); re-bundle the run", path=path / MANIFEST,
                          field="format_version")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError("manifest lists no files", path=path / MANIFEST, field="files")
    for rel, entry in files.items():
        p = path / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise BundleError(f"file entry {rel!r} points outside the bundle", path=path / MANIFEST, field="files")
        if not p.is_file():
            raise BundleError("missing file listed in the manifest", path=p)
        if p.stat().st_size != entry.get("bytes") or sha256_file(p) != entry.get("sha256"):
            raise BundleError("checksum mismatch: the file changed after the bundle was written (corrupted or "
                              "truncated); refusing to load", path=p)
    top_level = (MANIFEST, SIGNATURE)
    extra = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                   if p.is_file() and p.relative_to(path).as_posix() not in files
                   and p.relative_to(path).as_posix() not in top_level)
    if extra:
        raise BundleError(f"files not listed in the manifest: {extra[:5]}; refusing to load", path=path)
    return manifest


def _load_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"unreadable tensors ({exc})", path=path) from None


def load_bundle(path: str | Path, *, verify: bool = True, require_signature: bool = False) -> Bundle:
    """Load a bundle; with ``verify`` (default) its checksums (and signature) are checked first
    (:func:`verify_bundle`); ``require_signature`` refuses a bundle without a valid signature."""
    path = Path(path)
    if require_signature and not verify:
        raise BundleError("require_signature needs verify=True", path=path)
    manifest = verify_bundle(path, require_signature=require_signature) if verify else read_json(path / MANIFEST)
    model = Recommender.load(path / "model")
    users = Vocabulary(pq.read_table(path / "users.parquet").column("id").combine_chunks(), name="user")
    item_table = pq.read_table(path / "items.parquet")
    items = Vocabulary(item_table.column("id").combine_chunks(), name="item")
    titles = item_table.column("title").to_pylist() if "title" in item_table.column_names else None
    for name, vocab in (("users", users), ("items", items)):
        if vocab.content_hash() != manifest["vocabularies"][name]["sha256"]:
            raise BundleError(f"{name} vocabulary hash differs from the manifest", path=path / f"{name}.parquet")
    hist = _load_tensors(path / HISTORY_FILE)
    user_vectors = item_vectors = None
    if manifest["serving"]["kind"] == "embedding":
        emb = _load_tensors(path / EMBEDDINGS_FILE)
        user_vectors, item_vectors = emb["user_vectors"], emb["item_vectors"]
        if user_vectors.shape[0] != len(users) or item_vectors.shape[0] != len(items):
            raise BundleError("embedding tables do not match the vocabularies", path=path / EMBEDDINGS_FILE)
    content = head = None
    spec = manifest.get("content")
    if spec:
        tensors = _load_tensors(path / ENCODER_FILE) if (path / ENCODER_FILE).exists() else None
        terms = (pq.read_table(path / VOCAB_FILE).column("term").to_pylist()
                 if (path / VOCAB_FILE).exists() else None)
        content = ContentEncoder.from_spec(spec, tensors, terms)
        head = _load_tensors(path / HEAD_FILE)
    return Bundle(path, manifest, model, users, items, titles, hist["indptr"].astype(np.int64),
                  hist["items"].astype(np.int64), user_vectors, item_vectors, content, head)


def resolve_bundle(path: str | Path, workdir: str | Path, **bundle_options: Any) -> tuple[Path, list[str]]:
    """``path`` itself when it is a bundle, else a bundle of the run directory ``path`` written under
    ``workdir`` (``recembed serve RUN_DIR`` / ``export RUN_DIR``)."""
    path = Path(path)
    if is_bundle(path):
        return path, []
    if (path / "metrics.json").exists():
        return bundle_from_run(path, Path(workdir) / "bundle", **bundle_options)
    raise BundleError("neither a bundle (manifest.json) nor a run directory (metrics.json)", path=path)

