"""The full-ranking protocol: score every item for every evaluated user, in bounded batches.

For each batch of users the scorer returns ``(B, num_items)`` scores; items in ``exclude`` (the
user's training items, plus validation items when testing) are set to ``-inf``; the top ``max(ks)``
items are kept. Memory is ``O(B * num_items)`` whatever the number of users: ``B`` is chosen so a
score block stays within ``block_bytes``. The ranked lists are kept, so slices (cold items, long
tail, user activity) and significance tests are computed later without scoring again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .._compute import masked_topk
from .metrics import METRICS, compute_metrics, coverage, hits_from_topk, popularity_stats

Scorer = Callable[[np.ndarray], np.ndarray]
DEFAULT_KS = (5, 10, 20, 50)
DEFAULT_BLOCK_BYTES = 256 * 2**20


def batch_size_for(num_items: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Users per batch so that a float32 score block stays within ``block_bytes``."""
    return int(max(1, min(4096, block_bytes // (4 * max(1, num_items)))))


def rank_topk(
    scorer: Scorer,
    users: np.ndarray,
    exclude: sp.csr_matrix | None,
    k: int,
    *,
    num_items: int,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items per user, best first: ``(items (n, k) int32, scores (n, k) float32)``.

    Excluded items never appear; if fewer than ``k`` items remain, the rest of the row is ``-1``.
    Ties are broken by the lower item index.
    """
    users = np.asarray(users, dtype=np.int64)
    n = len(users)
    out_items = np.full((n, k), -1, dtype=np.int32)
    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    bs = batch_size or batch_size_for(num_items)
    for start in range(0, n, bs):
        batch = users[start : start + bs]
        scores = scorer(batch)
        if _on_accelerator(scores):  # a model training on a GPU: mask and rank there, move only the top k
            top, top_scores = _device_topk(scores, exclude[batch] if exclude is not None else None, k, num_items)
            out_items[start : start + len(batch), : top.shape[1]] = top
            out_scores[start : start + len(batch), : top.shape[1]] = top_scores
            if progress is not None:
                progress(len(batch))
            continue
        if hasattr(scores, "numpy"):  # a CPU tensor: a view, no copy
            scores = scores.detach().float().numpy()
        scores = np.asarray(scores, dtype=np.float32)
        if scores.shape != (len(batch), num_items):
            raise ValueError(f"scorer returned shape {scores.shape}, expected ({len(batch)}, {num_items})")
        if not scores.flags.writeable:
            scores = scores.copy()
        if exclude is not None:
            ex = exclude[batch]
            rows, cols = np.repeat(np.arange(len(batch)), np.diff(ex.indptr)), ex.indices
        else:
            rows = cols = np.zeros(0, dtype=np.int64)
        kk = min(k, scores.shape[1])
        top, top_scores = masked_topk(scores, rows, cols, kk)
        top = np.where(np.isneginf(top_scores), -1, top)
        out_items[start : start + len(batch), :kk] = top
        out_scores[start : start + len(batch), :kk] = top_scores
        if progress is not None:
            progress(len(batch))
    return out_items, out_scores


def _on_accelerator(scores: object) -> bool:
    device = getattr(scores, "device", None)
    return device is not None and getattr(device, "type", "cpu") != "cpu"


def _device_topk(scores, exclude: sp.csr_matrix | None, k: int, num_items: int
                 ) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001 - scores: a torch tensor on an accelerator
    """:func:`rank_topk`'s step for a ``(B, I)`` torch tensor on an accelerator: the excluded items are set to
    ``-inf`` on the device, ``torch.topk`` ranks there, and only the ``(B, k)`` result crosses to the host.
    Ties at the k-th score follow torch's order there (the host path gives them to the lower index)."""
    import torch

    if tuple(scores.shape) != (scores.shape[0], num_items):
        raise ValueError(f"scorer returned shape {tuple(scores.shape)}, expected (B, {num_items})")
    scores = scores.float().clone()
    if exclude is not None and exclude.nnz:
        rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
        scores[torch.as_tensor(rows, device=scores.device), torch.as_tensor(exclude.indices, device=scores.device,
                                                                             dtype=torch.int64)] = -float("inf")
    values, items = torch.topk(scores, min(k, num_items), dim=1)
    values, items = values.cpu().numpy(), items.cpu().numpy().astype(np.int32)
    return np.where(np.isneginf(values), -1, items), values


@dataclass
class EvalResult:
    """Ranked lists and per-user metrics of one evaluation.

    Attributes
    ----------
    users : (n,) int64
        Evaluated users (those with at least one held-out positive).
    topk : (n, K) int32
        Their ranked lists (``-1`` = empty slot).
    n_pos : (n,) int64
        Held-out positives per user.
    per_user : dict of metric name -> (n,) float64
    summary : dict of metric name -> float
        Means over users, plus coverage and popularity-bias measures.
    """

    users: np.ndarray
    topk: np.ndarray
    n_pos: np.ndarray
    per_user: dict[str, np.ndarray]
    summary: dict[str, float]
    ks: tuple[int, ...]
    seconds: float = 0.0
    positives: sp.csr_matrix | None = field(default=None, repr=False)

    def slice_users(self, mask: np.ndarray) -> dict[str, float]:
        """Mean metrics over the users selected by ``mask`` (aligned with ``self.users``)."""
        return {m: float(v[mask].mean()) if mask.any() else float("nan") for m, v in self.per_user.items()}

    def slice_items(self, item_mask: np.ndarray, names: Sequence[str] = ("recall", "ndcg", "hit")) -> dict[str, float]:
        """Metrics when only positives among the items in ``item_mask`` count (same ranked lists).

        E.g. long-tail or cold-start items: how well are *those* held-out items ranked.
        Users with no positive in the slice are left out.
        """
        if self.positives is None:
            raise ValueError("this result keeps no positives; evaluate(..., keep_positives=True)")
        pos = self.positives.multiply(sp.csr_matrix(item_mask.astype(np.float32)[None, :])).tocsr()
        pos.eliminate_zeros()
        hits, n_pos = hits_from_topk(self.users, self.topk, pos)
        per_user = compute_metrics(hits, n_pos, self.ks, names)
        out = {m: float(v.mean()) if len(v) else float("nan") for m, v in per_user.items()}
        out["users"] = int((n_pos > 0).sum())
        return out


def evaluate(
    scorer: Scorer,
    target: sp.csr_matrix,
    exclude: sp.csr_matrix | None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = tuple(METRICS),
    item_popularity: np.ndarray | None = None,
    batch_size: int | None = None,
    users: np.ndarray | None = None,
    show_progress: bool = False,
    description: str = "evaluating",
) -> EvalResult:
    """Full-ranking evaluation of ``scorer`` against the held-out ``target`` matrix.

    Parameters
    ----------
    scorer : callable ``(user_idx (B,)) -> scores (B, num_items)``
    target : csr ``(num_users, num_items)``
        Held-out positives (validation or test).
    exclude : csr ``(num_users, num_items)`` or None
        Items never to recommend to a user (training items; training + validation when testing).
    item_popularity : (num_items,) or None
        Training popularity for the popularity-bias measures (share of users per item).
    users : (n,) or None
        Restrict to these users (default: every user with a positive in ``target``).
    """
    t0 = time.perf_counter()
    ks = tuple(sorted(set(int(k) for k in ks)))
    target = sp.csr_matrix(target)
    if users is None:
        users = np.flatnonzero(np.diff(target.indptr) > 0)
    users = np.asarray(users, dtype=np.int64)
    k_max = max(ks)
    from ..progress import ProgressBar

    with ProgressBar(description, total=len(users), enabled=show_progress and len(users) > 0) as bar:
        topk, _ = rank_topk(scorer, users, exclude, k_max, num_items=target.shape[1], batch_size=batch_size,
                            progress=bar.advance if bar.enabled else None)
    hits, n_pos = hits_from_topk(users, topk, target)
    per_user = compute_metrics(hits, n_pos, ks, metrics)
    keep = n_pos > 0
    summary = {m: float(v.mean()) if len(v) else float("nan") for m, v in per_user.items()}
    num_items = target.shape[1]
    for k in ks:
        summary[f"coverage@{k}"] = coverage(topk, num_items, k)
        if item_popularity is not None:
            summary.update(popularity_stats(topk, item_popularity, k))
    summary["users"] = int(keep.sum())
    return EvalResult(
        users=users[keep], topk=topk[keep], n_pos=n_pos[keep], per_user=per_user, summary=summary, ks=ks,
        seconds=time.perf_counter() - t0, positives=target,
    )
