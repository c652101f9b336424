"""Items added at serve time (``POST /v1/items``, ``DELETE /v1/items/{id}``), with or without a store.

Without a store an added item lives in the worker's memory (lost on restart; several workers refuse adds,
since each would hold its own copy). With a store (:mod:`.store`, ``--store milvus:...``) the item is written
to the store *before* the service answers, its in-memory copy follows; at start-up the store's added items are
read back, and a worker refreshes them (:func:`sync`) when a search returns an id it does not know, when a
lookup misses, before an add or delete, and at most every ``sync_interval`` seconds on the listing endpoints, so
every worker sees the items any worker added or deleted. With ``store_search="local"`` searches stay in the
worker's own index (FAISS) and the worker refreshes the store's added items every ``sync_interval`` on the request
paths.

Only added items can be deleted: the bundle's items are immutable (the user histories, the ranker's features
and the user vectors refer to them); deleting one is a 409. A deleted item leaves a tombstone in memory (its
position is excluded from every answer) and its row is removed from the store.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    from .service import RecService

DEFAULT_MAX_ADDED = 10_000
MIN_SYNC_GAP = 1.0
"""Seconds between two refreshes forced by a lookup miss (an unknown id cannot make a worker query the store on
every request)."""


def open_store(svc: RecService) -> None:
    """Connect ``svc`` to its bundle's collection (bulk-loaded when needed), search there unless
    ``store_search="local"``, and read back the store's added items."""
    from .store import MilvusIndex, MilvusStore, collection_name

    b, opts = svc.bundle, svc.options
    if b.kind != "embedding" or svc.rec_index is None:
        raise ConfigError(f"--store: {svc.model.name} is served by its own scoring (no item vectors to store); "
                          "a store needs an embedding bundle")
    if opts.store_search not in ("store", "local"):
        raise ConfigError(f"--store-search: expected store or local, got {opts.store_search!r}")
    manifest_sha = hashlib.sha256((b.path / "manifest.json").read_bytes()).hexdigest()
    store = MilvusStore(opts.store, collection_name(manifest_sha), b.item_vectors.shape[1])
    svc.store_info = store.ensure(svc.item_ids, svc.titles, b.item_vectors)
    svc.store = store
    if opts.store_search == "store":
        shared = svc.sim_index is svc.rec_index
        svc.rec_index = MilvusIndex.over(store, b.item_vectors, lambda ids: resolve_ids(svc, ids))
        if shared:
            svc.sim_index = svc.rec_index
    sync(svc)  # the added items of earlier runs / other workers
    if opts.store_search == "local":
        svc.poller = Poller(svc)


class Poller:
    """``store_search="local"``: a thread that reads the store's added items every ``sync_interval`` (a query
    that milvus-lite answers by scanning the collection: never on the event loop) and leaves the difference for
    :meth:`apply`, which the request paths call (cheap when nothing changed)."""

    def __init__(self, svc: RecService) -> None:
        self.svc, self.pending = svc, None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="recembed-store-poller", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        svc = self.svc
        while not self.stop.wait(svc.options.sync_interval):
            try:
                known = frozenset(list(svc.added))
                in_store = set(svc.store.added_ids(limit=max(16_384, svc.options.max_added_items + 1)))
                gone, new = known - in_store, in_store - known
                if gone or new:
                    self.pending = (gone, svc.store.fetch(sorted(new)))
            except Exception:  # noqa: BLE001,S112 - the store was briefly unreachable / the dict changed: next round
                continue

    def apply(self) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        svc = self.svc
        gone, rows = pending
        for item_id in gone:
            if item_id in svc.added:
                _tombstone(svc, item_id)
        for row in rows:
            if row["item_id"] not in svc.item_pos:
                _append(svc, row["item_id"], row.get("title"), np.asarray(row["vector"], dtype=np.float32)[None])

    def close(self) -> None:
        self.stop.set()


def _append(svc: RecService, item_id: str, title: str | None, vec: np.ndarray) -> int:
    """Add ``vec`` ``(1, D)`` to the in-memory indexes and tables; returns its position."""
    assert svc.rec_index is not None
    new = int(svc.rec_index.add(vec)[0])
    if svc.sim_index is not None and svc.sim_index is not svc.rec_index:
        svc.sim_index.add(vec / max(float(np.linalg.norm(vec)), 1e-12))
    if svc.rank is not None:
        svc.rank.add_item(item_id)  # no attributes: OOV / zero features (see EncodedPairs.append_items)
    svc.item_ids.append(item_id)
    svc.item_pos[item_id] = new
    svc.titles.append(title)
    svc.added[item_id] = new
    return new


def _tombstone(svc: RecService, item_id: str) -> None:
    pos = svc.added.pop(item_id)
    svc.item_pos.pop(item_id, None)
    svc.deleted = np.union1d(svc.deleted, np.array([pos], dtype=np.int64))


