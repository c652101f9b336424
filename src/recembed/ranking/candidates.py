"""A ranker's training rows from a retriever's own candidates (the two-stage protocol of production recommenders).

    recembed fit ease --data ml-100k --split S --out runs/ease
    recembed fit deepfm --data ml-100k --split S --retriever runs/ease --candidates 200 --out runs/deepfm-on-ease
    recembed pipeline --retriever runs/ease --ranker runs/deepfm-on-ease --candidates 200

A ranker trained on uniformly sampled non-clicks (:func:`~recembed.ranking.implicit.ctr_from_split`) learns to
tell an item a user took from a random one -- which the retriever already does well -- not to order the retriever's
top items, all of them plausible. Here the rows are what the ranker will see at serving time: for every user of
the split's **validation** part, the retriever's (fitted on the training part) top ``candidates`` items outside
the user's training items, each a click when it is one of the user's validation items, a non-click otherwise, with
three pair fields (:data:`~recembed.ranking.implicit.PAIR_FIELDS`: the retriever's score, ``log(1 + rank)`` in
its list, the gap to the user's best score) and the user's / item's interaction counts in the retriever's
training part (:data:`~recembed.ranking.implicit.ACTIVITY_FIELDS`). Validation items the retriever did not propose are not rows (the ranker never sees such items). The
rows are split at random into the ranker's training rows and its own validation rows (``valid_share``, early
stopping); its **test** rows are the test stage's candidates (training and validation items excluded; sequential
retrievers' histories continue through validation, as the evaluator's) labelled by the test items -- the test AUC
/ GAUC of ordering the candidates the pipeline re-ranks.

Deviation from a production system: the retriever is not refitted on the validation part before the test stage
(its training part stays the split's), so the retriever alone and the pipeline are compared on the same retriever.
The ranker does learn from the validation interactions, which the retriever alone only used for model selection
(``benchmarks/rank_candidates.py`` reports the retriever refitted on training + validation beside it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError
from .datasets import CTRData
from .implicit import ACTIVITY_FIELDS, PAIR_FIELDS, activity, fields_for, pair_frame, retrieval_columns
from .schema import Field, Frame

SCORE_BATCH = 512  # users scored at once: (512, num_items) float32 at a time


def top_candidates(scores: np.ndarray, exclude_rows: Any, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``c`` columns of each row of ``scores`` (a ``(B, I)`` block, modified in place) outside the CSR
    rows ``exclude_rows``, and their scores, each row best first: ``(items (B, c), scores (B, c))``."""
    scores[np.repeat(np.arange(scores.shape[0]), np.diff(exclude_rows.indptr)), exclude_rows.indices] = -np.inf
    c = min(c, scores.shape[1])
    top = np.argpartition(-scores, c - 1, axis=1)[:, :c]
    sc = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-sc, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(sc, order, axis=1)


