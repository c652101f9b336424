"""The recommendation service without HTTP: ids in, ranked items (with titles) out.

:class:`RecService` wraps a loaded :class:`~.bundle.Bundle`:

* ``embedding`` bundles: a known user's recommendations are an index search with the precomputed user vector
  (``exclude_seen`` drops the user's known items); an anonymous history is embedded by the model when it
  can (``embed_history``, e.g. AlphaRec) and searched the same way, else scored by the model;
* ``model`` bundles: the model scores (history models from the user's row, sequential models from the user's
  whole known sequence), then the same top-k and filters;
* similar items: cosine over item vectors (an index over the L2-normalised vectors; shared with the
  recommendation index when the vectors are unit-norm already), or the model's own ``similar_items``;
* new items (:meth:`RecService.add_item`): the bundle's content encoder and the model's content head give an
  item vector, appended to the indexes; the item is recommendable and similar at once;
* retrieve-then-rank (bundles with a ranker, :mod:`.ranker`): a known user's recommendations are the
  retriever's top ``candidates`` (the same search as above) re-ordered by the ranker's click probability, the top
  ``k`` of them returned with both scores (:meth:`RecService.recommend_user_staged`). Anonymous histories and
  similar items stay retrieval-only.

The latency path is NumPy / FAISS on precomputed arrays; the only Python loops run over the ``k`` results.
Not thread-safe for writes: the app runs every request on the event loop (one at a time per worker).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError, RecembedError
from . import added as _added
from .bundle import Bundle, seen_matrix
from .content import CONTENT_HEADS
from .cutoff import ServedCutoff
from .index import ExactIndex, ItemIndex, build_index, load_index, set_index_threads, topk_rows
from .ranker import MAX_CANDIDATES, RankStage


class NotFound(RecembedError, LookupError):
    """An unknown user or item id (HTTP 404)."""

    def __init__(self, entity: str, ids: Sequence[str]) -> None:
        self.entity, self.ids = entity, list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:5])
        more = f" (and {len(self.ids) - 5} more)" if len(self.ids) > 5 else ""
        super().__init__(f"unknown {entity} id{'s' if len(self.ids) > 1 else ''} {shown}{more}")


class NotSupported(RecembedError, NotImplementedError):
    """The bundle's model cannot do this (HTTP 501)."""


class Conflict(RecembedError, ValueError):
    """The request clashes with the current state, e.g. an item id that exists (HTTP 409)."""


@dataclass(frozen=True)
class ServiceOptions:
    index: str | None = None
    """Index kind for recommendations (``exact``, ``flat``, ``hnsw``, ``ivfpq``); None: the bundle's stored
    index, else exact."""
    index_params: Mapping[str, Any] = field(default_factory=dict)
    """Parameters of an index built at start-up (``--index`` differing from the stored one)."""
    threads: int = 1
    """FAISS / BLAS threads per worker (one query per request: 1 avoids thread hand-off costs)."""
    allow_add_items: bool = True
    """Whether :meth:`RecService.add_item` may change the indexes without a store (off with several workers:
    each worker has its own copy, so an added item would exist in one of them only). A store lifts it."""
    store: str | None = None
    """URI of a Milvus store (``--store``; :func:`.store.open_store` gives it): the item index and the added
    items live there (see :mod:`.store`, :mod:`.added`)."""
    max_added_items: int = _added.DEFAULT_MAX_ADDED
    """Most items ``POST /v1/items`` may add (409 beyond; ``--max-added-items``)."""
    sync_interval: float = 1.0
    """With a store: seconds between refreshes of the added items on the listing endpoints."""
    store_search: str = "store"
    """With a store: ``"store"``, searches run in Milvus; ``"local"``, in the in-process index (FAISS), the store
    holding the added items (durable, shared; each worker refreshes them every ``sync_interval``)."""
    candidates: int | None = None
    """Bundles with a ranker: items the retriever proposes per request when the request does not say (None: the
    bundle's setting, ``recembed bundle --candidates``, default 200); at most :data:`~.ranker.MAX_CANDIDATES`."""


def _limit_blas_threads(threads: int) -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn / the content extra
        pass


