"""The one small facade every retrieval model implements.

``fit(train) -> self``, ``score(user_idx) -> (B, I)``, ``recommend(user_idx, k) -> (items, scores)``,
``similar_items(item_idx, k)``, ``save(dir)`` / ``load(dir)``. Models only see indices; id maps live
with the run / bundle. Constructors take hyperparameters only (a config, or keyword overrides);
learned state is set in ``fit`` in attributes with a trailing underscore.

Saved form: ``model.json`` (name, config, format version) and ``model.safetensors`` (arrays; a sparse
matrix ``M`` as ``M.indptr``, ``M.indices``, ``M.data``, ``M.shape``). Never pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from ..config import build_config, config_to_dict, saved_values
from ..data.interactions import Interactions
from ..errors import ConfigError, DataError, NotFittedError
from ..io import atomic_write, read_json, write_json
from ..options import FitOptions

FORMAT_VERSION = 1


def _as_interactions(data: Any, name: str) -> Interactions:
    if isinstance(data, Interactions):
        return data
    if sp.issparse(data):
        return Interactions.from_csr(data)
    raise DataError(f"fit({name}=...): expected recembed Interactions or a scipy.sparse user x item matrix, got "
                    f"{type(data).__name__}; build Interactions with Dataset.from_pandas / Dataset.from_arrow / "
                    "Interactions.from_csr(matrix), or pass split.train")


def check_k(k: Any, name: str = "k") -> int:
    """``k`` as an int when it is a positive integer (a cut-off: how many items to return), else ConfigError."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"{name}: expected a positive integer (how many items to return), got {k!r}")
    return int(k)


