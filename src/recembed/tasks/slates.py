"""Exploration on slates: Thompson sampling with a Bayesian last layer over any fitted model's scores, against
greedy and epsilon-greedy, scored offline by :mod:`.slate_sim` (a planted reward model on a logged dataset).

Paper: Eide, Leslie & Frigessi, "Dynamic Slate Recommendation with Gated Recurrent Units and Thompson Sampling"
(DMKD 2022). Their recommender is a variational Bayesian GRU over a user's slate history; acting greedily on the
posterior mean, or Thompson sampling (TS: draw the parameters from the posterior, show the best slate under the
draw), and "in-slate TS"; explorative strategies match or beat greedy ones in their simulations.

Ours (a lite, model-agnostic version written from the paper's idea; deviations):

* no GRU and no variational inference: the run's fitted model is frozen and a **Bayesian last layer** sits on
  top of it. The logit of a click of user ``u`` on item ``i`` is ``g . [z_ui, 1] + theta_u . x_ui + c_i`` with
  ``x_ui = [z_ui, 1, f_i]`` (``z_ui``: the base model's score standardised per user; ``f_i``: the top principal
  components of the base model's item embeddings, unit variance): a shared calibration ``g``, a per-user
  deviation ``theta_u`` and a per-item correction ``c_i``;
* the likelihood is one **logistic** click per shown item (the paper's is a softmax over the slate plus "no
  click"); each block keeps a Gaussian posterior updated by an **online Laplace** step per round (Newton to the
  MAP of the new round's log-likelihood plus the current Gaussian as prior, the Hessian there as the new
  precision; as in Chapelle & Li 2011), block by block with the other blocks held at their means -- an
  approximation of the joint posterior;
* the prior on ``g``'s score weight is tight (greedy only sees the tops of the lists, where that slope is not
  identified; left free it turned negative after one round);
* TS draws ``g``, ``theta_u`` and ``c_i`` for every arriving user (batched Cholesky solves, one ``(B, d) @ (d, I)``
  matmul); greedy ranks by the posterior mean; epsilon-greedy fills each slot with a random allowed item with
  probability ``epsilon``, else the next best by the mean; ``base`` is the frozen model's top-S (no learning);
  ``bootstrap`` (opt-in, 5x the cost) is a second TS variant: 5 learners on double-or-nothing resamples of the
  feedback, one drawn per arriving user; no in-slate TS.

    recembed slates RUN [--rounds 300] [--slate 10] [--users 128] [--seeds 0,1,2] [--explore 0.3] [--out DIR]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from .slate_sim import PlantedSimulator, sigmoid, simulate, topk_rows


@dataclass(frozen=True)
class PosteriorConfig:
    """The Bayesian last layer's priors, on the logit scale of a click."""

    global_mean: tuple[float, float] = (1.0, -4.0)
    """Prior mean of the shared calibration ``(score weight, bias)``: before any feedback, the base ranking."""
    global_sd: tuple[float, float] = (0.1, 2.0)
    """Prior sd of the shared calibration: tight on the score weight (learnt from the top of the lists only, where
    greedy shows items, its slope is not identified and a free one flipped sign after one round), weak on the bias."""
    user_sd: tuple[float, float, float] = (0.3, 0.5, 0.5)
    """Prior sd of a user's deviation: score weight, bias, item features (total over their dimensions)."""
    item_sd: float = 0.5
    """Prior sd of an item's correction."""
    explore: float = 0.3
    """TS: multiplier of the posterior sd in the draws (1 = the posterior itself; on ml-100k it over-explored)."""
    newton_steps: int = 4
    """Newton steps of each block's Laplace update per round."""

    def __post_init__(self) -> None:
        for key in ("item_sd", "explore", "newton_steps"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key}: must be > 0, got {getattr(self, key)}")
        if len(self.user_sd) != 3 or min(self.user_sd) <= 0 or len(self.global_mean) != 2 \
                or len(self.global_sd) != 2 or min(self.global_sd) <= 0:
            raise ConfigError(f"user_sd: three values > 0, global_mean two, global_sd two > 0; got {self.user_sd}, "
                              f"{self.global_mean}, {self.global_sd}")


