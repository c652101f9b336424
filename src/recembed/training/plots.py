"""Training curves: loss and the validation metric per epoch, as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import atomic_write


def plot_history(history: list[dict[str, Any]], path: str | Path, title: str = "",
                 metric_label: str = "validation metric") -> Path | None:
    """Write a two-panel PNG (training loss; validation metric with the best epoch marked)."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    keys = list(dict.fromkeys(k for h in history for k in h if k.startswith("valid_")))
    metric_key = keys[0] if keys else None
    fig, axes = plt.subplots(1, 2 if metric_key else 1, figsize=(10 if metric_key else 5, 3.5), squeeze=False)
    ax = axes[0][0]
    ax.plot(epochs, [h["loss"] for h in history], color="tab:blue")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    if metric_key:
        ax2 = axes[0][1]
        for key in keys:
            pts = [(h["epoch"], h[key]) for h in history if key in h]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=key.removeprefix("valid_"))
        pts = [(h["epoch"], h[metric_key]) for h in history if metric_key in h]
        best = max(pts, key=lambda p: p[1])
        ax2.axvline(best[0], color="gray", ls="--", lw=1)
        ax2.set_title(f"best {metric_key.removeprefix('valid_')} {best[1]:.4f} at epoch {best[0]}", fontsize=9)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel(metric_label)
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
    return Path(path)
