"""Session-based next-item evaluation: P@K (= HR@K) and MRR@K over test prefixes, as the session papers report.

Protocol (SR-GNN, Wu et al. AAAI 2019; GCE-GNN, Wang et al. SIGIR 2020; NARM, STAMP): each test sample is a
prefix of a test session and the item that followed it. The model scores **every** item of the catalog; nothing
is excluded -- items already in the prefix compete too (sessions repeat items: the target is often one of them).
This matches the released code of GCE-GNN (``model.py``: ``scores.topk(20)``, ``np.isin(target - 1, top)``,
MRR = ``1 / (position + 1)`` inside the top 20, else 0; the scores cover all items, ``embedding[1:]``) and of
SR-GNN. P@20 there is the share of samples whose target is in the top 20, i.e. HR@20, not precision per list.

Ranks are exact and deterministic: ``rank = 1 + #{j: s_j > s_t} + #{j < t: s_j = s_t}`` -- ties go to the lower
item index, as a stable sort of ``-scores`` orders them (``torch.topk`` breaks ties arbitrarily; neural models have
no ties, kNN models should break theirs, see :mod:`recembed.models.session`). A target that is not in the
catalog (index < 0) is a miss. Scores are computed in blocks of ``batch_size`` prefixes, so memory is
``batch_size x num_items`` floats whatever the number of prefixes. NaN scores rank last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

SESSION_KS = (10, 20)


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target among all items (ties: lower index first); ``num_items + 1`` for a target
    outside the catalog."""
    s = np.asarray(scores, dtype=np.float32)
    if s.ndim != 2 or len(s) != len(targets):
        raise DataError(f"scores must be (n, num_items) with n = {len(targets)} targets, got {s.shape}")
    t = np.asarray(targets, dtype=np.int64)
    n, num_items = s.shape
    valid = (t >= 0) & (t < num_items)
    s = np.where(np.isnan(s), -np.inf, s)
    ts = s[np.arange(n), np.where(valid, t, 0)][:, None]
    ahead = (s > ts).sum(axis=1) + ((s == ts) & (np.arange(num_items)[None, :] < t[:, None])).sum(axis=1)
    return np.where(valid, ahead + 1, num_items + 1).astype(np.int64)


def summarize(ranks: np.ndarray, ks: Sequence[int] = SESSION_KS) -> dict[str, float]:
    """``p@K`` (= ``hit@K``) and ``mrr@K`` (fractions) of 1-based ``ranks``, plus ``prefixes``."""
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        hit = r <= k
        out[f"p@{k}"] = float(hit.mean()) if len(r) else 0.0
        out[f"hit@{k}"] = out[f"p@{k}"]
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / r, 0.0).mean()) if len(r) else 0.0
    out["prefixes"] = int(len(r))
    return out


@dataclass
class SessionEvalResult:
    ranks: np.ndarray  # (n,) 1-based rank of each prefix's target
    summary: dict[str, float]
    seconds: float


def evaluate_sessions(score_histories: Callable[[list[np.ndarray]], np.ndarray], prefixes: Sequence[Any],
                      targets: np.ndarray, *, ks: Sequence[int] = SESSION_KS, batch_size: int = 1024,
                      progress: Callable[[int, int], None] | None = None) -> SessionEvalResult:
    """Rank each prefix's target among all items with ``score_histories(list of item-index arrays) -> (b, I)``.

    ``prefixes``: a sequence of item-index sequences (oldest first), ``targets`` ``(n,)`` item indices.
    """
    import time

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if not all(isinstance(k, int) and k >= 1 for k in ks):
        raise ConfigError(f"ks: expected positive integers, got {list(ks)}")
    targets = np.asarray(targets, dtype=np.int64)
    if len(prefixes) != len(targets):
        raise DataError(f"{len(prefixes)} prefixes but {len(targets)} targets")
    t0 = time.perf_counter()
    ranks = np.empty(len(targets), dtype=np.int64)
    for start in range(0, len(targets), batch_size):
        stop = min(len(targets), start + batch_size)
        block = [np.asarray(p, dtype=np.int64) for p in prefixes[start:stop]]
        scores = np.asarray(score_histories(block))
        ranks[start:stop] = target_ranks(scores, targets[start:stop])
        if progress is not None:
            progress(stop, len(targets))
    return SessionEvalResult(ranks, summarize(ranks, ks), time.perf_counter() - t0)
