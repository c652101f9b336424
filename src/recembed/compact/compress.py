"""``recembed compress RUN --method ... --out RUN2``: a run whose model scores with quantised tables.

RUN2 is an ordinary run directory (:func:`recembed.runs.load_run` reads it; ``recembed bundle RUN2`` bundles it)
holding a :class:`~.model.CompressedEmbedding`, evaluated by the same evaluator on RUN's own split (read from
RUN: no data root needed). ``metrics.json`` and ``config.json`` carry ``compression``: the method, bytes per item
(:func:`~.quantize.byte_report`), the seconds it took, the source run and its test metrics, and the relative
change of each headline metric (``(compressed - source) / source``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..config import config_to_dict
from ..errors import ConfigError
from ..runs import HEADLINE, RunResult, evaluate_run, load_run, write_run
from .model import CompressedEmbedding
from .quantize import Method

COMPARED = (*HEADLINE, "recall@50", "ndcg@50")


def relative_change(new: dict[str, Any], old: dict[str, Any]) -> dict[str, float]:
    """``(new - old) / old`` per metric both have (old != 0)."""
    return {k: round((new[k] - old[k]) / old[k], 5) for k in COMPARED
            if k in new and k in old and isinstance(old[k], int | float) and old[k]}


def compress_run(run_dir: str | Path, method: Method, out_dir: str | Path, *, seed: int = 0,
                 show_progress: bool = False) -> RunResult:
    run = load_run(run_dir)
    out = Path(out_dir)
    if out.resolve() == run.directory.resolve():
        raise ConfigError("--out: must be a new run directory, not RUN itself (RUN keeps the fp32 model)")
    t0 = time.perf_counter()
    model = CompressedEmbedding.from_model(run.model, method, seed=seed)
    seconds = time.perf_counter() - t0
    ks = tuple(run.config.get("ks", (5, 10, 20, 50)))
    cold_users = run.config.get("cold_users", "include")
    info: dict[str, Any] = {**model.compression_info(), "compress_seconds": round(seconds, 3),
                            "source_run": str(run.directory.resolve()), "source_model": run.config.get("model")}
    config = {"model": model.name, "params": config_to_dict(model.config), "seed": seed,
              "data": run.config.get("data"), "split": run.split.spec, "ks": list(ks), "cold_users": cold_users,
              "source_run": info["source_run"], "source_config": run.config, "compression": dict(info)}
    result = evaluate_run(model, run.split, dataset_name=run.metrics.get("dataset", "?"), titles=run.titles, ks=ks,
                          fit_seconds=seconds, config=config, show_progress=show_progress, cold_users=cold_users)
    source_test = run.metrics.get("test", {})
    info["source_test"] = {k: source_test[k] for k in COMPARED if k in source_test}
    info["relative_change_test"] = relative_change(result.metrics.get("test", {}), source_test)
    result.metrics["compression"] = info
    write_run(out, model, result.metrics["dataset"], run.titles, run.split, result.metrics, result.test, config)
    return result
