"""Training curves: loss and the validation metrics per epoch, as a PNG."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..io import atomic_write

#: history keys drawn on the metric panel: ranking-quality metrics at a cutoff (``valid_ndcg@10``,
#: ``valid_recall@20``, ...); counts such as ``valid_users`` or ``valid_coverage@10`` are not quality and
#: live on other scales, so they stay off the plot
PLOTTED_METRIC = re.compile(r"^valid_(ndcg|recall)@\d+$")


def plotted_series(history: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """``{"loss": [(epoch, value), ...], "valid_ndcg@10": [...], ...}``: what :func:`plot_history` draws."""
    series: dict[str, list[tuple[int, float]]] = {
        "loss": [(int(h["epoch"]), float(h["loss"])) for h in history if "loss" in h]}
    keys = dict.fromkeys(k for h in history for k in h if PLOTTED_METRIC.match(k))
    for key in sorted(keys, key=lambda k: (not k.startswith("valid_ndcg"), k)):  # ndcg first: it selects
        series[key] = [(int(h["epoch"]), float(h[key])) for h in history if key in h]
    return series


def plot_history(history: list[dict[str, Any]], path: str | Path, title: str = "",
                 metric_label: str = "validation metric",
                 selected: str | None = None) -> dict[str, list[tuple[int, float]]] | None:
    """Write a two-panel PNG: the training loss on its own axis (left) and the validation ranking metrics
    (ndcg / recall@K only) on theirs (right), the best epoch of ``selected`` (default: the first ndcg@K)
    marked. Returns the series drawn (see :func:`plotted_series`), or None for an empty history."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = plotted_series(history)
    metric_keys = [k for k in series if k != "loss"]
    fig, axes = plt.subplots(1, 2 if metric_keys else 1, figsize=(10 if metric_keys else 5, 3.5), squeeze=False)
    ax = axes[0][0]
    ax.plot([p[0] for p in series["loss"]], [p[1] for p in series["loss"]], color="tab:blue")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("training loss", fontsize=9)
    ax.grid(alpha=0.3)
    if metric_keys:
        ax2 = axes[0][1]
        for key in metric_keys:
            pts = series[key]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=key.removeprefix("valid_"))
        mark = f"valid_{selected}" if selected and f"valid_{selected}" in series else metric_keys[0]
        best = max(series[mark], key=lambda p: p[1])
        ax2.axvline(best[0], color="gray", ls="--", lw=1)
        ax2.set_title(f"best {mark.removeprefix('valid_')} {best[1]:.4f} at epoch {best[0]}", fontsize=9)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel(metric_label)
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
    return series