def sync(svc: RecService, *, force: bool = True) -> bool:
    """Bring the in-memory added items in line with the store's (items added / deleted by other workers or
    before a restart). Returns whether anything changed. No-op without a store."""
    store = svc.store
    if store is None:
        return False
    if not force and svc.poller is not None:  # local search: the poller thread reads the store
        svc.poller.apply()
        return False
    now = time.monotonic()
    if not force and now - svc.synced_at < svc.options.sync_interval:
        return False
    svc.synced_at = now
    in_store = set(store.added_ids(limit=max(16_384, svc.options.max_added_items + 1)))
    gone = [i for i in svc.added if i not in in_store]
    new = [i for i in in_store if i not in svc.added]
    for item_id in gone:
        _tombstone(svc, item_id)
    for row in sorted(store.fetch(new), key=lambda r: r["item_id"]):
        item_id = row["item_id"]
        if item_id in svc.item_pos:  # re-added under the id of a bundle item? never written: add_item refuses it
            continue
        _append(svc, item_id, row.get("title"), np.asarray(row["vector"], dtype=np.float32)[None])
    return bool(gone or new)


def resolve_ids(svc: RecService, ids: Sequence[str]) -> np.ndarray:
    """Positions of ids a store search returned; an unknown one (added by another worker) triggers a refresh."""
    pos = svc.item_pos
    if any(i not in pos for i in ids):
        sync(svc)
    return np.fromiter((pos.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))


def lookup_miss(svc: RecService, missing: Sequence[str] = ()) -> bool:
    """An id lookup missed: first read those ids from the store by primary key (an item another worker added a
    moment ago is found at once: read-after-write across workers), then, at most every :data:`MIN_SYNC_GAP` s, a
    full refresh; True if anything changed."""
    if svc.store is None:
        return False
    found = False
    for row in svc.store.fetch([str(i) for i in list(missing)[:64]]):
        item_id = row["item_id"]
        if not row.get("added") or item_id in svc.item_pos:
            continue
        _append(svc, item_id, row.get("title"), np.asarray(row["vector"], dtype=np.float32)[None])
        found = True
    if found or time.monotonic() - svc.synced_at < MIN_SYNC_GAP:
        return found
    return sync(svc)


def add_item(svc: RecService, item_id: str, *, title: str | None = None, fields: Mapping[str, Any] | None = None,
             vectors: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
    """Embed a new item from its content; write it to the store (when there is one) before it is served."""
    from .service import Conflict, NotSupported

    if svc.head is None or svc.bundle.content is None:
        raise NotSupported(f"this bundle ({svc.model.name}) has no content encoder: adding items needs a content "
                           "model bundled with its text encoder (AlphaRec or VBPR fitted with --text-columns)")
    if not svc.options.allow_add_items and svc.store is None:
        raise Conflict("adding items is off: with several workers each holds its own index (serve with "
                       "--workers 1, or give the workers a shared store: --store milvus:PATH.db)")
    item_id = str(item_id)
    if not item_id.strip():
        raise DataError("must not be empty", field="item_id")
    sync(svc)
    if item_id in svc.item_pos:
        raise Conflict(f"item id {item_id!r} exists already")
    cap = svc.options.max_added_items
    if len(svc.added) >= cap:
        raise Conflict(f"the service holds {len(svc.added)} added items, the most it takes (--max-added-items "
                       f"{cap}): delete some (DELETE /v1/items/{{item_id}}) or raise the cap")
    fields = dict(fields or {})
    if title is not None and "title" in svc.bundle.content.text_columns:
        fields.setdefault("title", title)
    row = svc.bundle.content.encode(fields, vectors)
    vec = svc.head.embed(row[None])  # (1, D)
    if svc.rec_index is None or not np.isfinite(vec).all():
        raise DataError("the content gave no usable item vector", field="fields")
    if svc.store is not None:  # durable first: the 201 means the store has it
        svc.store.add(item_id, title, vec[0], {"title": title, "fields": fields, "vectors": dict(vectors or {})})
    new = _append(svc, item_id, title, vec)
    return {"item_id": item_id, "title": title, "item_index": new, "items": len(svc.item_pos),
            "added_items": len(svc.added), "stored": svc.store is not None}


def delete_item(svc: RecService, item_id: str) -> dict[str, Any]:
    """Delete an item added at serve time (404 for an unknown id, 409 for an item of the bundle)."""
    from .service import Conflict, NotFound

    item_id = str(item_id)
    sync(svc)
    if item_id not in svc.item_pos:
        raise NotFound("item", [item_id])
    if item_id not in svc.added:
        raise Conflict(f"item {item_id!r} is part of the bundle, which is immutable: only items added with "
                       "POST /v1/items can be deleted (re-bundle the run to drop bundle items)")
    if svc.store is not None:
        svc.store.delete(item_id)
    _tombstone(svc, item_id)
    return {"item_id": item_id, "deleted": True, "added_items": len(svc.added)}