def _limit_torch_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class RecService:
    def __init__(self, bundle: Bundle, options: ServiceOptions | None = None) -> None:
        self.bundle, self.options = bundle, options or ServiceOptions()
        self.model = bundle.model
        set_index_threads(self.options.threads)
        _limit_blas_threads(self.options.threads)
        self.user_ids = bundle.users.to_list()
        self.user_pos = {u: i for i, u in enumerate(self.user_ids)}
        self.item_ids = bundle.items.to_list()
        self.item_pos = {it: i for i, it in enumerate(self.item_ids)}
        self.titles: list[str | None] = list(bundle.titles) if bundle.titles is not None else [None] * len(
            self.item_ids)
        self.num_model_items = len(self.item_ids)
        seen = seen_matrix(bundle.history_indptr, bundle.history_items, len(self.item_ids))  # canonical: sorted
        self._seen_indptr = seen.indptr.astype(np.int64)
        self._seen_items = seen.indices.astype(np.int64)
        self.added: dict[str, int] = {}  # added item id -> position
        self.deleted = np.zeros(0, dtype=np.int64)  # positions of deleted added items (sorted)
        self.store: Any = None
        self.store_info: dict[str, Any] | None = None
        self.synced_at = 0.0
        self.poller: Any = None
        self.rec_index: ItemIndex | None = None
        self.sim_index: ItemIndex | None = None
        self.head = None
        self._build_indexes()
        if bundle.content is not None and bundle.head_state is not None:
            self.head = CONTENT_HEADS[bundle.manifest["content"]["head"]].from_state(self.model, bundle.head_state)
        self.rank: RankStage | None = None
        if bundle.ranker is not None:
            _limit_torch_threads(self.options.threads)
            default = self.options.candidates or bundle.manifest["ranker"].get("candidates") or 200
            if not 1 <= default <= MAX_CANDIDATES:
                raise DataError(f"must be from 1 to {MAX_CANDIDATES}, got {default}", field="candidates")
            self.rank = RankStage(bundle.ranker, bundle.ranker_features, int(default))
        elif self.options.candidates is not None:
            raise DataError("the bundle has no ranker (bundle it with `recembed bundle RUN --ranker RANKER_RUN`)",
                            field="candidates")
        self.cutoff = ServedCutoff.of_bundle(bundle)  # GET .../recommendations?min_probability= (:mod:`.cutoff`)
        self.stage_observer: Callable[[str, float], None] | None = None
        """Called with ``(stage, seconds)`` for each stage of a user's recommendations (the app's metrics)."""
        if self.options.store is not None:
            self._open_store()  # last: the added items it reads back go to every stage (the ranker's too)

    # -- set-up -----------------------------------------------------------------------------------
    def _build_indexes(self) -> None:
        b, opts = self.bundle, self.options
        if b.kind == "embedding":
            stored = b.index_meta
            if opts.index is None and stored:
                file = None if stored.get("file") is None else b.path / stored["file"]
                self.rec_index = load_index(stored["kind"], file, b.item_vectors, stored["params"])
            else:
                self.rec_index = build_index(opts.index or "exact", b.item_vectors, **dict(opts.index_params))
            item_vectors = b.item_vectors
        else:
            item_vectors = self.model.item_embeddings() if hasattr(self.model, "item_embeddings") else None
        if item_vectors is None:
            return
        norms = np.linalg.norm(item_vectors, axis=1)
        if self.rec_index is not None and np.allclose(norms, 1.0, atol=1e-4):
            self.sim_index = self.rec_index  # cosine == inner product: one index serves both
        else:
            unit = item_vectors / np.where(norms > 0, norms, 1.0)[:, None]
            self.sim_index = ExactIndex(unit)

    def _open_store(self) -> None:
        _added.open_store(self)

    def close(self) -> None:
        """Flush the store's writes (at shutdown)."""
        if self.poller is not None:
            self.poller.close()
        if self.store is not None:
            self.store.flush()

    def _fresh(self) -> None:
        """Local search over a store: pick up other workers' added / deleted items (every sync_interval)."""
        if self.poller is not None:
            self.poller.apply()

    def _excl(self, e: np.ndarray) -> np.ndarray:
        """Exclusions plus the deleted items' tombstones."""
        return e if not len(self.deleted) else np.concatenate([e, self.deleted])

    @property
    def index_kind(self) -> str:
        return self.rec_index.kind if self.rec_index is not None else "model"

    def info(self) -> dict[str, Any]:
        m = self.bundle.manifest
        return {"model": m["model"]["name"], "serving": m["serving"]["kind"], "index": self.index_kind,
                "users": len(self.user_ids), "items": len(self.item_pos), "added_items": len(self.added),
                "store": None if self.store is None else {"collection": self.store.name,
                                                          "search": self.options.store_search,
                                                          "max_added_items": self.options.max_added_items},
                "content": bool(self.head), "bundle_created": m.get("created"),
                "ranker": None if self.rank is None else self.rank.name,
                "candidates": None if self.rank is None else self.rank.candidates,
                "stages": ["retrieve", "rank"] if self.rank is not None else ["retrieve"]}

    # -- ids ----------------------------------------------------------------------------------------
    def user_index(self, user_id: str) -> int:
        try:
            return self.user_pos[str(user_id)]
        except KeyError:
            raise NotFound("user", [str(user_id)]) from None

    def item_indices(self, item_ids: Sequence[Any]) -> np.ndarray:
        ids = [str(i) for i in item_ids]
        if self.added and self.store is not None and any(i in self.added for i in ids):
            _added.sync(self, force=False)  # deleted by another worker? (at most every sync_interval)
        missing = [i for i in ids if i not in self.item_pos]
        if missing and _added.lookup_miss(self, missing):  # added by another worker meanwhile?
            missing = [i for i in ids if i not in self.item_pos]
        if missing:
            raise NotFound("item", missing)
        return np.fromiter((self.item_pos[i] for i in ids), dtype=np.int64, count=len(ids))

    def _items(self, idx: np.ndarray, scores: np.ndarray | None = None) -> list[dict[str, Any]]:
        ids, titles, out = self.item_ids, self.titles, []
        values = scores.tolist() if scores is not None else None
        for j, i in enumerate(idx.tolist()):
            if i < 0:
                break
            row: dict[str, Any] = {"item_id": ids[i], "title": titles[i]}
            if values is not None:
                row["score"] = round(values[j], 6)
            out.append(row)
        return out

    def _seen(self, u: int) -> np.ndarray:
        """The user's known items, unique and sorted (precomputed at start-up)."""
        return self._seen_items[self._seen_indptr[u]: self._seen_indptr[u + 1]]

    # -- recommendations ----------------------------------------------------------------------------
    def _topk_scores(self, scores: np.ndarray, k: int, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        scores = np.array(scores, dtype=np.float32, copy=True).reshape(1, -1)
        if exclude is not None and len(exclude):
            scores[0, exclude] = -np.inf
        items, top = topk_rows(scores, k)
        return items[0], top[0]

    def recommend_user_idx(self, users: np.ndarray, k: int, exclude_seen: bool = True
                           ) -> tuple[np.ndarray, np.ndarray]:
        """``(B, k)`` items and scores for user indices (the batch path of export and of one request)."""
        users = np.asarray(users, dtype=np.int64)
        b = self.bundle
        if exclude_seen:
            excl = [self._excl(self._seen(int(u))) for u in users]
        else:
            excl = [self.deleted] * len(users) if len(self.deleted) else None
        if self.rec_index is not None:
            return self.rec_index.search(b.user_vectors[users], k, exclude=excl)
        if b.manifest["serving"]["sequential"]:
            scores = self.model.score_histories([b.history(int(u)).tolist() for u in users])
        else:
            scores = self.model.score(users)
        scores = np.array(scores, dtype=np.float32)  # a copy: models may hand out read-only / shared arrays
        if excl is not None:
            lens = [len(e) for e in excl]
            if sum(lens):
                scores[np.repeat(np.arange(len(users)), lens), np.concatenate(excl)] = -np.inf
        return topk_rows(scores, k)

    def recommend_user(self, user_id: str, k: int = 10, exclude_seen: bool = True, candidates: int | None = None
                       ) -> list[dict[str, Any]]:
        """Top-``k`` for a known user (with a ranker: re-ranked candidates, see :meth:`recommend_user_staged`)."""
        return self.recommend_user_staged(user_id, k, exclude_seen, candidates)[0]

    def _candidates(self, k: int, candidates: int | None) -> int:
        """How many items the retriever proposes: ``candidates`` (checked), else the default, at least ``k``."""
        if self.rank is None:
            if candidates is not None:
                raise DataError("this bundle has no ranker, so there are no candidates to re-rank (bundle it with "
                                "`recembed bundle RUN --ranker RANKER_RUN`)", field="candidates")
            return k
        if candidates is None:
            return max(self.rank.candidates, k)
        if isinstance(candidates, bool) or not 1 <= candidates <= MAX_CANDIDATES:
            raise DataError(f"must be from 1 to {MAX_CANDIDATES}, got {candidates!r}", field="candidates")
        if candidates < k:
            raise DataError(f"must be >= k ({k}): the ranker returns the top k of the candidates, got {candidates}",
                            field="candidates")
        return int(candidates)

    def recommend_user_staged(self, user_id: str, k: int = 10, exclude_seen: bool = True,
                              candidates: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """``(items, stages)`` for a known user. Without a ranker: the retriever's top ``k`` (``score``). With one:
        the retriever's top ``candidates`` (default: the bundle's / ``ServiceOptions.candidates``, at least ``k``),
        re-ordered by the ranker's probability (ties: retrieval order), the first ``k``; each item has its retrieval
        ``score`` and ranker ``probability``. ``stages``: ``{"stages": [...], "candidates": C | None,
        "seconds": {stage: s}}``."""
        u = self.user_index(user_id)
        c = self._candidates(k, candidates)
        self._fresh()
        t0 = time.perf_counter()
        if self.rec_index is not None:  # the request path: one query, no batch bookkeeping
            exclude = [self._excl(self._seen(u))] if exclude_seen else [self.deleted]
            items, scores = self.rec_index.search(self.bundle.user_vectors[u: u + 1], c, exclude=exclude)
        else:
            items, scores = self.recommend_user_idx(np.array([u]), c, exclude_seen)
        items, scores = items[0], scores[0]
        t1 = time.perf_counter()
        seconds = {"retrieve": t1 - t0}
        observe = self.stage_observer
        if observe is not None:
            observe("retrieve", seconds["retrieve"])
        if self.rank is None:
            return self._items(items, scores), {"stages": ["retrieve"], "candidates": None, "seconds": seconds}
        keep = items >= 0
        items, scores = items[keep], scores[keep]
        probs = self.rank.probabilities(u, items, scores)
        order = np.argsort(-probs, kind="stable")[:k]
        out = self._items(items[order], scores[order])
        for row, p in zip(out, probs[order].tolist()):
            row["probability"] = round(p, 6)
        seconds["rank"] = time.perf_counter() - t1
        if observe is not None:
            observe("rank", seconds["rank"])
        return out, {"stages": ["retrieve", "rank"], "candidates": c, "seconds": seconds}

    def recommend_history(self, history: Sequence[Any], k: int = 10) -> list[dict[str, Any]]:
        """Top-``k`` after an anonymous history (item ids, oldest first), without its items."""
        self._fresh()
        h = self.item_indices(history)
        known = h[h < self.num_model_items]  # items added at serve time are not in the model's own tables
        if self.rec_index is not None and hasattr(self.model, "embed_history"):
            q = self.model.embed_history([known.tolist()])
            items, scores = self.rec_index.search(q, k, exclude=[self._excl(h)])
            return self._items(items[0], scores[0])
        if not self.bundle.manifest["serving"]["history_scoring"]:
            raise NotSupported(f"{self.model.name} cannot score an arbitrary history (it represents users by "
                               "learned per-user parameters); recommend for a known user instead")
        scores = self.model.score_histories([known.tolist()])[0]
        items, top = self._topk_scores(scores, k, np.unique(self._excl(h)))
        return self._items(items, top)

    def similar(self, item_id: str, k: int = 10) -> list[dict[str, Any]]:
        self._fresh()
        i = int(self.item_indices([item_id])[0])
        if self.sim_index is not None:
            items, scores = self.sim_index.search(self.sim_index.vectors[i][None], k,
                                                  exclude=[self._excl(np.array([i]))])
            return self._items(items[0], scores[0])
        try:
            items, scores = self.model.similar_items(i, k=k)
        except NotImplementedError as exc:
            raise NotSupported(str(exc)) from None
        return self._items(np.asarray(items), np.asarray(scores))

    # -- browsing -----------------------------------------------------------------------------------
    def user_history(self, user_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The user's most recent known items, newest first."""
        h = self.bundle.history(self.user_index(user_id))
        return self._items(h[::-1][:limit])

    def find_users(self, query: str = "", limit: int = 20) -> list[str]:
        q = query.strip().lower()
        out = []
        for u in self.user_ids:
            if not q or q in u.lower():
                out.append(u)
                if len(out) >= limit:
                    break
        return out

    def find_items(self, query: str = "", limit: int = 20) -> list[dict[str, Any]]:
        """Items whose id or title contains ``query`` (case-insensitive)."""
        _added.sync(self, force=False)
        q = query.strip().lower()
        hits = []
        dead = set(self.deleted.tolist())
        for i, (item_id, title) in enumerate(zip(self.item_ids, self.titles)):
            if i in dead:
                continue
            if not q or q in item_id.lower() or (title is not None and q in title.lower()):
                hits.append(i)
                if len(hits) >= limit:
                    break
        return self._items(np.asarray(hits, dtype=np.int64))

    # -- new items ----------------------------------------------------------------------------------
    def add_item(self, item_id: str, *, title: str | None = None, fields: Mapping[str, Any] | None = None,
                 vectors: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
        """Embed a new item from its content and add it to the indexes (no retraining); with a store it is
        written there first (see :mod:`.added`)."""
        return _added.add_item(self, item_id, title=title, fields=fields, vectors=vectors)

    def delete_item(self, item_id: str) -> dict[str, Any]:
        """Delete an item added at serve time (see :mod:`.added`)."""
        return _added.delete_item(self, item_id)
