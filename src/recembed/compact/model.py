"""The ``compressed`` model: an embedding model's user / item tables, quantised (:mod:`.quantize`), scored with
the decoded vectors.

Made from a fitted embedding model (one whose scores are ``user_vectors @ item_vectors.T``, checked as bundles
check it) by :meth:`CompressedEmbedding.from_model` (``recembed compress RUN --method ...``); it cannot be fitted
from data. Scores:

* ``fp32`` / ``fp16`` / ``int8``: both tables quantised; ``score = dec(U)[u] @ dec(I).T`` (int8: the integer
  dot product times the two scales, computed here in float32 on the decoded codes);
* ``pq`` / ``opq`` / ``ivfpq``: item vectors PQ-coded, user vectors fp32 (FAISS's asymmetric distance:
  ``q . decoded(x)``); the FAISS index with the codes is saved in the model (``faiss_index``, FAISS's own
  serialised bytes) and stored as the bundle's ``codes`` index. The evaluation scores every item (IVF's
  ``nprobe`` only limits the stored index's search);
* ``binary``: item sign codes (centred, with a per-row scale) scored against the fp32 user vector; the top
  ``rerank`` items not seen in training are re-scored exactly on the re-rank store; every other item is shifted
  below them (their sign-code order kept). Not an inner product of two tables, so its bundle is a ``model``
  bundle (the service calls :meth:`score`); with ``rerank=0`` it is one (user . decoded code).

Decoded tables are cached in memory for scoring (the codes are what is saved and what the byte accounting
counts). State: ``user_items`` (the training matrix, for ``exclude_seen``) plus the method's arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from ..config import check
from ..data.interactions import Interactions
from ..errors import ConfigError
from ..models.base import Recommender
from ..options import FitOptions
from . import quantize as q


@dataclass(frozen=True)
class CompressedConfig:
    method: Literal["fp32", "fp16", "int8", "binary", "pq", "opq", "ivfpq"] = "int8"
    """How the tables are quantised (see recembed.compact.quantize)."""
    m: int = 0
    """PQ sub-quantisers (pq / opq / ivfpq)."""
    nbits: int = 8
    """Bits per PQ sub-code."""
    rerank: int = 100
    """binary: items per user re-scored exactly (0: sign codes only)."""
    rerank_on: Literal["int8", "fp32"] = "int8"
    """binary: the re-rank store."""
    nlist: int = 0
    """ivfpq: coarse cells (0: chosen from the item count)."""
    nprobe: int = 16
    """ivfpq: cells the stored index visits per query."""
    source_model: str = ""
    """The name of the model whose tables were compressed."""

    def __post_init__(self) -> None:
        check(self.method not in q.FAISS_KINDS or self.m >= 1, "m", "PQ methods need m >= 1")
        check(self.rerank >= 0, "rerank", "must be >= 0")

    def to_method(self) -> q.Method:
        return q.Method(self.method, self.m, self.nbits, self.rerank, self.rerank_on, self.nlist, self.nprobe)


class CompressedEmbedding(Recommender):
    name = "compressed"
    Config = CompressedConfig
    inference_keys: ClassVar[frozenset[str]] = frozenset({"rerank"})

    _users: np.ndarray  # decoded (U, d) float32
    _items: np.ndarray  # decoded (I, d) float32 (binary: the re-rank store, decoded)
    _coarse: np.ndarray  # binary: the decoded sign codes (I, d) float32

    @classmethod
    def from_model(cls, model: Recommender, method: q.Method, *, seed: int = 0) -> CompressedEmbedding:
        """Quantise ``model``'s tables (an embedding model: else ConfigError)."""
        from ..serve.bundle import serving_vectors

        model._check_fitted()
        vectors = serving_vectors(model)
        if vectors is None:
            raise ConfigError(f"RUN: {model.name} has no user and item vectors whose inner product is its score; "
                              "only embedding models (bpr, lightgcn, simgcl, ...) can be compressed")
        users, items = vectors
        out = cls(method=method.kind, m=method.m, nbits=method.nbits, rerank=method.rerank,
                  rerank_on=method.rerank_on, nlist=method.nlist, nprobe=method.nprobe, source_model=model.name)
        out.num_users_, out.num_items_ = model.num_users_, model.num_items_
        seen = model.seen_items()
        state: dict[str, Any] = {} if seen is None else {"user_items": seen}
        state.update(encode_tables(method, users, items, seed))
        out._set_state(state)
        out.bytes_ = q.byte_report(method, items.shape[0], items.shape[1], getattr(out, "_faiss", None))
        return out

    def _fit(self, train: Interactions, options: FitOptions, **context: Any) -> None:
        raise ConfigError("compressed: made from a fitted run by `recembed compress RUN --method ... --out RUN2`, "
                          "not fitted from data")

    # -- scoring --------------------------------------------------------------------------------
    def score(self, user_idx: np.ndarray) -> np.ndarray:
        users = self._check_users(user_idx)
        qv = self._users[users]
        if self.config.method != "binary":
            return qv @ self._items.T
        coarse = qv @ self._coarse.T
        n = min(self.config.rerank, self.num_items_)
        if n == 0:
            return coarse
        pick = coarse.copy()
        seen = self.seen_items()
        if seen is not None:  # the service and the evaluation drop them anyway: spend the re-rank on the rest
            rows = seen[users]
            pick[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = -np.inf
        cand = np.argpartition(-pick, n - 1, axis=1)[:, :n] if n < self.num_items_ else \
            np.tile(np.arange(self.num_items_), (len(users), 1))
        exact = np.einsum("bd,bnd->bn", qv, self._items[cand]).astype(np.float32)
        shift = exact.min(axis=1) - coarse.max(axis=1) - 1.0
        out = coarse + shift[:, None]
        np.put_along_axis(out, cand, exact, axis=1)
        return out.astype(np.float32, copy=False)

    def user_embeddings(self) -> np.ndarray:
        self._check_fitted()
        return self._users

    def item_embeddings(self) -> np.ndarray:
        self._check_fitted()
        return self._items if self.config.method != "binary" or self.config.rerank else self._coarse

    def stored_index(self) -> Any:
        """The FAISS index holding the PQ codes (pq / opq / ivfpq), else None: the bundle's ``codes`` index."""
        return getattr(self, "_faiss", None)

    def compression_info(self) -> dict[str, Any]:
        info = getattr(self, "bytes_", None)
        if info is None:
            d = self._users.shape[1]
            info = q.byte_report(self.config.to_method(), self.num_items_, d, self.stored_index())
        return dict(info)

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return dict(self._saved)

    def _set_state(self, state: dict[str, Any]) -> None:
        self._saved = dict(state)
        self.user_items_ = state.get("user_items")
        users, items, coarse, index = decode_tables(self.config.to_method(), state)
        self._users, self._items = users, items
        if coarse is not None:
            self._coarse = coarse
        if index is not None:
            self._faiss = index


def encode_tables(method: q.Method, users: np.ndarray, items: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """The saved arrays of ``method`` for fp32 ``users`` / ``items`` tables."""
    kind = method.kind
    if kind == "fp32":
        return {"user_vectors": users, "item_vectors": items}
    if kind == "fp16":
        return {"user_codes": q.fp16_encode(users), "item_codes": q.fp16_encode(items)}
    if kind == "int8":
        uc, us = q.int8_encode(users)
        ic, isc = q.int8_encode(items)
        return {"user_codes": uc, "user_scale": us,
                "item_codes": ic, "item_scale": isc}
    if kind == "binary":
        bits, scale, mean = q.binary_table(items)
        out = {"user_vectors": users, "item_bits": bits, "item_bit_scale": scale, "item_mean": mean}
        if method.rerank_on == "fp32":
            out["item_vectors"] = items
        else:
            out["item_codes"], out["item_scale"] = q.int8_encode(items)
        return out
    index = q.train_faiss(method, items, seed)
    return {"user_vectors": users, "faiss_index": q.faiss_to_array(index)}


def decode_tables(method: q.Method, state: dict[str, Any]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any]:
    """``(users, items, binary coarse vectors, faiss index)`` decoded from the saved arrays (float32, C-contiguous)."""
    kind, signs, index = method.kind, None, None
    if kind == "fp16":
        users, items = q.fp16_decode(state["user_codes"]), q.fp16_decode(state["item_codes"])
    elif kind == "int8":
        users = q.int8_decode(state["user_codes"], state["user_scale"])
        items = q.int8_decode(state["item_codes"], state["item_scale"])
    elif kind in q.FAISS_KINDS:
        users = state["user_vectors"]
        index = q.faiss_from_array(state["faiss_index"])
        items = q.faiss_decode(index)
    else:
        users = state["user_vectors"]
        if kind == "binary":
            signs = q.binary_table_decode(state["item_bits"], state["item_bit_scale"], state["item_mean"])
            items = state["item_vectors"] if "item_vectors" in state else \
                q.int8_decode(state["item_codes"], state["item_scale"])
        else:
            items = state["item_vectors"]
    as32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return as32(users), as32(items), None if signs is None else as32(signs), index