class Recommender:
    """Base class of the retrieval models. Subclasses set ``name``, ``Config`` and implement
    ``_fit``, ``score`` and ``_state`` / ``_set_state``."""

    name: ClassVar[str]
    Config: ClassVar[type]
    inference_keys: ClassVar[frozenset[str]] = frozenset()
    """Config keys that only change how a fitted model scores (e.g. TIGER's beam size), not what it learnt:
    :meth:`with_inference` may change them on a fitted or loaded model."""

    def __init__(self, config: Any | None = None, **overrides: Any) -> None:
        if config is None:
            config = build_config(self.Config, overrides)
        elif overrides:
            config = build_config(self.Config, {**config_to_dict(config), **overrides})
        elif not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} expects a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.num_users_: int | None = None
        self.num_items_: int | None = None

    def with_inference(self, **overrides: Any) -> Self:
        """Change inference-time settings (keys in ``inference_keys``) of this fitted model in place."""
        bad = sorted(set(overrides) - self.inference_keys)
        if bad:
            allowed = sorted(self.inference_keys) or "none"
            raise ConfigError(f"{bad} cannot change after {self.name} is fitted (they shape what it learns); "
                              f"inference-time keys of {self.name}: {allowed}")
        self.config = build_config(self.Config, {**config_to_dict(self.config), **overrides})
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in config_to_dict(self.config).items())
        return f"{type(self).__name__}({params})"

    # -- the contract -----------------------------------------------------------------------------
    def fit(self, train: Interactions, *, options: FitOptions | None = None, **context: Any) -> Self:
        """Learn from ``train`` (:class:`Interactions`, or a scipy.sparse user x item matrix, wrapped with
        :meth:`Interactions.from_csr`); ``context`` may carry ``valid`` interactions or an ``item_table``."""
        train = _as_interactions(train, "train")
        if "valid" in context and context["valid"] is not None:
            context["valid"] = _as_interactions(context["valid"], "valid")
        if len(train) == 0:
            raise DataError("cannot fit on an empty training set")
        self.num_users_, self.num_items_ = train.num_users, train.num_items
        self.auto_resolved_: dict[str, Any] = {}  # data-dependent values this fit chose (see _record_resolved)
        self._fit(train, options or FitOptions(), **context)
        return self

    def _fit(self, train: Interactions, options: FitOptions, **context: Any) -> None:
        raise NotImplementedError

    def _record_resolved(self, key: str, value: Any) -> None:
        """A setting chosen from the data rather than the config (a batch size, a density-dependent filter):
        kept in ``auto_resolved_`` and written to the run's ``config.json`` under ``auto_resolved``."""
        self.__dict__.setdefault("auto_resolved_", {})[key] = value

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        """Scores of every item for each user: ``(B,) -> (B, num_items) float32``."""
        raise NotImplementedError

    @property
    def is_fitted(self) -> bool:
        return self.num_items_ is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(...) or load(...) first")

    def _check_users(self, user_idx: np.ndarray) -> np.ndarray:
        self._check_fitted()
        u = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        if u.size and (u.min() < 0 or u.max() >= self.num_users_):
            bad = u[(u < 0) | (u >= self.num_users_)][:5].tolist()
            raise DataError(f"user index {bad} out of range [0, {self.num_users_})", field="user_idx")
        return u

    def recommend(
        self, user_idx: int | np.ndarray, k: int = 10, *, exclude: sp.csr_matrix | None = None,
        exclude_seen: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items and scores. A scalar user gives ``(k,)`` arrays, an array ``(B, k)``.

        ``exclude_seen`` drops the items the model saw for the user in training (models that keep the
        user-item matrix); ``exclude`` adds a user x item matrix of further items to drop.
        """
        from ..evaluation.ranking import rank_topk

        k = check_k(k)
        scalar = np.ndim(user_idx) == 0
        users = self._check_users(user_idx)
        mask = self._exclusion(exclude_seen, exclude)
        items, scores = rank_topk(self.score, users, mask, k, num_items=self.num_items_)
        return (items[0], scores[0]) if scalar else (items, scores)

    def _exclusion(self, exclude_seen: bool, exclude: sp.csr_matrix | None) -> sp.csr_matrix | None:
        """The user x item matrix of items :meth:`recommend` leaves out (the seen ones and / or ``exclude``)."""
        mask = self.seen_items() if exclude_seen else None
        if exclude is not None:
            mask = exclude if mask is None else (mask + exclude).tocsr()
        return mask

    def score_histories(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(n, num_items)`` scores for arbitrary histories (item indices, oldest first): an anonymous user or
        a session. Models that can score a history override this."""
        raise NotImplementedError(f"{type(self).__name__} cannot score an arbitrary history (it represents users "
                                  "by learned per-user parameters); use a history-based model (sequential models, "
                                  "EASE, ItemKNN, GF-CF, Pop, AlphaRec)")

    def recommend_history(self, history: Sequence[int], k: int = 10, *,
                          exclude_history: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(items, scores)`` after ``history`` (item indices, oldest first), without its items."""
        from ..evaluation.ranking import rank_topk

        k = check_k(k)
        self._check_fitted()
        h = np.asarray(history, dtype=np.int64)
        if h.size and (h.min() < 0 or h.max() >= self.num_items_):
            bad = h[(h < 0) | (h >= self.num_items_)][:5].tolist()
            raise DataError(f"item index {bad} out of range [0, {self.num_items_})", field="history")
        scores = np.asarray(self.score_histories([h.tolist()]), dtype=np.float32)
        seen = np.unique(h)
        mask = sp.csr_matrix((np.ones(len(seen), dtype=np.float32), (np.zeros(len(seen), dtype=np.int64), seen)),
                             shape=(1, self.num_items_)) if exclude_history and h.size else None
        items, out = rank_topk(lambda _: scores, np.zeros(1, dtype=np.int64), mask, k, num_items=self.num_items_)
        return items[0], out[0]

    def seen_items(self) -> sp.csr_matrix | None:
        """The training user x item matrix, if the model keeps it."""
        return getattr(self, "user_items_", None)

    def item_embeddings(self) -> np.ndarray | None:
        """``(num_items, d)`` item vectors, for models that have them."""
        return None

    def similar_items(self, item_idx: int | np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar other items, by :meth:`similarity_rows`."""
        k = check_k(k)
        self._check_fitted()
        return self._topk_rows(self.similarity_rows, item_idx, k)

    def similarity_rows(self, item_idx: np.ndarray) -> np.ndarray:
        """``(b, num_items)`` similarity of the given items to every item: the cosine over item vectors unless a
        model overrides."""
        emb = self.item_embeddings()
        if emb is None:
            raise NotImplementedError(f"{type(self).__name__} has no item similarity")
        normed = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return normed[item_idx] @ normed.T

    def _topk_rows(self, rows_fn: Any, item_idx: int | np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        from ..evaluation.ranking import rank_topk

        scalar = np.ndim(item_idx) == 0
        items = np.atleast_1d(np.asarray(item_idx, dtype=np.int64))
        if items.size and (items.min() < 0 or items.max() >= self.num_items_):
            raise DataError(f"item index out of range [0, {self.num_items_})", field="item_idx")
        self_mask = sp.csr_matrix(
            (np.ones(len(items), dtype=np.float32), (np.arange(len(items)), items)),
            shape=(len(items), self.num_items_),
        )
        out, scores = rank_topk(lambda b: rows_fn(items[b]), np.arange(len(items)), self_mask, k,
                                num_items=self.num_items_)
        return (out[0], scores[0]) if scalar else (out, scores)

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray | sp.spmatrix]:
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` and ``model.safetensors`` into ``directory`` (atomically each)."""
        from safetensors.numpy import save_file

        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for key, value in self._state().items():
            if sp.issparse(value):
                m = sp.csr_matrix(value)
                arrays[f"{key}.indptr"] = m.indptr.astype(np.int64)
                arrays[f"{key}.indices"] = m.indices.astype(np.int32)
                arrays[f"{key}.data"] = np.ascontiguousarray(m.data)
                arrays[f"{key}.shape"] = np.asarray(m.shape, dtype=np.int64)
            else:
                arrays[key] = np.ascontiguousarray(value)
        atomic_write(directory / "model.safetensors", lambda p: save_file(arrays, str(p)))
        write_json(directory / "model.json", {
            "model": self.name, "format": FORMAT_VERSION, "config": config_to_dict(self.config),
            "num_users": self.num_users_, "num_items": self.num_items_,
        })
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Recommender:
        """Load a saved model (of this class, or of any registered class when called on the base)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        from .registry import model_class

        directory = Path(directory)
        meta = read_json(directory / "model.json")
        if meta.get("format") != FORMAT_VERSION:
            raise DataError(f"unsupported model format {meta.get('format')!r} (expected {FORMAT_VERSION})",
                            path=directory / "model.json")
        target = model_class(meta["model"]) if cls is Recommender else cls
        if target.name != meta["model"]:
            raise DataError(f"holds a {meta['model']!r} model, not {target.name!r}", path=directory / "model.json")
        try:
            raw = load_file(str(directory / "model.safetensors"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataError(f"unreadable weights ({exc})", path=directory / "model.safetensors") from None
        state: dict[str, Any] = {}
        for key in {k.rsplit(".", 1)[0] for k in raw if k.endswith(".indptr")}:
            shape = tuple(int(s) for s in raw.pop(f"{key}.shape"))
            state[key] = sp.csr_matrix(
                (raw.pop(f"{key}.data"), raw.pop(f"{key}.indices"), raw.pop(f"{key}.indptr")), shape=shape
            )
        state.update(raw)
        model = target(build_config(target.Config, saved_values(target.Config, meta["config"])))
        model.num_users_, model.num_items_ = int(meta["num_users"]), int(meta["num_items"])
        model._set_state(state)
        model._load_extra(directory)
        return model

    def _load_extra(self, directory: Path) -> None:
        """Models with saved parts beyond ``model.safetensors`` (an ensemble's members) read them here."""


class HistoryRecommender(Recommender):
    """A model whose scores are a function of the user's interaction row (EASE, ItemKNN, GF-CF, Pop).

    It keeps the training matrix ``user_items_`` to score known users, and scores any history (a
    new user, a session) through :meth:`score_history`.
    """

    user_items_: sp.csr_matrix

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        users = self._check_users(user_idx)
        return self.score_history(self.user_items_[users])

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        """``(B, num_items)`` binary history rows -> ``(B, num_items) float32`` scores."""
        raise NotImplementedError

    def score_histories(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        self._check_fitted()
        lengths = [len(h) for h in histories]
        cols = np.fromiter((int(i) for h in histories for i in h), dtype=np.int64, count=sum(lengths))
        if cols.size and (cols.min() < 0 or cols.max() >= self.num_items_):
            raise DataError(f"item index out of range [0, {self.num_items_})", field="history")
        rows = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (np.repeat(np.arange(len(histories)), lengths),
                                                                      cols)), shape=(len(histories), self.num_items_))
        rows.data[:] = 1.0  # binary, as the training rows (a repeated item sums otherwise)
        return self.score_history(rows)

    def similarity_rows(self, item_idx: np.ndarray) -> np.ndarray:
        """The scores of a history holding only the given item."""
        idx = np.asarray(item_idx, dtype=np.int64)
        one_hot = sp.csr_matrix((np.ones(len(idx), dtype=np.float32), (np.arange(len(idx)), idx)),
                                shape=(len(idx), self.num_items_))
        return self.score_history(one_hot)

    def _fit(self, train: Interactions, options: FitOptions, **context: Any) -> None:
        self.user_items_ = train.csr("binary")
        self._fit_matrix(self.user_items_, options)

    def _fit_matrix(self, x: sp.csr_matrix, options: FitOptions) -> None:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        return {"user_items": self.user_items_, **self._matrix_state()}

    def _matrix_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any]) -> None:
        self.user_items_ = state.pop("user_items")
        for key, value in state.items():
            setattr(self, f"{key}_", value)