def laplace_update(mean: np.ndarray, precision: np.ndarray, x: np.ndarray, y: np.ndarray, offset: np.ndarray,
                   weight: np.ndarray, steps: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """One online Laplace step of a batch of Bayesian logistic regressions: prior ``N(mean, precision^-1)``
    ``(B, D), (B, D, D)``; data ``x`` ``(B, S, D)``, clicks ``y``, logit ``offset`` and 0/1 ``weight`` ``(B, S)``.
    Returns the MAP of ``log-lik + log-prior`` (by Newton's method) and the Hessian there: the new posterior."""
    theta = mean.copy()
    for k in range(steps + 1):
        p = sigmoid(np.einsum("bsd,bd->bs", x, theta) + offset)
        hess = precision + np.einsum("bsi,bsj,bs->bij", x, x, p * (1 - p) * weight)
        if k == steps:
            break
        grad = np.einsum("bij,bj->bi", precision, theta - mean) + np.einsum("bsd,bs->bd", x, (p - y) * weight)
        theta = theta - np.linalg.solve(hess, grad[..., None])[..., 0]
    return theta, hess


def _draw(mean: np.ndarray, precision: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """``mean + scale * L^-T eps`` with ``precision = L L^T``: a draw from ``N(mean, scale^2 precision^-1)``."""
    chol = np.linalg.cholesky(precision)
    eps = rng.standard_normal(mean.shape) * scale
    return mean + np.linalg.solve(np.swapaxes(chol, -1, -2), eps[..., None])[..., 0]


class BayesianLastLayer:
    """The shared learner of greedy, epsilon-greedy and TS. The logit of a click of user ``u`` on item ``i`` is
    ``g . [z_ui, 1] + theta_u . [z_ui, 1, f_i] + c_i``: a shared calibration ``g``, a per-user deviation
    ``theta_u`` and a per-item correction ``c_i``, each with a Gaussian posterior updated by online Laplace steps
    (block by block, the other blocks held at their means)."""

    def __init__(self, sim: PlantedSimulator, config: PosteriorConfig) -> None:
        self.config, self.base, self.f = config, sim.base, sim.item_features.astype(np.float64)
        d = self.f.shape[1]
        s_score, s_bias, s_feat = config.user_sd
        prior = 1.0 / np.r_[s_score, s_bias, np.full(d, s_feat / np.sqrt(max(d, 1)))] ** 2
        self.user_mean = np.zeros((sim.num_users, d + 2))
        self.user_precision = np.broadcast_to(np.diag(prior), (sim.num_users, d + 2, d + 2)).copy()
        self.global_mean = np.asarray(config.global_mean, dtype=np.float64)
        self.global_precision = np.diag(1.0 / np.asarray(config.global_sd) ** 2)
        self.item_mean = np.zeros(sim.num_items)
        self.item_precision = np.full(sim.num_items, 1.0 / config.item_sd ** 2)

    def _logits(self, users: np.ndarray, g: np.ndarray, theta: np.ndarray, corr: np.ndarray) -> np.ndarray:
        w = g + theta[:, :2]  # (B, 2)
        return self.base[users] * w[:, :1] + w[:, 1:2] + theta[:, 2:] @ self.f.T + corr  # (B, I)

    def mean_scores(self, users: np.ndarray) -> np.ndarray:
        return self._logits(users, self.global_mean, self.user_mean[users], self.item_mean[None])

    def sampled_scores(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        b, scale = len(users), self.config.explore
        g = _draw(np.tile(self.global_mean, (b, 1)), np.tile(self.global_precision, (b, 1, 1)), rng, scale)
        theta = _draw(self.user_mean[users], self.user_precision[users], rng, scale)
        corr = self.item_mean + scale * rng.standard_normal((b, len(self.item_mean))) / np.sqrt(self.item_precision)
        return self._logits(users, g, theta, corr)

    def update(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray, shown: np.ndarray,
               weight: np.ndarray | None = None) -> None:
        """Add one round's feedback (``(B, S)`` items, clicks and which slots were real; ``weight``: optional
        per-observation weights, the bootstrap heads' resampling)."""
        steps, y = self.config.newton_steps, clicks.astype(np.float64)
        w = shown.astype(np.float64) * (1.0 if weight is None else weight)
        z = np.take_along_axis(self.base[users], items, axis=1).astype(np.float64)  # (B, S)
        x = np.concatenate([z[..., None], np.ones(items.shape + (1,)), self.f[items]], axis=2)  # (B, S, D)
        user_part = lambda: np.einsum("bsd,bd->bs", x, self.user_mean[users])  # noqa: E731
        # the shared calibration: one regression over every (user, item) of the round
        xg = x[..., :2].reshape(1, -1, 2)
        off = (user_part() + self.item_mean[items]).reshape(1, -1)
        m, p = laplace_update(self.global_mean[None], self.global_precision[None], xg, y.reshape(1, -1), off,
                              w.reshape(1, -1), steps)
        self.global_mean, self.global_precision = m[0], p[0]
        # the users (distinct within a round)
        off = xg[0] @ self.global_mean
        m, p = laplace_update(self.user_mean[users], self.user_precision[users], x, y,
                              off.reshape(y.shape) + self.item_mean[items], w, steps)
        self.user_mean[users], self.user_precision[users] = m, p
        # the items: independent one-dimensional regressions, summed over the users that saw them
        off = off.reshape(y.shape) + user_part()
        idx, mask, wm = items[shown], shown, w[shown]
        n = len(self.item_mean)
        prior_mean, prior_prec = self.item_mean.copy(), self.item_precision.copy()
        c = prior_mean.copy()
        for k in range(steps + 1):
            q = sigmoid(off[mask] + c[idx])
            hess = prior_prec + np.bincount(idx, wm * q * (1 - q), minlength=n)
            if k == steps:
                break
            grad = prior_prec * (c - prior_mean) + np.bincount(idx, wm * (q - y[mask]), minlength=n)
            c = c - grad / hess
        self.item_mean, self.item_precision = c, hess


def _top(scores: np.ndarray, excluded: np.ndarray, slate: int) -> np.ndarray:
    return topk_rows(np.where(excluded, -np.inf, scores), slate)


class BasePolicy:
    """The frozen model's top-S: no learning."""

    def __init__(self, sim: PlantedSimulator, config: PosteriorConfig) -> None:
        self.base = sim.base

    def select(self, users: np.ndarray, excluded: np.ndarray, slate: int, rng: np.random.Generator) -> np.ndarray:
        return _top(self.base[users], excluded, slate)

    def update(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray, shown: np.ndarray) -> None:
        pass


class GreedyPolicy:
    """Top-S by the Bayesian last layer's posterior mean (starts as the base model's ranking)."""

    def __init__(self, sim: PlantedSimulator, config: PosteriorConfig) -> None:
        self.learner = BayesianLastLayer(sim, config)

    def select(self, users: np.ndarray, excluded: np.ndarray, slate: int, rng: np.random.Generator) -> np.ndarray:
        return _top(self.learner.mean_scores(users), excluded, slate)

    def update(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray, shown: np.ndarray) -> None:
        self.learner.update(users, items, clicks, shown)


class EpsilonGreedyPolicy(GreedyPolicy):
    """Each slot: with probability ``epsilon`` a uniformly random allowed item, else the next best by the mean."""

    def __init__(self, sim: PlantedSimulator, config: PosteriorConfig, epsilon: float = 0.1) -> None:
        super().__init__(sim, config)
        self.epsilon = epsilon

    def select(self, users: np.ndarray, excluded: np.ndarray, slate: int, rng: np.random.Generator) -> np.ndarray:
        mean = self.learner.mean_scores(users)
        noise = rng.random(mean.shape)
        taken = excluded.copy()
        rows = np.arange(len(users))
        out = np.empty((len(users), slate), dtype=np.int64)
        for j in range(slate):  # over slots (S of them), vectorised over users and items
            explore = rng.random(len(users)) < self.epsilon
            pick = np.argmax(np.where(taken, -np.inf, np.where(explore[:, None], noise, mean)), axis=1)
            out[:, j] = pick
            taken[rows, pick] = True
        return out


class ThompsonPolicy(GreedyPolicy):
    """Top-S by one posterior draw per arriving user."""

    def select(self, users: np.ndarray, excluded: np.ndarray, slate: int, rng: np.random.Generator) -> np.ndarray:
        return _top(self.learner.sampled_scores(users, rng), excluded, slate)


class BootstrapPolicy:
    """A second TS variant: ``heads`` copies of the learner, each fed every observation with weight 0 or 2
    (double-or-nothing bootstrap); each arriving user is served by the mean of one head drawn at random."""

    def __init__(self, sim: PlantedSimulator, config: PosteriorConfig, heads: int = 5) -> None:
        self.heads = [BayesianLastLayer(sim, config) for _ in range(heads)]
        self.rng: np.random.Generator | None = None

    def select(self, users: np.ndarray, excluded: np.ndarray, slate: int, rng: np.random.Generator) -> np.ndarray:
        self.rng = rng  # the seed's policy stream also draws the resampling weights
        pick = rng.integers(len(self.heads), size=len(users))
        scores = np.empty(excluded.shape)
        for h, head in enumerate(self.heads):  # over heads (a handful), each scoring its users at once
            scores[pick == h] = head.mean_scores(users[pick == h])
        return _top(scores, excluded, slate)

    def update(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray, shown: np.ndarray) -> None:
        for head in self.heads:
            head.update(users, items, clicks, shown, 2.0 * (self.rng.random(items.shape) < 0.5))


POLICIES = ("base", "greedy", "epsilon-greedy", "thompson", "bootstrap")
DEFAULT_POLICIES = ("base", "greedy", "epsilon-greedy", "thompson")


def make_policy(name: str, sim: PlantedSimulator, config: PosteriorConfig, epsilon: float) -> Any:
    if name == "epsilon-greedy":
        return EpsilonGreedyPolicy(sim, config, epsilon)
    classes = {"base": BasePolicy, "greedy": GreedyPolicy, "thompson": ThompsonPolicy, "bootstrap": BootstrapPolicy}
    if name not in classes:
        raise ConfigError(f"--policies: each one of {', '.join(POLICIES)}, got {name!r}")
    return classes[name](sim, config)


def run_slates(sim: PlantedSimulator, *, rounds: int, slate: int, users_per_round: int, seeds: tuple[int, ...],
               epsilon: float = 0.1, config: PosteriorConfig | None = None,
               policies: tuple[str, ...] = DEFAULT_POLICIES) -> dict[str, Any]:
    """Every policy on every seed; per policy the final cumulative regret and the CTR (mean, sd over seeds) and
    the cumulative regret curve (mean, sd per round)."""
    if not 0 < epsilon <= 1:
        raise ConfigError(f"--epsilon: must be in (0, 1], got {epsilon}")
    if rounds < 1 or slate < 1 or users_per_round < 1 or not seeds:
        raise ConfigError("slates: --rounds, --slate and --users must be >= 1 and --seeds non-empty")
    config = config or PosteriorConfig()
    unknown = [n for n in policies if n not in POLICIES]
    if unknown:
        raise ConfigError(f"--policies: each one of {', '.join(POLICIES)}, got {unknown[0]!r}")
    out: dict[str, Any] = {}
    for name in policies:
        traces = [simulate(sim, make_policy(name, sim, config, epsilon), rounds=rounds, slate=slate,
                           users_per_round=users_per_round, seed=s) for s in seeds]
        cum = np.stack([np.cumsum(t.regret) for t in traces])  # (seeds, rounds)
        ctr = np.array([t.clicks.sum() / max(t.impressions.sum(), 1) for t in traces])
        oracle_ctr = np.array([t.oracle.sum() / max(t.impressions.sum(), 1) for t in traces])
        visits = rounds * users_per_round
        out[name] = {"final_regret_mean": float(cum[:, -1].mean()), "final_regret_std": float(cum[:, -1].std()),
                     "final_regret_per_seed": cum[:, -1].tolist(),
                     "regret_per_visit_mean": float(cum[:, -1].mean() / visits),
                     "ctr_mean": float(ctr.mean()), "ctr_std": float(ctr.std()),
                     "oracle_ctr_mean": float(oracle_ctr.mean()),
                     "curve_mean": cum.mean(axis=0).round(4).tolist(), "curve_std": cum.std(axis=0).round(4).tolist()}
    return {"rounds": rounds, "slate": slate, "users_per_round": users_per_round, "seeds": list(seeds),
            "epsilon": epsilon, "click_model": "independent clicks (no position effect)",
            "posterior": asdict(config), "simulator": sim.info, "policies": out}


def plot_regret(result: dict[str, Any], path: Any, title: str) -> None:
    """Cumulative regret against the round, one line per policy: the mean over seeds and a +-1 sd band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, r in result["policies"].items():
        mean, sd = np.asarray(r["curve_mean"]), np.asarray(r["curve_std"])
        x = np.arange(1, len(mean) + 1)
        ax.plot(x, mean, label=f"{name} ({r['final_regret_mean']:.0f})")
        ax.fill_between(x, mean - sd, mean + sd, alpha=0.25)
    ax.set_xlabel(f"round ({result['users_per_round']} users x slate of {result['slate']})")
    ax.set_ylabel("cumulative regret (expected clicks lost)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=90))
    plt.close(fig)
