"""Top-K ranking metrics, one small function each, computed per user from a hit matrix.

Definitions (binary relevance; ``hits[u, r]`` is 1 when the item at rank ``r`` (0-based) is one of
user ``u``'s ``P_u`` held-out positives; every metric is averaged over users with ``P_u >= 1``):

* ``recall@K    = sum_{r<K} hits / P_u``
* ``precision@K = sum_{r<K} hits / K``
* ``hit@K       = 1 if any hit in the first K``
* ``ndcg@K      = DCG / IDCG`` with ``DCG = sum_{r<K} hits[r] / log2(r + 2)`` and IDCG the DCG of
  ``min(P_u, K)`` hits at the top (as RecBole)
* ``mrr@K       = 1 / (r + 1)`` for the first hit within K, else 0
* ``map@K       = sum_{r<K} hits[r] * precision@(r+1) / min(P_u, K)`` (as RecBole)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

MetricFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def _discount(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def recall(hits: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / n_pos


def precision(hits: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / k


def hit(hits: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].any(axis=1).astype(np.float64)


def ndcg(hits: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    disc = _discount(k)
    dcg = (hits[:, :k] * disc).sum(axis=1)
    ideal = np.cumsum(disc)[np.minimum(n_pos, k) - 1]
    return dcg / ideal


def mrr(hits: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k]
    first = h.argmax(axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1), 0.0)


def average_precision(hits: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k].astype(np.float64)
    prec_at = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    return (prec_at * h).sum(axis=1) / np.minimum(n_pos, k)


METRICS: dict[str, MetricFn] = {
    "recall": recall,
    "ndcg": ndcg,
    "mrr": mrr,
    "hit": hit,
    "precision": precision,
    "map": average_precision,
}


def hits_from_topk(users: np.ndarray, topk: np.ndarray, positives: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Hit matrix ``(n, K) bool`` and positive counts ``(n,)`` for ranked lists.

    ``topk[j]`` is the ranked item list of user ``users[j]`` (``-1`` marks an empty slot);
    ``positives`` is the user x item matrix of held-out items (binary; duplicates ignored).
    """
    pos = positives[users]
    n_items = positives.shape[1]
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(pos.indptr))
    keys = np.unique(rows * n_items + pos.indices)
    query = np.arange(len(users), dtype=np.int64)[:, None] * n_items + topk
    at = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    hits = (keys[at] == query) & (topk >= 0) if len(keys) else np.zeros(topk.shape, dtype=bool)
    n_pos = np.bincount(keys // n_items, minlength=len(users)) if len(keys) else np.zeros(len(users), np.int64)
    return hits, n_pos


def compute_metrics(
    hits: np.ndarray, n_pos: np.ndarray, ks: Sequence[int], names: Sequence[str] = tuple(METRICS)
) -> dict[str, np.ndarray]:
    """Per-user values ``{"ndcg@10": (n,), ...}`` for users with ``n_pos >= 1`` (others dropped)."""
    keep = n_pos > 0
    hits, n_pos = hits[keep], n_pos[keep]
    out: dict[str, np.ndarray] = {}
    for name in names:
        fn = METRICS[name]
        for k in ks:
            if k > hits.shape[1]:
                raise ValueError(f"{name}@{k} needs ranked lists of length >= {k}, got {hits.shape[1]}")
            out[f"{name}@{k}"] = fn(hits, n_pos, k)
    return out


def coverage(topk: np.ndarray, num_items: int, k: int) -> float:
    """Share of the catalog that appears in at least one user's top K."""
    items = topk[:, :k]
    return float(len(np.unique(items[items >= 0])) / num_items)


def popularity_stats(topk: np.ndarray, item_popularity: np.ndarray, k: int) -> dict[str, float]:
    """Popularity bias of the recommendations.

    * ``arp@K``: average recommendation popularity, the mean over users of the mean share of training
      users who interacted with each recommended item (lower = less popular items recommended);
    * ``tail@K``: share of recommended slots filled by long-tail items, i.e. items outside the 20% most
      popular ones (ties broken by index).
    """
    items = topk[:, :k]
    valid = items >= 0
    pop = np.where(valid, item_popularity[np.maximum(items, 0)], 0.0)
    per_user = pop.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    n_head = max(1, int(round(0.2 * len(item_popularity))))
    head = np.zeros(len(item_popularity), dtype=bool)
    head[np.argsort(-item_popularity, kind="stable")[:n_head]] = True
    tail_share = (~head[np.maximum(items, 0)] & valid).sum() / max(valid.sum(), 1)
    return {f"arp@{k}": float(per_user.mean()) if len(per_user) else 0.0, f"tail@{k}": float(tail_share)}
