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
from .implicit import ACTIVITY_FIELDS, activity, pair_fields, pair_frame, retrieval_columns


class RetrieveThenRank:
    """A scorer over all items: the ranker's probabilities on the retriever's top ``candidates``, ``-inf`` elsewhere."""

    def __init__(self, retriever: Any, ranker: Any, dataset: Any, exclude: Any, candidates: int,
                 user_map: np.ndarray, item_map: np.ndarray, base: Any = None, train: Any = None) -> None:
        self.retriever, self.ranker, self.dataset = retriever, ranker, dataset
        self.base = base or retriever.score  # sequential retrievers: the history through validation
        self.exclude, self.candidates = exclude, candidates
        self.user_map, self.item_map = user_map, item_map  # run index -> dataset index
        self.fields = ranker.schema_.fields
        self.with_scores = bool(pair_fields(self.fields))  # fitted on the retriever's candidates: reads its scores
        self.counts = None  # ... and the retriever's training counts (``train``: its training part)
        if train is not None and any(f.name in ACTIVITY_FIELDS for f in self.fields):
            self.counts = activity(train, user_map, item_map, dataset.num_users, dataset.num_items)
        self.rank_seconds = 0.0
        self.retrieve_seconds = 0.0

    def top(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The retriever's ``(B, C)`` candidates (run item indices, best first), masked items excluded, and their
        retrieval scores."""
        from .candidates import top_candidates

        t = time.perf_counter()
        top, scores = top_candidates(np.asarray(self.base(users), dtype=np.float32).copy(), self.exclude[users],
                                     self.candidates)
        self.retrieve_seconds += time.perf_counter() - t
        return top, scores

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        top, scores = self.top(users)
        t = time.perf_counter()
        u = np.repeat(users, top.shape[1])
        frame = pair_frame(self.dataset, self.fields, self.user_map[u], self.item_map[top.ravel()],
                           pair=retrieval_columns(scores) if self.with_scores else None, counts=self.counts)
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
    fitted_on = spec.get("retriever")
    if fitted_on and fitted_on.get("model") != retriever_config.get("model"):
        raise ConfigError(f"{flag}: {ranker_dir} was fitted on the candidates and scores of a "
                          f"{fitted_on.get('model')!r} retriever ({fitted_on.get('run_dir')}), not of "
                          f"{retriever_config.get('model')!r}: its retrieval-score fields would mean something else")
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
                      show_progress: bool = False, refit: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Test metrics of the retriever alone and of retrieve-then-rank (module docstring).

    ``refit``: the production protocol for a ranker fitted on the retriever's candidates (``--retriever``): the
    retriever's model (same class and config) is fitted again on training + validation -- the interactions the
    ranker learnt from -- and that retriever proposes the test stage's candidates; ``retriever_refit_alone`` is its
    own list, the fair baseline (it uses the same interactions as the pipeline)."""
    from ..data.interactions import Interactions
    from ..runs import evaluate_split, load_run
    from .candidates import _refit
    from .runs import load_ranker_run

    if candidates < 1:
        raise ConfigError(f"--candidates: must be >= 1, got {candidates}")
    ret = load_run(retriever_dir)
    rk = load_ranker_run(ranker_dir)
    spec = check_same_split(ret.config, rk.config, ranker_dir)
    dataset = load_ranker_dataset(spec, data_root)
    split = ret.split
    if refit and (hasattr(ret.model, "scorer_after") or not len(split.valid)):
        raise ConfigError("--refit: for non-sequential retrievers on a split with a validation part (sequential "
                          "ones already continue their histories through validation)")
    exclude = (split.train.csr() + split.valid.csr()).tocsr()
    users, items = index_map(ret.users, dataset.users, "user"), index_map(ret.items, dataset.items, "item")
    out: dict[str, Any] = {"candidates": candidates, "retriever": str(retriever_dir), "ranker": str(ranker_dir)}
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    alone = evaluate_split(ret.model, split, "test", ks=ks, show_progress=show_progress)
    seconds["retriever_alone"] = round(time.perf_counter() - t, 3)
    out["retriever_alone"] = alone.summary if alone is not None else {}
    model = ret.model
    if refit:
        t = time.perf_counter()
        model = _refit(ret, Interactions.concat([split.train, split.valid]), None, dataset, ret.config.get("seed",
                                                                                                            2020),
                       threads)
        seconds["refit"] = round(time.perf_counter() - t, 3)
        again = evaluate_split(model, split, "test", ks=ks, show_progress=show_progress)
        out["retriever_refit_alone"] = again.summary if again is not None else {}
    base = model.scorer_after(split.valid) if hasattr(model, "scorer_after") and len(split.valid) else None
    pipe = RetrieveThenRank(model, rk.model, dataset, exclude, candidates, users, items, base, split.train)
    t = time.perf_counter()
    both = evaluate_split(pipe, split, "test", ks=ks, show_progress=show_progress)
    seconds.update({"pipeline": round(time.perf_counter() - t, 3), "pipeline_retrieve": round(pipe.retrieve_seconds, 3),
                    "pipeline_rank": round(pipe.rank_seconds, 3)})
    out.update({"pipeline": both.summary if both is not None else {}, "refit": refit, "seconds": seconds,
                "users": int(both.summary.get("users", 0)) if both is not None else 0})
    return out
