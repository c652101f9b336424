"""Multi-interest users from any embedding run: kNN-Embed, and the diversity metrics to judge them.

Paper: El-Kishky, Markovich, Leung, Portman, Haghighi and Xiao, "kNN-Embed: Locally Smoothed Embedding Mixtures
for Multi-interest Candidate Retrieval" (PAKDD 2023). One user vector retrieves the neighbourhood of its
average interest; kNN-Embed clusters the items, describes a user by a mixture over the clusters of what they
engaged with, smoothed by the mixtures of similar users ("locally smoothed"), retrieves from each component and
merges the lists with slots in proportion to the mixture weights, so minority interests get a share.

Ours, written from the paper's description (deviations):

* clusters: spherical k-means (``recembed.semantic.rkmeans.kmeans`` on L2-normalised item vectors of the fitted
  model, not a separately trained embedding);
* the mixture ``p(c | u)`` = the share of the user's training items in cluster ``c``, smoothed as
  ``(1 - beta) p(. | u) + beta mean_{v in kNN(u)} p(. | v)`` over the ``neighbours`` most similar users (cosine of
  the model's user vectors); the top ``components`` clusters are kept and renormalised;
* component ``c``'s query = ``(1 - alpha) normalise(u) + alpha normalise(mean of the user's items in c)`` (the cluster centroid when
  the user has none there: smoothing can add a cluster), rather than a per-cluster learned user embedding;
* merge: slots by largest remainder of ``weights * k`` (at least one per component), filled component by
  component in weight order from each one's ranking, skipping items already taken.

Metrics over each user's top ``k`` (test part, training + validation items excluded): recall@k; intra-list
diversity ILD@k = mean pairwise cosine distance of the items' tag vectors (genres, attributes; Ziegler et al.
2005), and ILD of the model's item vectors; tag coverage@k = distinct tags in the list / tags in the catalog.

    recembed multi-interest RUN [--components 4] [--clusters 16] [--k 50] [--tags COLUMN] [--out DIR]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class KNNEmbedConfig:
    components: int = 4
    """Mixture components per user (each retrieves its own list)."""
    clusters: int = 16
    """k-means clusters of the item vectors."""
    neighbours: int = 10
    """Similar users whose mixtures smooth a user's (0: no smoothing)."""
    beta: float = 0.5
    """Weight of the neighbours' mean mixture."""
    alpha: float = 0.35
    """Component query = ``(1 - alpha) normalise(u) + alpha normalise(mean of the user's items in the cluster)``."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("components", "clusters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name}: must be >= 1, got {getattr(self, name)}")
        if self.components > self.clusters:
            raise ConfigError(f"--components: at most --clusters ({self.clusters}), got {self.components}")
        for name in ("alpha", "beta"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"--{name}: must be in [0, 1], got {getattr(self, name)}")


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cluster_items(items: np.ndarray, clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(assignment (I,), centroids (C, D) unit-norm)`` of spherical k-means over the item vectors."""
    from ..semantic.rkmeans import kmeans, nearest

    x = torch.from_numpy(_normalise(np.asarray(items, np.float32)))
    k = min(clusters, len(x))
    centroids, _ = kmeans(x, k, rng=np.random.default_rng(seed))
    assign, _ = nearest(x, centroids)
    return assign.numpy(), _normalise(centroids.numpy())


def mixtures(train: sp.csr_matrix, assign: np.ndarray, users: np.ndarray, config: KNNEmbedConfig
             ) -> np.ndarray:
    """``(U, C)`` smoothed cluster mixtures ``p(c | u)`` (rows sum to 1; a user with no items: uniform)."""
    c = int(assign.max()) + 1
    onehot = sp.csr_matrix((np.ones(len(assign), np.float32), (np.arange(len(assign)), assign)),
                           shape=(len(assign), c))
    counts = np.asarray((train.astype(np.float32) @ onehot).todense())
    totals = counts.sum(1, keepdims=True)
    p = np.where(totals > 0, counts / np.maximum(totals, 1), 1.0 / c).astype(np.float32)
    k = min(config.neighbours, len(users) - 1)
    if k < 1 or config.beta == 0:
        return p
    u = _normalise(np.asarray(users, np.float32))
    smooth = np.empty_like(p)
    for s in range(0, len(u), 2048):  # blocks of users: the (B, U) similarities stay small
        sim = u[s: s + 2048] @ u.T
        sim[np.arange(sim.shape[0]), np.arange(s, s + sim.shape[0])] = -np.inf  # not oneself
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        smooth[s: s + 2048] = p[nn].mean(1)
    return (1 - config.beta) * p + config.beta * smooth