def candidates_for(scorer: Callable[[np.ndarray], np.ndarray], users: np.ndarray, exclude: Any, c: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(items (U, c), scores (U, c))``: each user's top ``c`` by ``scorer`` outside its ``exclude`` row
    (scored :data:`SCORE_BATCH` users at a time)."""
    items, scores = [], []
    for s in range(0, len(users), SCORE_BATCH):
        block = users[s: s + SCORE_BATCH]
        top, sc = top_candidates(np.asarray(scorer(block), dtype=np.float32).copy(), exclude[block], c)
        items.append(top)
        scores.append(sc)
    return np.concatenate(items), np.concatenate(scores)


def _labelled(users: np.ndarray, top: np.ndarray, target: Any) -> np.ndarray:
    """1 where candidate ``top[r, j]`` is one of user ``users[r]``'s items in the CSR ``target``."""
    n = np.int64(target.shape[1])
    coo = target.tocoo()
    keys = np.unique(coo.row.astype(np.int64) * n + coo.col)
    return np.isin(np.repeat(users.astype(np.int64), top.shape[1]) * n + top.ravel(), keys).astype(np.float32)


def _refit(run: Any, train: Any, valid: Any, dataset: Any, seed: int, threads: int | None) -> Any:
    """The run's model class and config fitted again on ``train`` (one fold left out, or training + validation).
    Without ``valid`` to stop on, a trained model runs the epochs the run chose (its best epoch)."""
    from ..options import FitOptions

    overrides = {}
    best = (run.metrics.get("training") or {}).get("best_epoch")
    if valid is None and best and hasattr(run.model.config, "epochs"):
        overrides = {"epochs": int(best)}
    model = type(run.model)(config=run.model.config, **overrides)
    context = {"item_table": dataset.item_table, "items": dataset.items} if dataset.item_table is not None else {}
    return model.fit(train, options=FitOptions(seed=seed, show_progress=False, threads=threads), valid=valid,
                     **context)


def ctr_from_candidates(dataset: Any, run: Any, candidates: int = 200, seed: int = 2020,
                        valid_share: float = 0.15, folds: int = 0, threads: int | None = None) -> CTRData:
    """The CTR parts of the module docstring from the loaded retrieval run ``run`` (:func:`recembed.runs.load_run`)
    on ``dataset`` (the data it was fitted on: its user / item tables give the other fields).

    ``folds`` = K > 1: out-of-fold rows as well (stacking): the training part's interactions are dealt at random
    into K folds, the retriever's model (same class and config) is fitted K more times, each without one fold, and
    proposes candidates outside its own training items, labelled by the left-out fold. Those rows (about K times
    the validation part's clicks) are then the ranker's training rows and the validation part's rows (the run's own
    retriever) its validation rows."""
    from .pipeline import index_map

    if candidates < 1:
        raise ConfigError(f"--candidates: must be >= 1, got {candidates}")
    if folds == 1 or folds < 0:
        raise ConfigError(f"--retriever-folds: 0 (no refits) or at least 2, got {folds}")
    if folds and hasattr(run.model, "scorer_after"):
        raise ConfigError("--retriever-folds: not for sequential retrievers (a random fold of their training part "
                          "is not a continuation of the sequences)")
    split, model = run.split, run.model
    if not len(split.valid):
        raise ConfigError("--retriever: its split has no validation part, which a ranker fitted on the retriever's "
                          "candidates learns from (use a split with train / valid / test parts)")
    user_map = index_map(run.users, dataset.users, "user")
    item_map = index_map(run.items, dataset.items, "item")
    fields = fields_for(dataset) + [Field(name, "numeric") for name in (*PAIR_FIELDS, *ACTIVITY_FIELDS)]
    train, valid, test = split.train.csr(), split.valid.csr(), split.test.csr()
    counts = activity(split.train, user_map, item_map, dataset.num_users, dataset.num_items)

    def rows(users: np.ndarray, scorer: Any, exclude: Any, target: Any) -> Frame:
        top, sc = candidates_for(scorer, users, exclude, candidates)
        labels = _labelled(users, top, target)
        return pair_frame(dataset, fields, user_map[np.repeat(users, top.shape[1])], item_map[top.ravel()], labels,
                          retrieval_columns(sc), counts)

    valid_users = np.flatnonzero(np.diff(valid.indptr) > 0)
    valid_rows = rows(valid_users, model.score, train, valid)
    rng = np.random.default_rng(seed)
    if folds:
        fold = rng.integers(0, folds, len(split.train))
        parts = []
        for k in range(folds):
            keep, out = split.train.subset(fold != k), split.train.subset(fold == k)
            refit = _refit(run, keep, split.valid, dataset, seed, threads)
            users = np.flatnonzero(out.user_counts() > 0)
            parts.append(rows(users, refit.score, keep.csr(), out.csr()))
        fit_rows = Frame.concat(parts)
    else:
        held = rng.random(len(valid_rows)) < valid_share
        fit_rows, valid_rows = valid_rows.take(np.flatnonzero(~held)), valid_rows.take(np.flatnonzero(held))
    test_users = np.flatnonzero(np.diff(test.indptr) > 0)
    after = model.scorer_after(split.valid) if hasattr(model, "scorer_after") else model.score
    test_rows = rows(test_users, after, (train + valid).tocsr(), test)
    name = run.config.get("model", "retriever")
    return CTRData(f"{dataset.name}:{split.spec}:{name}@{candidates}" + (f":{folds}-fold" if folds else ""), fields,
                   fit_rows, valid_rows, test_rows,
                   description=f"{name}'s top {candidates} candidates per user, clicks = the user's validation items "
                               "(test: the test stage's candidates and items)")
