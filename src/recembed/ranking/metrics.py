"""Metrics of the ranking stage: AUC, logloss, GAUC, expected calibration error and a reliability table.

* ``auc`` -- the Mann-Whitney statistic with tied scores counted half (average ranks), as scikit-learn's
  ``roc_auc_score``;
* ``logloss`` -- mean binary cross-entropy, probabilities clipped to ``[1e-7, 1 - 1e-7]``;
* ``gauc`` -- per-user AUC weighted by the user's impressions, over users with both a click and a non-click
  (Zhou et al., "Deep Interest Network", KDD 2018, eq. 8); ``gauc_users`` counts them;
* ``ece`` -- expected calibration error over ``bins`` equal-width probability bins (Guo et al., 2017);
* ``paired_bootstrap_auc`` -- a confidence interval of ``AUC(a) - AUC(b)`` for two models scored on the same
  rows, resampling users (a cluster bootstrap: a user's rows stay together, as they are not independent).

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


def _weighted_auc_presorted(y: np.ndarray, run_start: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUC per row of ``w (k, n)`` (row multiplicities) for rows already sorted by score, ties forming runs that
    start at ``run_start``; a tied pair counts half, as :func:`auc`."""
    pos_w = np.add.reduceat(w * y, run_start, axis=1)
    neg_w = np.add.reduceat(w * ~y, run_start, axis=1)
    below = np.cumsum(neg_w, axis=1) - neg_w  # negatives scored strictly lower than each run
    num = (pos_w * (below + 0.5 * neg_w)).sum(1)
    den = pos_w.sum(1) * neg_w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def paired_bootstrap_auc(users: np.ndarray, labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                         n_boot: int = 2000, seed: int = 0, alpha: float = 0.05, chunk: int = 100
                         ) -> dict[str, Any]:
    """Paired bootstrap over users of ``AUC(scores_a) - AUC(scores_b)`` on the same rows.

    Each replicate draws as many users as there are, with replacement; a user drawn ``m`` times contributes
    each of their rows ``m`` times, to both models alike, and both AUCs are recomputed on those rows (weighted
    by the multiplicities). Returns the observed difference, the percentile interval ``[alpha/2, 1 - alpha/2]``,
    the share of replicates where ``a`` is not better (``p_not_better``), both observed AUCs and the counts."""
    y = np.asarray(labels, dtype=bool)
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if not (len(y) == len(a) == len(b) == len(users)):
        raise ValueError("users, labels and both score arrays need the same length")
    _, g = np.unique(np.asarray(users), return_inverse=True)
    n_users = int(g.max()) + 1 if len(g) else 0
    sorted_parts = []
    for s in (a, b):
        order = np.argsort(s, kind="stable")
        ss = s[order]
        run_start = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
        sorted_parts.append((order, y[order], run_start))
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for s0 in range(0, n_boot, chunk):
        k = min(chunk, n_boot - s0)
        counts = np.stack([np.bincount(rng.integers(0, n_users, n_users), minlength=n_users) for _ in range(k)])
        w = counts[:, g].astype(np.float64)  # (k, rows): each row's multiplicity
        auc_a, auc_b = (_weighted_auc_presorted(ys, rs, w[:, o]) for o, ys, rs in sorted_parts)
        diffs[s0:s0 + k] = auc_a - auc_b
    ok = diffs[np.isfinite(diffs)]
    observed_a, observed_b = auc(y, a), auc(y, b)
    lo, hi = (np.quantile(ok, [alpha / 2, 1 - alpha / 2]) if ok.size else (float("nan"), float("nan")))
    return {"diff": observed_a - observed_b, "ci_low": float(lo), "ci_high": float(hi), "alpha": alpha,
            "p_not_better": float((ok <= 0).mean()) if ok.size else float("nan"), "auc_a": observed_a,
            "auc_b": observed_b, "n_boot": int(ok.size), "users": n_users, "rows": int(len(y))}