def knn_embed_top(users: np.ndarray, user_vecs: np.ndarray, item_vecs: np.ndarray, train: sp.csr_matrix,
                  exclude: sp.csr_matrix, k: int, config: KNNEmbedConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """``(U, k)`` merged kNN-Embed lists of ``users`` (rows of ``exclude`` left out) and facts about them."""
    from ..ranking.candidates import top_candidates

    assign, centroids = cluster_items(item_vecs, config.clusters, config.seed)
    p = mixtures(train, assign, user_vecs, config)[users]
    m = min(config.components, p.shape[1])
    comps = np.argsort(-p, axis=1, kind="stable")[:, :m]  # (U, M) clusters, heaviest first
    w = np.take_along_axis(p, comps, 1)
    w = w / w.sum(1, keepdims=True)
    # the user's mean item vector per chosen cluster (centroid where the user has no item there)
    x = train[users].tocsr()
    sums = np.zeros((len(users), m, item_vecs.shape[1]), np.float32)
    counts = np.zeros((len(users), m), np.float32)
    rows = np.repeat(np.arange(len(users)), np.diff(x.indptr))
    slot = (assign[x.indices][:, None] == comps[rows]).argmax(1)
    hit = assign[x.indices] == comps[rows, slot]
    normed = _normalise(np.asarray(item_vecs, np.float32))
    np.add.at(sums, (rows[hit], slot[hit]), normed[x.indices[hit]])
    np.add.at(counts, (rows[hit], slot[hit]), 1.0)
    means = np.where(counts[..., None] > 0, sums / np.maximum(counts, 1)[..., None], centroids[comps])
    queries = ((1 - config.alpha) * _normalise(np.asarray(user_vecs, np.float32)[users])[:, None, :]
               + config.alpha * _normalise(means))  # (U, M, D)
    slots = _slots(w, k)
    out = np.full((len(users), k), -1, np.int64)
    ex = exclude[users].tocsr()
    for b in range(0, len(users), 256):
        q = queries[b: b + 256]
        scores = q.reshape(-1, q.shape[-1]) @ np.asarray(item_vecs, np.float32).T  # (B M, I)
        ex_rows = ex[np.repeat(np.arange(b, b + len(q)), m)]
        top, _ = top_candidates(scores, ex_rows, k)
        top = top.reshape(len(q), m, -1)
        for r in range(len(q)):  # merge: a few small arrays per user
            taken: list[int] = []
            seen: set[int] = set()
            for j in range(m):
                need = int(slots[b + r, j])
                for item in top[r, j].tolist():
                    if need == 0:
                        break
                    if item not in seen:
                        seen.add(item)
                        taken.append(item)
                        need -= 1
            for item in top[r].T.ravel().tolist():  # duplicates left slots: top up, interleaving the rankings
                if len(taken) >= k:
                    break
                if item not in seen:
                    seen.add(item)
                    taken.append(item)
            out[b + r, : len(taken)] = taken
    return out, {"clusters": int(assign.max()) + 1, "components": m,
                 "mean_top_weight": float(w[:, 0].mean()), "mean_effective_components": float((1 / (w ** 2).sum(1)).mean())}


def _slots(w: np.ndarray, k: int) -> np.ndarray:
    """Largest-remainder slots of ``k`` per row of weights ``w`` (at least 1 each when ``k`` allows)."""
    m = w.shape[1]
    base = np.minimum(1, k // m) * np.ones_like(w, dtype=np.int64)
    rest = k - base.sum(1, keepdims=True)
    share = w * rest
    slots = base + np.floor(share).astype(np.int64)
    left = (k - slots.sum(1)).astype(np.int64)
    order = np.argsort(-(share - np.floor(share)), axis=1, kind="stable")
    bonus = np.arange(m)[None, :] < left[:, None]
    np.put_along_axis(slots, order, np.take_along_axis(slots, order, 1) + bonus, 1)
    return slots


def list_metrics(top: np.ndarray, users: np.ndarray, target: sp.csr_matrix, tags: np.ndarray | None,
                 item_vecs: np.ndarray) -> dict[str, float]:
    """Recall@k, ILD@k (tags; item vectors) and tag coverage@k of ``(U, k)`` lists (-1 = empty slot)."""
    k = top.shape[1]
    valid = top >= 0
    t = target[users].tocsr()
    n = np.int64(target.shape[1])
    keys = np.unique(np.repeat(np.arange(len(users), dtype=np.int64), np.diff(t.indptr)) * n + t.indices)
    hits = np.isin(np.arange(len(users), dtype=np.int64)[:, None] * n + np.where(valid, top, 0), keys) & valid
    relevant = np.diff(t.indptr)
    out = {f"recall@{k}": float((hits.sum(1) / np.maximum(np.minimum(relevant, k), 1))[relevant > 0].mean())}

    def ild(vectors: np.ndarray) -> float:
        normed, dist = _normalise(np.asarray(vectors, np.float32)), []
        for b in range(0, len(top), 512):  # sum over pairs i != j of v_i . v_j = |sum v|^2 - sum |v_i|^2
            ok = valid[b: b + 512]
            v = normed[np.where(ok, top[b: b + 512], 0)] * ok[..., None]
            s = v.sum(1)
            n = ok.sum(1)
            dist.append(1 - ((s * s).sum(1) - (v * v).sum((1, 2))) / np.maximum(n * (n - 1), 1))
        return float(np.concatenate(dist).mean())

    out[f"ild_embedding@{k}"] = ild(item_vecs)
    if tags is not None:
        out[f"ild_tags@{k}"] = ild(tags)
        total = max(int((tags > 0).any(0).sum()), 1)
        covered = []
        for s in range(0, len(top), 512):  # (B, k, T) booleans at a time
            present = (tags[np.where(valid[s: s + 512], top[s: s + 512], 0)] > 0) & valid[s: s + 512, :, None]
            covered.append(present.any(1).sum(1) / total)
        out[f"tag_coverage@{k}"] = float(np.concatenate(covered).mean())
    return out


def item_tags(dataset: Any, run_items: Any, column: str | None = None) -> tuple[np.ndarray | None, str | None]:
    """``(tags (I, T) aligned to the run's items, column)`` from the dataset's item table: ``column``, else its
    first tags / categorical column; ``(None, None)`` when it has none."""
    from ..encoders.fields import encode_categorical, encode_tags

    table = getattr(dataset, "item_table", None)
    names = [] if table is None else [*table.names("tags"), *table.names("categorical")]
    if column is None:
        if not names:
            return None, None
        column = names[0]
    elif column not in names:
        raise ConfigError(f"--tags: no tags or categorical column {column!r} in the item table; columns: {names}")
    values = table[column]
    hot = (encode_tags(values, name=column) if table.kinds[column] == "tags"
           else encode_categorical(values, name=column))[0]
    pos = {str(i): n for n, i in enumerate(dataset.items.to_list())}
    rows = np.array([pos.get(str(i), -1) for i in run_items.to_list()])
    out = np.zeros((len(rows), hot.shape[1]), np.float32)
    out[rows >= 0] = hot[rows[rows >= 0]]
    return out, column


def evaluate_multi_interest(run: Any, dataset: Any, *, k: int = 50, config: KNNEmbedConfig | None = None,
                            tags_column: str | None = None) -> dict[str, Any]:
    """Test recall / diversity / coverage @k of the run's single user vector and of kNN-Embed over the same
    vectors (the module docstring)."""
    from ..ranking.candidates import top_candidates

    config = config or KNNEmbedConfig()
    model = run.model
    if not (hasattr(model, "user_embeddings") and hasattr(model, "item_embeddings")):
        raise ConfigError(f"multi-interest: {model.name} has no user and item vectors (fit an embedding model: "
                          "bpr, lightgcn, ...)")
    if k < 1:
        raise ConfigError(f"--k: must be >= 1, got {k}")
    user_vecs = np.asarray(model.user_embeddings(), np.float32)
    item_vecs = np.asarray(model.item_embeddings(), np.float32)
    split = run.split
    train, valid, test = split.train.csr(), split.valid.csr(), split.test.csr()
    exclude = (train + valid).tocsr()
    users = np.flatnonzero((np.diff(test.indptr) > 0) & (np.diff(train.indptr) > 0))
    tags, column = item_tags(dataset, run.items, tags_column)
    single = np.empty((len(users), k), np.int64)
    for b in range(0, len(users), 1024):
        block = users[b: b + 1024]
        single[b: b + 1024] = top_candidates(user_vecs[block] @ item_vecs.T, exclude[block], k)[0]
    multi, info = knn_embed_top(users, user_vecs, item_vecs, train, exclude, k, config)
    return {"k": k, "users": int(len(users)), "tags_column": column, "config": config.__dict__, "knn_embed": info,
            "single": list_metrics(single, users, test, tags, item_vecs),
            "multi": list_metrics(multi, users, test, tags, item_vecs)}
