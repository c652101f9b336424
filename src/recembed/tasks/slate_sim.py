"""An offline slate simulator with a planted reward model, built on a logged dataset (for :mod:`.slates`).

Paper: Eide, Leslie & Frigessi, "Dynamic Slate Recommendation with Gated Recurrent Units and Thompson Sampling"
(Data Mining and Knowledge Discovery 36, 2022; FINN.no / University of Oslo / Lancaster -- the brief called it a
Zalando paper). Their offline study plays the policies against a simulator whose "true" click model is a model
trained on the logged FINN.no slates, so exploration can be scored by the clicks it wins against a known truth.

Ours (written from that idea; deviations):

* the truth is a rank-``k`` truncated SVD of the **full** logged user x item matrix (train + valid + test of a
  run's split, binarised): ``t_ui = <p_u, q_i>``, standardised over all cells, and
  ``P(click | u, i) = sigmoid(a * t_ui + b)`` -- not a trained GRU; the policies only see the run's model, fitted on
  the training part, so its scores are a noisy, biased view of the truth;
* **independent clicks**: every item on a slate is clicked with its own probability (no position effect, no cascade,
  no "no-click" alternative as in the paper's slate likelihood); so the best slate is the top-``S`` items by
  ``P(click)`` and a slate's expected clicks is the sum of its items' probabilities;
* each round a batch of distinct users arrives (uniformly, without replacement within a round); items a user has
  in the log or has clicked in the simulation are never shown to them again; regret of a round = the oracle
  slate's expected clicks - the policy's slate's expected clicks, summed over the round's users;
* the simulator holds dense user x item arrays (the truth, the base scores, the exclusion mask): fine for
  MovieLens-size catalogues, refused above :data:`MAX_CELLS` cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError

MAX_CELLS = 100_000_000  # users x items the dense simulator accepts


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -35, 35)))


def topk_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """``(B, k)`` column indices of each row's ``k`` largest scores, best first."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


@dataclass
class PlantedSimulator:
    """The environment: true click probabilities, what the policies may see, and the log's exclusions.

    ``probs``: ``(U, I)`` true ``P(click)``; ``base``: ``(U, I)`` the base model's scores, standardised per user;
    ``item_features``: ``(I, d)`` standardised item features for the policies' Bayesian last layer;
    ``logged``: ``(U, I)`` bool, the items never shown to a user (their logged history).
    """

    probs: np.ndarray
    base: np.ndarray
    item_features: np.ndarray
    logged: np.ndarray
    info: dict[str, Any]

    @property
    def num_users(self) -> int:
        return self.probs.shape[0]

    @property
    def num_items(self) -> int:
        return self.probs.shape[1]


