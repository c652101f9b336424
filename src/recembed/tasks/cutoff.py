"""Relevance cut-offs for embedding retrieval: a calibrated map from a candidate's score to P(relevant), so that
a query returns as many results as are likely relevant rather than a fixed top-K.

Paper: Rossi et al., "Relevance Filtering for Embedding-based Retrieval" (CIKM 2024): raw similarity scores are
not comparable across queries, so a global score threshold fails; their Cosine Adapter learns a query-dependent
map of the score to a probability, then one probability threshold filters every query.

Ours (a lite, model-agnostic version, written from the paper's idea; deviations):

* the map is a logistic regression (fitted by Newton's method / IRLS, L2 1e-4) over per-candidate features
  computed from the retriever's own top-N list of a user -- the score, its gap to the user's best score, its
  z-score within the user's list, ``log(1 + rank)``, the user's and the item's training counts (log) -- rather than
  a neural adapter over the query embedding; "query" = the user (any retrieval run, not only cosine models);
* it is fitted on the split's **validation** part (clicks = the user's validation items among its candidates,
  training items excluded) and evaluated on the test part (training + validation items excluded), where the
  cut-off keeps every candidate with probability >= a threshold;
* baselines at the same mean result count: a fixed top-K and one global raw-score threshold.

    recembed cutoff RUN [--candidates 200] [--out DIR]    # DIR/cutoff.json, DIR/cutoff.png
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..ranking.candidates import candidates_for

FEATURES = ("score", "gap_to_best", "z_in_list", "log_rank", "log_user_count", "log_item_count")
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def features(scores: np.ndarray, items: np.ndarray, user_counts: np.ndarray, item_counts: np.ndarray
             ) -> np.ndarray:
    """``(U * C, len(FEATURES))`` of users' candidate blocks (``scores`` / ``items`` ``(U, C)``, best first)."""
    s = np.asarray(scores, dtype=np.float64)
    u, c = s.shape
    mean, std = s.mean(axis=1, keepdims=True), s.std(axis=1, keepdims=True)
    cols = [s, s[:, :1] - s, (s - mean) / np.where(std > 0, std, 1.0),
            np.broadcast_to(np.log1p(np.arange(c, dtype=np.float64)), (u, c)),
            np.broadcast_to(np.log1p(user_counts.astype(np.float64))[:, None], (u, c)),
            np.log1p(item_counts.astype(np.float64))[items]]
    return np.stack([np.ravel(x) for x in cols], axis=1)


@dataclass
class CutoffModel:
    """``P(relevant) = sigmoid(w . standardise(features) + b)``."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray  # (F + 1,): the features' weights, then the bias

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, l2: float = 1e-4, iterations: int = 50) -> CutoffModel:
        mean, std = x.mean(axis=0), x.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        a = np.c_[(x - mean) / std, np.ones(len(x))]
        w = np.zeros(a.shape[1])
        reg = np.full(a.shape[1], l2 * len(x))
        reg[-1] = 0.0  # the bias is not penalised
        for _ in range(iterations):  # Newton / IRLS on the mean log-loss
            p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -35, 35)))
            grad = a.T @ (p - y) + reg * w
            hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(mean, std, w)

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = ((x - self.mean) / self.std) @ self.weights[:-1] + self.weights[-1]
        return 1.0 / (1.0 + np.exp(-np.clip(z, -35, 35)))

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(FEATURES), "mean": self.mean.tolist(), "std": self.std.tolist(),
                "weights": self.weights[:-1].tolist(), "bias": float(self.weights[-1])}


def _block(run: Any, users: np.ndarray, exclude: Any, target: Any, candidates: int, scorer: Any = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and per-user relevant totals of each user's top ``candidates``."""
    items, scores = candidates_for(scorer or run.model.score, users, exclude, candidates)
    train = run.split.train
    x = features(scores, items, train.user_counts()[users], train.item_counts())
    n = np.int64(target.shape[1])
    coo = target.tocoo()
    keys = np.unique(coo.row.astype(np.int64) * n + coo.col)
    y = np.isin(np.repeat(users.astype(np.int64), items.shape[1]) * n + items.ravel(), keys).astype(np.float64)
    return x, y.reshape(items.shape), np.diff(target.indptr)[users]


