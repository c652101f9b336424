"""The item index in a vector database: Milvus through pymilvus (milvus-lite embedded, or a Milvus server).

``recembed serve BUNDLE --store milvus:PATH_OR_URI``: ``PATH`` ends in ``.db`` (a milvus-lite data directory,
created when missing; the ``store`` extra installs milvus-lite), anything else is a Milvus server URI
(``http://host:19530``, ``https://...``, ``tcp://...``, ``unix:/path``). The same code talks to both.

* One collection per bundle, named from the SHA-256 of the bundle's manifest (which lists every file's
  checksum): a changed bundle gets a fresh collection; a collection that already holds all the bundle's items
  is reused at start-up. The process that creates the collection inserts the items; one that finds it
  incomplete (an interrupted load, another process loading) upserts them again (idempotent).
* Rows: ``item_id`` (primary key), ``title``, ``added`` (False for the bundle's items, True for items added over
  HTTP), ``vector`` (the item vector; HNSW, inner product: the FAISS index's metric) and ``content`` (the JSON of
  the request that added the item, to re-embed it later).
* An added item is written with one ``upsert`` before the service answers 201. A Milvus server acknowledges a
  write once it is in its write-ahead log; milvus-lite appends it to its WAL and flushes the file to the OS
  before answering, so the item survives ``kill -9`` of the server (the test does that); it is fsync'd at the
  next ``flush`` (an OS crash right after a 201 may lose the last items; :meth:`MilvusStore.flush` is called at
  shutdown).
* milvus-lite takes an exclusive lock on its data directory: one process opens it. ``recembed serve`` therefore
  opens a local store in the main process (:func:`open_store`, an in-process gRPC server of milvus-lite) and
  hands its ``http://127.0.0.1:PORT`` URI to the workers: with ``--workers 2`` every worker reads and writes the
  same store, and each sees the items the other added (search results name them; see ``RecService.sync``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .index_base import ItemIndex

SCHEME = "milvus:"
REMOTE = ("http://", "https://", "tcp://", "unix:", "grpc://")
MAX_ID, MAX_TITLE, MAX_CONTENT = 512, 10_000, 60_000
HNSW = {"M": 32, "efConstruction": 200}
LOAD_BATCH = 5_000
FLAG = "--store"


class StoreError(ConfigError):
    """A store that cannot be used: bad ``--store`` value, missing client, unreachable or locked store."""


def _pymilvus():  # noqa: ANN202
    try:
        import pymilvus
    except ImportError:
        raise StoreError(f"{FLAG}: Milvus needs pymilvus and milvus-lite (pip install 'recembed[store]')") from None
    return pymilvus


def parse_store(spec: str) -> tuple[str, bool]:
    """``milvus:PATH.db`` / ``milvus:URI`` -> ``(path or uri, is_local)``; a :class:`StoreError` naming the flag."""
    spec = (spec or "").strip()
    if not spec.startswith(SCHEME):
        raise StoreError(f"{FLAG}: expected milvus:PATH.db (milvus-lite) or milvus:URI (a Milvus server), got "
                         f"{spec!r}")
    target = spec[len(SCHEME):].strip()
    if not target:
        raise StoreError(f"{FLAG}: milvus: needs a path ending in .db or a server URI (milvus:./items.db, "
                         "milvus:http://localhost:19530)")
    if target.startswith(REMOTE):
        return target, False
    if "://" in target:
        raise StoreError(f"{FLAG}: unsupported URI scheme in {target!r}; use one of {', '.join(REMOTE)} or a "
                         "local path ending in .db")
    path = Path(target).expanduser()
    if path.suffix != ".db":
        raise StoreError(f"{FLAG}: a local milvus-lite store is a path ending in .db, got {target!r}")
    if not path.parent.is_dir():
        raise StoreError(f"{FLAG}: the folder of {target!r} does not exist")
    if path.exists() and not path.is_dir():
        raise StoreError(f"{FLAG}: {target!r} exists and is not a milvus-lite data directory")
    return str(path.resolve()), True


def open_store(spec: str) -> str:
    """The URI clients connect to: a server URI as given; for a local ``.db``, the URI of milvus-lite's gRPC
    server started in this process (held until it exits; the workers it starts connect to it)."""
    target, local = parse_store(spec)
    _pymilvus()
    if not local:
        return target
    try:
        from milvus_lite import server_manager_instance
    except ImportError:
        raise StoreError(f"{FLAG}: a local .db store needs milvus-lite (pip install 'recembed[store]')") from None
    lock = Path(target) / "LOCK"
    held_here = target in getattr(server_manager_instance, "_servers", {})
    if not held_here and lock.exists() and _locked(lock):
        raise StoreError(f"{FLAG}: {target} is open in another process (milvus-lite locks its data directory: "
                         "stop that server, or point both at a Milvus server URI)")
    uri = server_manager_instance.start_and_get_uri(target)
    if not uri:
        raise StoreError(f"{FLAG}: could not open the milvus-lite store {target}")
    return uri


def _locked(lock: Path) -> bool:
    import fcntl
    import os

    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def collection_name(manifest_sha256: str) -> str:
    return f"recembed_{manifest_sha256[:32]}"


class MilvusStore:
    """One bundle's collection in Milvus (see the module docstring)."""

    def __init__(self, uri: str, collection: str, dim: int, *, ef: int = 128) -> None:
        pymilvus = _pymilvus()
        self.uri, self.name, self.dim, self.ef = uri, collection, int(dim), int(ef)
        try:
            self.client = pymilvus.MilvusClient(uri=uri)
        except Exception as exc:  # noqa: BLE001 - any connection failure: say where
            raise StoreError(f"{FLAG}: cannot connect to Milvus at {uri} ({str(exc).splitlines()[0]})") from None

    # -- set-up -------------------------------------------------------------------------------------
    def _create(self) -> bool:
        """Create the collection; True when this call created it (False: another process did meanwhile)."""
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("item_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID)
        schema.add_field("title", DataType.VARCHAR, max_length=MAX_TITLE, nullable=True)
        schema.add_field("added", DataType.BOOL)
        schema.add_field("content", DataType.VARCHAR, max_length=MAX_CONTENT, nullable=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type="HNSW", metric_type="IP", params=dict(HNSW))
        try:
            self.client.create_collection(self.name, schema=schema)
        except Exception:  # noqa: BLE001 - created meanwhile by another worker: fine, the load below is idempotent
            if not self.client.has_collection(self.name):
                raise
            return False
        self.client.create_index(self.name, index, sync=False)  # milvus-lite builds it at once
        return True

    def _count(self, added: bool) -> int:
        rows = self.client.query(self.name, filter=f"added == {str(added).lower()}", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def ensure(self, ids: list[str], titles: list[str | None], vectors: np.ndarray) -> dict[str, Any]:
        """Make the collection hold the bundle's items: reuse it when complete, else (bulk-)load them."""
        t = time.perf_counter()
        created = False
        if self.client.has_collection(self.name):
            self.client.load_collection(self.name)
            if self._count(False) == len(ids):
                return {"collection": self.name, "reused": True, "loaded": 0,
                        "seconds": round(time.perf_counter() - t, 3)}
        else:
            created = self._create()
        # into a collection this call created: plain inserts (no tombstones); else upserts (idempotent)
        write = self.client.insert if created else self.client.upsert
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        for s in range(0, len(ids), LOAD_BATCH):
            rows = [{"item_id": ids[i], "title": _clip(titles[i]), "added": False, "content": None,
                     "vector": vectors[i]} for i in range(s, min(len(ids), s + LOAD_BATCH))]
            write(self.name, rows)
        self.client.flush(self.name)
        self.client.load_collection(self.name)
        return {"collection": self.name, "reused": False, "loaded": len(ids),
                "seconds": round(time.perf_counter() - t, 3)}

    # -- reads --------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, n: int) -> tuple[list[list[str]], list[list[float]]]:
        """Top-``n`` item ids and inner products per query row."""
        hits = self.client.search(self.name, data=[q.tolist() for q in np.atleast_2d(queries)], limit=int(n),
                                  output_fields=["added"], anns_field="vector",
                                  search_params={"metric_type": "IP", "params": {"ef": max(self.ef, int(n))}})
        return ([[h["item_id"] for h in row] for row in hits], [[float(h["distance"]) for h in row] for row in hits])

    def added_ids(self, limit: int = 16_384) -> list[str]:
        rows = self.client.query(self.name, filter="added == true", output_fields=["item_id"], limit=limit)
        return [r["item_id"] for r in rows]

    def fetch(self, ids: list[str]) -> list[dict[str, Any]]:
        """Rows of ``ids`` (those that exist): ``item_id``, ``title``, ``added``, ``vector``."""
        if not ids:
            return []
        return list(self.client.get(self.name, ids=list(ids), output_fields=["item_id", "title", "added", "vector"]))

    # -- writes -------------------------------------------------------------------------------------
    def add(self, item_id: str, title: str | None, vector: np.ndarray, content: dict[str, Any]) -> None:
        text = json.dumps(content, ensure_ascii=False)
        self.client.upsert(self.name, [{"item_id": item_id, "title": _clip(title), "added": True,
                                        "content": text if len(text) <= MAX_CONTENT else None,
                                        "vector": np.asarray(vector, dtype=np.float32).ravel()}])

    def delete(self, item_id: str) -> None:
        self.client.delete(self.name, ids=[item_id])

    def flush(self) -> None:
        try:
            self.client.flush(self.name)
        except Exception:  # noqa: BLE001,S110 - best effort at shutdown: the WAL holds the writes anyway
            pass


def preload(uri: str, bundle_dir: str | Path) -> dict[str, Any]:
    """Bulk-load a bundle's items into its collection (or find it complete) from the bundle's files, without
    loading the model: ``recembed serve`` does this once before its workers start, and ``export --to``."""
    import hashlib

    import pyarrow.parquet as pq

    from .bundle_read import EMBEDDINGS_FILE, MANIFEST, _load_tensors

    bundle_dir = Path(bundle_dir)
    table = pq.read_table(bundle_dir / "items.parquet")
    ids = [str(i) for i in table.column("id").to_pylist()]
    titles = table.column("title").to_pylist() if "title" in table.column_names else [None] * len(ids)
    vectors = _load_tensors(bundle_dir / EMBEDDINGS_FILE)["item_vectors"]
    sha = hashlib.sha256((bundle_dir / MANIFEST).read_bytes()).hexdigest()
    store = MilvusStore(uri, collection_name(sha), vectors.shape[1])
    return {**store.ensure(ids, titles, vectors), "items": len(ids), "dim": int(vectors.shape[1])}


def _clip(title: str | None) -> str | None:
    return None if title is None else str(title)[:MAX_TITLE]


class MilvusIndex(ItemIndex):
    """:class:`ItemIndex` whose searches run in Milvus. ``vectors`` (the bundle's, plus added items) stay in
    memory for the shared search paths (exact fallbacks, restricted candidates); ``resolve`` maps the ids Milvus
    returns to the service's item positions (-1 for ids it cannot place)."""

    kind = "milvus"

    @classmethod
    def over(cls, store: MilvusStore, vectors: np.ndarray, resolve: Any) -> MilvusIndex:
        obj = cls.__new__(cls)
        obj.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        obj._params = {"collection": store.name, "ef": store.ef, **{k.lower(): v for k, v in HNSW.items()}}
        obj.store, obj.resolve = store, resolve
        return obj

    def _raw_search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = self.store.search(queries, n)
        items = np.full((len(ids), n), -1, dtype=np.int64)
        out = np.full((len(ids), n), -np.inf, dtype=np.float32)
        for r, (row_ids, row_scores) in enumerate(zip(ids, scores)):
            m = len(row_ids)
            items[r, :m] = self.resolve(row_ids)
            out[r, :m] = row_scores
        return items, out
