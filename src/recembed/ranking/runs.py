"""Fit a ranker on a CTR dataset and write its run directory (the CLI contract of the ranking stage).

``RUN_DIR/metrics.json``: ``{"valid": {"auc", "logloss", "gauc", "ece", ...}, "test": {...}, "training": {...},
"fit_seconds", "eval_seconds", "peak_rss_mb", "parameters", "embedding_parameters" (the token tables' share),
"data": {...}}``; ``config.json`` (model, params, data, seed); ``model/`` (:meth:`Ranker.save`); ``history.json``
+ ``training_curve.png``; ``reliability.png`` (the test part's calibration). ``metrics.json`` is written last,
so its presence marks a complete run.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import config_to_dict
from ..io import read_json, write_json
from ..options import FitOptions
from .datasets import CTRData
from .metrics import reliability

HEADLINE = ("auc", "logloss", "gauc", "ece")


@dataclass
class RankerRun:
    model: Any
    metrics: dict[str, Any]
    directory: Path | None
    config: dict[str, Any] | None = None


def fit_and_evaluate_ranker(model_name: str, data: CTRData, *, params: dict[str, Any] | None = None,
                            options: FitOptions | None = None, out_dir: str | Path | None = None,
                            data_spec: dict[str, Any] | None = None) -> RankerRun:
    from ..models.registry import model_class
    from ..runs import peak_rss_mb

    options = options or FitOptions()
    model = model_class(model_name)(**(params or {}))
    t = time.perf_counter()
    schema = data.schema()
    streamed = getattr(data, "streamed", False)  # a Parquet file larger than memory (ranking/ctr_stream.py)
    if streamed:
        model.fit_stream(data, schema=schema, options=options)
    else:
        model.fit(data.train, schema=schema, valid=data.valid, options=options)
    fit_seconds = time.perf_counter() - t
    t = time.perf_counter()
    scored = None
    if streamed:
        from .ctr_stream import score_stream
        from .metrics import ctr_metrics

        scored = {p: score_stream(model, model.module_, data, p) for p in ("valid", "test")}
        parts = {p: ctr_metrics(*s) for p, s in scored.items()}
    else:
        parts = {p: model.evaluate(data.part(p)) for p in ("valid", "test")}
    eval_seconds = time.perf_counter() - t
    result = model.train_result_
    metrics: dict[str, Any] = {
        **parts,
        "training": {"epochs_run": len(result.history), "best_epoch": result.best_epoch,
                     "best_valid": result.best_metric, "stopped_early": result.stopped_early,
                     "stopped_by_budget": result.stopped_by_budget, "valid_metric": model.config.valid_metric,
                     "seconds_per_epoch": (sum(h["train_seconds"] for h in result.history) / len(result.history)
                                           if result.history else None)},
        "fit_seconds": round(fit_seconds, 3), "eval_seconds": round(eval_seconds, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1), "parameters": model.num_parameters(),
        "embedding_parameters": model.num_embedding_parameters(),
        "data": {"name": data.name, **data.sizes(), "fields": [f.name for f in data.fields]},
    }
    if streamed:
        metrics["streaming"] = model.stream_stats_
    directory = Path(out_dir) if out_dir is not None else None
    if directory is not None:
        write_ranker_run(directory, model, data, metrics, {
            "model": model_name, "kind": "ranker", "params": config_to_dict(model.config), "seed": options.seed,
            "data": data_spec or {"name": data.name}, "auto_resolved": getattr(model, "auto_resolved_", {}) or None,
            **({"environment": {"world_size": int(os.environ.get("WORLD_SIZE", "1")), "shard": options.shard}}
               if options.shard else {})},
            test_scores=scored["test"][:2] if scored else None)
    return RankerRun(model, metrics, directory, None)


def write_ranker_run(out: Path, model: Any, data: CTRData, metrics: dict[str, Any], config: dict[str, Any],
                     test_scores: tuple[Any, Any] | None = None) -> None:
    """The run directory; ``test_scores``: the test part's ``(labels, probabilities)`` when already scored (a
    streamed part), else the test part is predicted here."""
    from ..training.plots import plot_history

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model")
    if model.history_:
        write_json(out / "history.json", model.history_)
        plot_history(model.history_, out / "training_curve.png", title=f"{config['model']} on {data.name}",
                     metric_label="valid metric", selected=model.config.valid_metric)
    labels, probs = test_scores if test_scores is not None else (data.test.labels, model.predict(data.test))
    rel = reliability(labels, probs)
    metrics["test"]["reliability"] = rel
    plot_reliability(rel, out / "reliability.png", title=f"{config['model']} on {data.name} (test)")
    write_json(out / "config.json", {**{k: v for k, v in config.items() if v is not None}, "recembed": __version__,
                                     "python": platform.python_version()})
    write_json(out / "metrics.json", metrics)  # last: its presence marks a complete run


def plot_reliability(rel: dict[str, list[float]], path: Path, title: str) -> None:
    """Observed click rate against mean predicted probability per bin, with the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    pts = [(p, r) for p, r, c in zip(rel["mean_prob"], rel["click_rate"], rel["count"]) if c > 0]
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfectly calibrated")
    if pts:
        ax.plot(*zip(*pts), marker="o", label="model")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed click rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


def load_ranker_run(directory: str | Path) -> RankerRun:
    from ..errors import DataError
    from ..models.ranking.base import Ranker

    directory = Path(directory)
    if not (directory / "metrics.json").exists():
        raise DataError("not a complete run directory (no metrics.json)", path=directory)
    for name in ("config.json", "model/model.json", "model/model.safetensors"):
        if not (directory / name).exists():
            raise DataError(f"not a complete ranker run: missing {name}", path=directory)
    return RankerRun(Ranker.load(directory / "model"), read_json(directory / "metrics.json"), directory,
                     read_json(directory / "config.json"))