def _summary(keep: np.ndarray, y: np.ndarray, relevant: np.ndarray) -> dict[str, float]:
    """Precision / recall / F1 (means over users) and result counts of a boolean ``(U, C)`` keep mask."""
    hits, count = (keep & (y > 0)).sum(axis=1), keep.sum(axis=1)
    precision = np.where(count > 0, hits / np.maximum(count, 1), 0.0)
    recall = hits / np.maximum(relevant, 1)
    f1 = np.where(hits > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean()),
            "micro_precision": float(hits.sum() / max(count.sum(), 1)), "mean_count": float(count.mean()),
            "empty_share": float((count == 0).mean())}


def evaluate_cutoffs(run: Any, candidates: int = 200, thresholds: tuple[float, ...] = THRESHOLDS
                     ) -> dict[str, Any]:
    """Fit the map on validation, then per threshold: the test part's precision / recall / result counts, beside a
    fixed top-K and a global raw-score threshold with the same mean result count."""
    split = run.split
    if not len(split.valid) or not len(split.test):
        raise ConfigError("cutoff: the run's split needs a validation part (to fit the map) and a test part")
    if candidates < 2:
        raise ConfigError(f"--candidates: must be >= 2, got {candidates}")
    train, valid, test = split.train.csr(), split.valid.csr(), split.test.csr()
    vu = np.flatnonzero((np.diff(valid.indptr) > 0) & (np.diff(train.indptr) > 0))
    xv, yv, _ = _block(run, vu, train, valid, candidates)
    model = CutoffModel.fit(xv, yv.ravel())
    pv = model.predict(xv)
    tu = np.flatnonzero((np.diff(test.indptr) > 0) & (np.diff(train.indptr) > 0))
    after = run.model.scorer_after(split.valid) if hasattr(run.model, "scorer_after") else None
    xt, yt, rel = _block(run, tu, (train + valid).tocsr(), test, candidates, after)
    pt = model.predict(xt).reshape(yt.shape)
    raw = xt[:, 0].reshape(yt.shape)
    rows = []
    for t in thresholds:
        keep = pt >= t
        cut = _summary(keep, yt, rel)
        k = max(1, int(round(cut["mean_count"])))
        topk = np.zeros_like(keep)
        topk[:, :k] = True
        # one global score threshold giving the same total number of results
        total = int(keep.sum())
        level = np.sort(raw.ravel())[::-1][min(max(total, 1), raw.size) - 1]
        rows.append({"threshold": t, "cutoff": cut, "top_k": {"k": k, **_summary(topk, yt, rel)},
                     "global_score": {"score": float(level), **_summary(raw >= level, yt, rel)}})
    bins = np.minimum((pv * 10).astype(int), 9)
    calib = [{"bin": b / 10, "mean_prob": float(pv[bins == b].mean()), "rate": float(yv.ravel()[bins == b].mean()),
              "count": int((bins == b).sum())} for b in range(10) if (bins == b).any()]
    return {"candidates": candidates, "valid_users": int(len(vu)), "test_users": int(len(tu)),
            "model": model.to_dict(), "valid_calibration": calib, "rows": rows,
            "test_relevant_share": float(yt.mean())}


def plot_cutoffs(result: dict[str, Any], path: Any, title: str) -> None:
    """F1 against the mean number of results: the cut-off's thresholds vs top-K and a global score threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write

    fig, ax = plt.subplots(figsize=(5, 4))
    for key, label in (("cutoff", "calibrated cut-off"), ("top_k", "fixed top-K"),
                       ("global_score", "global score threshold")):
        pts = sorted((r[key]["mean_count"], r[key]["f1"]) for r in result["rows"])
        ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xlabel("mean results per user (test)")
    ax.set_ylabel("mean F1 per user (test)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
