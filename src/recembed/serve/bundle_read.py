"""Reading bundles: the format constants, :class:`Bundle`, and verification on load (signature, format version,
checksums, unlisted files). The layout and how bundles are written: :mod:`.bundle` (which re-exports all of
this); signatures: :mod:`.signing`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp

from ..data.vocab import Vocabulary
from ..errors import DataError
from ..io import read_json, sha256_file
from ..models.base import Recommender
from .content import ENCODER_FILE, HEAD_FILE, VOCAB_FILE, ContentEncoder
from .signing import SIGNATURE, check_signature

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
    ranker: Any = None  # a Ranker, when the bundle has a ranking stage (manifest "ranker")
    ranker_features: Any = None  # its PairFeatures, aligned to users / items

    @property
    def ranker_meta(self) -> dict[str, Any] | None:
        return self.manifest.get("ranker")

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
    ranker = features = None
    if manifest.get("ranker"):
        from .ranker import read_ranker

        ranker, features = read_ranker(path, manifest["ranker"], users.to_list(), items.to_list())
    return Bundle(path, manifest, model, users, items, titles, hist["indptr"].astype(np.int64),
                  hist["items"].astype(np.int64), user_vectors, item_vectors, content, head, ranker, features)
