"""The study's plots as PNG (matplotlib, Agg): optimisation history, parameter importances, parallel coordinates.

``history.png``: each completed trial's validation value and the best so far (pruned trials as crosses at their
last reported value). ``importances.png``: Optuna's fANOVA importances (PED-ANOVA when fANOVA is unavailable);
skipped with fewer than 3 completed trials or a single searched parameter. ``parallel.png``: one axis per
parameter (log-scaled ranges on a log axis, choices in their declared order), a line per completed trial
coloured by its value. A plot that cannot be drawn is skipped; :func:`write_plots` returns the files it wrote.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from ..io import atomic_write
from . import space as spaces


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:  # noqa: ANN001
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    _plt().close(fig)


def _complete(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and not math.isnan(t.value)]


def plot_history(trials: list[FrozenTrial], path: Path, metric: str, maximize: bool, title: str) -> bool:
    done = _complete(trials)
    if not done:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    xs = [t.number for t in done]
    ys = [t.value for t in done]
    ax.scatter(xs, ys, s=18, label="completed trial", zorder=3)
    best = list(np.maximum.accumulate(ys) if maximize else np.minimum.accumulate(ys))
    last = max(t.number for t in trials)  # the line runs on to the last trial (pruned or failed ones after the best)
    ax.step([*xs, last] if last > xs[-1] else xs, [*best, best[-1]] if last > xs[-1] else best, where="post",
            color="tab:red", label="best so far")
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        ax.scatter([t.number for t in pruned], [t.intermediate_values[t.last_step] for t in pruned], marker="x",
                   color="grey", s=18, label="pruned (last epoch reported)")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"valid {metric}")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True


def importances(study: optuna.Study, seed: int = 0) -> dict[str, float]:
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator, get_param_importances

    for evaluator in (FanovaImportanceEvaluator(seed=seed), PedAnovaImportanceEvaluator()):
        try:
            return dict(get_param_importances(study, evaluator=evaluator))
        except (ImportError, ValueError, RuntimeError):
            continue
    return {}


def plot_importances(study: optuna.Study, path: Path, title: str, seed: int = 0) -> bool:
    done = _complete(study.get_trials(deepcopy=False))
    names = {n for t in done for n in t.params}
    if len(done) < 3 or len(names) < 2:
        return False
    imp = importances(study, seed)
    if not imp:
        return False
    plt = _plt()
    items = sorted(imp.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.set_xlabel("importance (share of the objective's variance)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return True


def _axis(values: list, p: spaces.Param | None) -> tuple[np.ndarray, list[float], list[str]]:
    """Values mapped to [0, 1], with tick positions and labels."""
    if isinstance(p, spaces.Choice) or p is None or any(isinstance(v, str | bool) for v in values):
        order = [spaces.encode(v) for v in p.values] if isinstance(p, spaces.Choice) else sorted(set(map(str, values)))
        index = {v: i for i, v in enumerate(order)}
        pos = np.array([index.get(v, index.get(str(v), 0)) for v in values], dtype=float)
        span = max(len(order) - 1, 1)
        return pos / span, [i / span for i in range(len(order))], [str(v) for v in order]
    low, high = float(p.low), float(p.high)
    f = np.log10 if p.log else (lambda x: np.asarray(x, dtype=float))
    lo, hi = float(f(low)), float(f(high))
    pos = (f(np.asarray(values, dtype=float)) - lo) / max(hi - lo, 1e-12)
    ticks = [0.0, 0.5, 1.0]
    labels = [f"{v:.3g}" for v in ((low, math.sqrt(low * high), high) if p.log else (low, (low + high) / 2, high))]
    return pos, ticks, labels


def plot_parallel(trials: list[FrozenTrial], space: dict[str, spaces.Param], path: Path, metric: str,
                  title: str) -> bool:
    done = [t for t in _complete(trials) if all(n in t.params for n in space)]
    names = list(space)
    if len(done) < 2 or not names:
        return False
    plt = _plt()
    from matplotlib import cm, colors

    values = np.array([t.value for t in done])
    norm = colors.Normalize(vmin=values.min(), vmax=max(values.max(), values.min() + 1e-12))
    axes = [_axis([t.params[n] for t in done], space[n]) for n in names]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * (len(names) + 1)), 4.2))
    xs = np.arange(len(names) + 1)
    vpos = (values - norm.vmin) / max(norm.vmax - norm.vmin, 1e-12)
    order = np.argsort(values)  # the best drawn last, on top
    for i in order:
        ys = [a[0][i] for a in axes] + [vpos[i]]
        ax.plot(xs, ys, color=cm.viridis(norm(values[i])), alpha=0.8, lw=1.2)
    for x, (_, ticks, labels) in enumerate(axes):
        ax.axvline(x, color="black", lw=0.8)
        for tk, lb in zip(ticks, labels):
            ax.text(x + 0.03, tk, lb, fontsize=7, va="center")
    ax.axvline(len(names), color="black", lw=0.8)
    for tk, v in ((0.0, norm.vmin), (1.0, norm.vmax)):
        ax.text(len(names) + 0.03, tk, f"{v:.4f}", fontsize=7, va="center")
    ax.set_xticks(xs, [*names, f"valid {metric}"], fontsize=8, rotation=15)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(names) + 0.5)
    ax.set_title(title, fontsize=9)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=f"valid {metric}")
    fig.tight_layout()
    _save(fig, path)
    return True


def write_plots(study: optuna.Study, space: dict[str, spaces.Param], out: Path, metric: str, maximize: bool,
                title: str, seed: int = 0) -> list[str]:
    trials = study.get_trials(deepcopy=False)
    written = []
    if plot_history(trials, out / "history.png", metric, maximize, f"{title}: optimisation history"):
        written.append("history.png")
    if plot_importances(study, out / "importances.png", f"{title}: parameter importances", seed):
        written.append("importances.png")
    if plot_parallel(trials, space, out / "parallel.png", metric, f"{title}: parallel coordinates"):
        written.append("parallel.png")
    return written
