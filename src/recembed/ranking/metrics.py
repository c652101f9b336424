"""Metrics of the ranking stage: AUC, logloss, GAUC, expected calibration error and a reliability table.

* ``auc`` -- the Mann-Whitney statistic with tied scores counted half (average ranks), as scikit-learn's
  ``roc_auc_score``;
* ``logloss`` -- mean binary cross-entropy, probabilities clipped to ``[1e-7, 1 - 1e-7]``;
* ``gauc`` -- per-user AUC weighted by the user's impressions, over users with both a click and a non-click
  (Zhou et al., "Deep Interest Network", KDD 2018, eq. 8); ``gauc_users`` counts them;
* ``ece`` -- expected calibration error over ``bins`` equal-width probability bins (Guo et al., 2017).

Every function is vectorised over rows (one sort), none loops over users in Python.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

EPS = 1e-7


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    y = np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())


def per_group_auc(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(auc, impressions)`` per group that has both classes (groups sorted by their value)."""
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    # average ranks within each group: rank the (group, score) pairs, then subtract the group's offset
    order = np.lexsort((s, g))
    gs, ss = g[order], s[order]
    new_run = np.r_[True, (gs[1:] != gs[:-1]) | (ss[1:] != ss[:-1])]
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.r_[run_start, len(ss)])
    group_start = np.r_[0, np.flatnonzero(gs[1:] != gs[:-1]) + 1]
    offset = np.repeat(group_start, np.diff(np.r_[group_start, len(gs)]))
    avg_rank = (run_start + (run_len - 1) / 2.0)[run_id] - offset + 1  # 1-based, within the group
    ranks = np.empty_like(avg_rank)
    ranks[order] = avg_rank
    n_groups = int(g.max()) + 1 if len(g) else 0
    pos = np.bincount(g, weights=y, minlength=n_groups)
    size = np.bincount(g, minlength=n_groups).astype(np.float64)
    neg = size - pos
    rank_sum = np.bincount(g, weights=np.where(y, ranks, 0.0), minlength=n_groups)
    ok = (pos > 0) & (neg > 0)
    values = (rank_sum[ok] - pos[ok] * (pos[ok] + 1) / 2) / (pos[ok] * neg[ok])
    return values, size[ok]


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> tuple[float, int]:
    values, weights = per_group_auc(users, labels, scores)
    if not len(values):
        return float("nan"), 0
    return float((values * weights).sum() / weights.sum()), int(len(values))


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Per equal-width bin: mean predicted probability, observed click rate and row count."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    b = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(b, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(b, weights=p, minlength=bins) / count
        rate = np.bincount(b, weights=y, minlength=bins) / count
    return {"mean_prob": mean_p.tolist(), "click_rate": rate.tolist(), "count": count.tolist()}


def ece(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    r = reliability(labels, probs, bins)
    count = np.asarray(r["count"])
    gap = np.abs(np.nan_to_num(np.asarray(r["mean_prob"])) - np.nan_to_num(np.asarray(r["click_rate"])))
    return float((gap * count).sum() / max(count.sum(), 1.0))


def ctr_metrics(labels: np.ndarray, probs: np.ndarray, users: np.ndarray) -> dict[str, Any]:
    """The metrics ``metrics.json`` reports for one part."""
    g, n_users = gauc(users, labels, probs)
    return {"auc": auc(labels, probs), "logloss": logloss(labels, probs), "gauc": g, "gauc_users": n_users,
            "ece": ece(labels, probs), "rows": int(len(labels)), "click_rate": float(np.mean(labels))}
