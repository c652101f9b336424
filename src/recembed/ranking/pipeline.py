"""Retrieve-then-rank: a retrieval run proposes ``candidates`` items per user, a ranker re-orders them.

    recembed fit lightgcn --data ml-100k --split DIR --out runs/lgn
    recembed fit deepfm --data ml-100k --split DIR --out runs/deepfm          # trained on the same split's train part
    recembed pipeline --retriever runs/lgn --ranker runs/deepfm --candidates 200

Both stages are evaluated on the retriever's split with the full-ranking evaluator (training and validation items
masked, as ``recembed evaluate``): the retriever alone, and the pipeline, whose list is the top ``candidates`` of
the retriever re-ordered by the ranker's click probability (items outside the candidates rank below them, so
metrics at K <= candidates are exact). The ranker must have been fitted on the same data and split (its
``config.json`` says so), or its training rows could hold the test pairs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .implicit import pair_frame


class RetrieveThenRank:
    """A scorer over all items: the ranker's probabilities on the retriever's top ``candidates``, ``-inf`` elsewhere."""

    def __init__(self, retriever: Any, ranker: Any, dataset: Any, exclude: Any, candidates: int,
                 user_map: np.ndarray, item_map: np.ndarray, base: Any = None) -> None:
        self.retriever, self.ranker, self.dataset = retriever, ranker, dataset
        self.base = base or retriever.score  # sequential retrievers: the history through validation
        self.exclude, self.candidates = exclude, candidates
        self.user_map, self.item_map = user_map, item_map  # run index -> dataset index
        self.fields = ranker.schema_.fields
        self.rank_seconds = 0.0
        self.retrieve_seconds = 0.0

    def top(self, users: np.ndarray) -> np.ndarray:
        """The retriever's ``(B, C)`` candidates (run item indices), masked items excluded."""
        t = time.perf_counter()
        scores = np.asarray(self.base(users), dtype=np.float32).copy()
        rows = self.exclude[users]
        scores[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = -np.inf
        c = min(self.candidates, scores.shape[1])
        top = np.argpartition(-scores, c - 1, axis=1)[:, :c]
        self.retrieve_seconds += time.perf_counter() - t
        return top

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        top = self.top(users)
        t = time.perf_counter()
        u = np.repeat(users, top.shape[1])
        frame = pair_frame(self.dataset, self.fields, self.user_map[u], self.item_map[top.ravel()])
        probs = self.ranker.predict(frame).reshape(top.shape)
        out = np.full((len(users), self.retriever.num_items_), -np.inf, dtype=np.float32)
        np.put_along_axis(out, top, probs, axis=1)
        self.rank_seconds += time.perf_counter() - t
        return out


def index_map(run_vocab: Any, data_vocab: Any, what: str) -> np.ndarray:
    idx = data_vocab.index(list(run_vocab.ids), unknown="ignore")
    if (idx < 0).any():
        raise ConfigError(f"the retriever's {what} ids are not all in the ranker's dataset "
                          f"({int((idx < 0).sum())} missing): fit both on the same data")
    return np.asarray(idx, dtype=np.int64)


def check_same_split(retriever_config: dict[str, Any], ranker_config: dict[str, Any] | None, ranker_dir: Any,
                     flag: str = "--ranker", what: str = "the pipeline") -> dict[str, Any]:
    """The ranker run's data spec, after checking that it was fitted on an interaction dataset and on the same data
    and split as the retriever (else its training rows could hold the retriever's test pairs); a
    :class:`ConfigError` naming ``flag`` otherwise. Shared by ``recembed pipeline`` and ``recembed bundle``."""
    spec = (ranker_config or {}).get("data") or {}
    if not spec.get("split"):
        raise ConfigError(f"{flag}: {ranker_dir} was fitted on a CTR dataset ({spec.get('data')!r}), not on an "
                          "interaction dataset and split: fit it with `recembed fit RANKER --data D --split S`")
    if spec.get("data") != retriever_config.get("data", {}).get("data") or spec["split"] != retriever_config.get(
            "split"):
        raise ConfigError(f"{flag}: fitted on {spec.get('data')!r} split {spec['split']!r}, the retriever on "
                          f"{retriever_config.get('data', {}).get('data')!r} split {retriever_config.get('split')!r}: "
                          f"{what} needs both on the same data and split")
    return spec


def load_ranker_dataset(spec: dict[str, Any], data_root: str | None = None) -> Any:
    """The dataset a ranker run was fitted on (its ``config.json`` ``data``), for its pair features."""
    from ..data import catalog

    dataset, _ = catalog.load_any(spec["data"], data_root or spec.get("data_root"), items=spec.get("items"),
                                  users=spec.get("users"), columns=spec.get("columns"),
                                  duplicates=spec.get("duplicates"))
    return dataset


def evaluate_pipeline(retriever_dir: str | Path, ranker_dir: str | Path, *, candidates: int = 200,
                      ks: tuple[int, ...] = (10, 20), data_root: str | None = None,
                      show_progress: bool = False) -> dict[str, Any]:
    from ..runs import evaluate_split, load_run
    from .runs import load_ranker_run

    if candidates < 1:
        raise ConfigError(f"--candidates: must be >= 1, got {candidates}")
    ret = load_run(retriever_dir)
    rk = load_ranker_run(ranker_dir)
    spec = check_same_split(ret.config, rk.config, ranker_dir)
    dataset = load_ranker_dataset(spec, data_root)
    split = ret.split
    exclude = (split.train.csr() + split.valid.csr()).tocsr()
    base = ret.model.scorer_after(split.valid) if hasattr(ret.model, "scorer_after") and len(split.valid) else None
    pipe = RetrieveThenRank(ret.model, rk.model, dataset, exclude, candidates,
                            index_map(ret.users, dataset.users, "user"), index_map(ret.items, dataset.items, "item"),
                            base)
    t = time.perf_counter()
    alone = evaluate_split(ret.model, split, "test", ks=ks, show_progress=show_progress)
    alone_s = time.perf_counter() - t
    t = time.perf_counter()
    both = evaluate_split(pipe, split, "test", ks=ks, show_progress=show_progress)
    both_s = time.perf_counter() - t
    users = int(both.summary.get("users", 0)) if both is not None else 0
    return {"candidates": candidates, "retriever": str(retriever_dir), "ranker": str(ranker_dir),
            "retriever_alone": alone.summary if alone is not None else {},
            "pipeline": both.summary if both is not None else {},
            "seconds": {"retriever_alone": round(alone_s, 3), "pipeline": round(both_s, 3),
                        "pipeline_retrieve": round(pipe.retrieve_seconds, 3),
                        "pipeline_rank": round(pipe.rank_seconds, 3)},
            "users": users}