def standardise_rows(scores: np.ndarray) -> np.ndarray:
    """Each row to mean 0, sd 1 (a model's -inf / nan scores count as the row's lowest finite score)."""
    s = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(s)
    if not finite.all():
        low = np.where(finite, s, np.inf).min(axis=1, keepdims=True)
        s = np.where(finite, s, np.where(np.isfinite(low), low, 0.0))
    sd = s.std(axis=1, keepdims=True)
    return ((s - s.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def reduce_features(emb: np.ndarray, dim: int) -> np.ndarray:
    """Top-``dim`` principal components of ``(I, D)`` item vectors, each column scaled to unit variance."""
    x = np.asarray(emb, dtype=np.float64)
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    keep = int(min(dim, int((s > 1e-8 * max(s.max(initial=0.0), 1e-30)).sum())))
    z = u[:, :keep] * s[:keep]
    sd = z.std(axis=0)
    return (z / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def low_rank(matrix: sp.csr_matrix, rank: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(U, r), (I, r)`` factors of a rank-``r`` truncated SVD (``P Q^T`` = the best rank-r approximation)."""
    from scipy.sparse.linalg import svds

    r = min(rank, min(matrix.shape) - 1)
    v0 = np.random.default_rng(seed).random(min(matrix.shape))
    u, s, vt = svds(matrix.astype(np.float64), k=r, v0=v0)
    order = np.argsort(-s)
    return u[:, order] * s[order], vt[order].T


def planted_probs(user_vecs: np.ndarray, item_vecs: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """``sigmoid(scale * standardised <p_u, q_i> + offset)``, ``(U, I)``."""
    t = user_vecs @ item_vecs.T
    t = (t - t.mean()) / max(float(t.std()), 1e-12)
    return sigmoid(scale * t + offset).astype(np.float32)


def simulator_from_run(run: Any, *, truth_rank: int = 16, scale: float = 1.5, offset: float = -5.0,
                       feature_dim: int = 16, seed: int = 0) -> PlantedSimulator:
    """The simulator of a fitted run: truth from the full log, base scores and item features from the run's model
    (its item embeddings, or the training matrix's top singular vectors for models without them)."""
    split = run.split
    train = split.train.csr()
    full = (train + split.valid.csr() + split.test.csr()).tocsr()
    n_users, n_items = full.shape
    if n_users * n_items > MAX_CELLS:
        raise ConfigError(f"slates: the simulator holds dense user x item arrays; {n_users} x {n_items} is more than "
                          f"{MAX_CELLS:,} cells (use a smaller dataset)")
    if truth_rank < 1 or truth_rank >= min(n_users, n_items):
        raise ConfigError(f"truth_rank: must be in [1, {min(n_users, n_items) - 1}], got {truth_rank}")
    full.data[:] = 1.0
    p, q = low_rank(full, truth_rank, seed)
    probs = planted_probs(p, q, scale, offset)
    users = np.arange(n_users)
    base = np.concatenate([run.model.score(users[i:i + 1024]) for i in range(0, n_users, 1024)])
    emb = run.model.item_embeddings()
    if emb is None or np.asarray(emb).shape[0] != n_items:
        emb = low_rank(train.astype(np.float64), min(feature_dim, min(train.shape) - 1), seed)[1]
    logged = full.toarray() > 0
    info = {"truth": f"rank-{truth_rank} truncated SVD of the full log (train+valid+test)", "scale": scale,
            "offset": offset, "mean_ctr_unlogged": float(probs[~logged].mean()),
            "base_model": run.config.get("model"), "feature_dim": int(min(feature_dim, np.asarray(emb).shape[1]))}
    return PlantedSimulator(probs, standardise_rows(base), reduce_features(emb, feature_dim), logged, info)


@dataclass
class Trace:
    """Per-round results of one policy on one seed."""

    regret: np.ndarray  # (rounds,) expected clicks lost against the oracle, summed over the round's users
    clicks: np.ndarray  # (rounds,) realised clicks
    impressions: np.ndarray  # (rounds,) items shown
    oracle: np.ndarray  # (rounds,) the oracle slates' expected clicks


def simulate(sim: PlantedSimulator, policy: Any, *, rounds: int, slate: int, users_per_round: int, seed: int
             ) -> Trace:
    """Play ``policy`` (``select(users, excluded, slate, rng) -> (B, S)`` items, ``update(users, items, clicks,
    shown)``) for ``rounds``. The arrivals and the click coins depend on ``seed`` only, so every policy of a seed
    meets the same users in the same order (common random numbers)."""
    if slate >= sim.num_items:
        raise ConfigError(f"--slate: must be below the number of items ({sim.num_items}), got {slate}")
    if users_per_round > sim.num_users:
        raise ConfigError(f"--users: at most the number of users ({sim.num_users}), got {users_per_round}")
    arrive, coins, choose = (np.random.default_rng([seed, k]) for k in range(3))
    clicked = np.zeros_like(sim.logged)
    regret, clicks, shown_n, oracle = (np.zeros(rounds) for _ in range(4))
    for t in range(rounds):
        users = arrive.choice(sim.num_users, users_per_round, replace=False)
        excluded = sim.logged[users] | clicked[users]  # (B, I)
        p = np.where(excluded, -1.0, sim.probs[users])
        best = np.take_along_axis(p, topk_rows(p, slate), axis=1)
        items = policy.select(users, excluded, slate, choose)  # (B, S)
        shown = ~np.take_along_axis(excluded, items, axis=1)  # a user with < S items left gets fewer
        p_shown = np.where(shown, np.take_along_axis(p, items, axis=1), 0.0)
        y = (coins.random(items.shape) < p_shown) & shown
        oracle[t] = np.maximum(best, 0.0).sum()
        regret[t] = oracle[t] - p_shown.sum()
        clicks[t], shown_n[t] = y.sum(), shown.sum()
        policy.update(users, items, y, shown)
        rows = np.repeat(users, slate).reshape(items.shape)
        clicked[rows[y], items[y]] = True
    return Trace(regret, clicks, shown_n, oracle)
