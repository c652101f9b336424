"""``recembed fit RANKER --data CTR_DATASET``: the ranking stage's side of ``fit`` (CTR models, AUC / logloss / GAUC)."""

from __future__ import annotations

from typing import Any

from rich.table import Table as RichTable

from ..errors import ConfigError
from .common import _parse_sets, console

#: fit options that only mean something for the retrieval models (their flag names)
RETRIEVAL_ONLY = {"split_spec": "--split", "items_path": "--items", "users_path": "--users", "columns": "--columns",
                  "duplicates": "--duplicates", "feature_specs": "--features", "text_columns": "--text-columns",
                  "monitor_test": "--monitor-test"}


def fit_ranker(model: str, data: str, data_root: str | None, sets: tuple[str, ...], out_dir: str, seed: int,
               no_progress: bool, threads: int | None, checkpoint_dir: str | None, resume: bool,
               **given: Any) -> None:
    from ..models.registry import model_class
    from ..ranking.datasets import CTR_DATASETS, is_ctr_dataset

    for key, flag in RETRIEVAL_ONLY.items():
        if given.get(key):
            raise ConfigError(f"{flag}: {model} is a CTR ranker; its data and split come from the CTR dataset "
                              f"(one of {sorted(CTR_DATASETS)})")
    if not is_ctr_dataset(data):
        raise ConfigError(f"--data: {model} is a CTR ranker and needs a CTR dataset, one of {sorted(CTR_DATASETS)} "
                          f"(got {data!r}); the retrieval models are the others: `recembed fit --help`")
    params = _parse_sets(sets)
    model_class(model)(**params)  # unknown keys / bad values before the data
    if resume and not checkpoint_dir:
        raise ConfigError("--resume needs --checkpoint-dir")
    from ..options import FitOptions
    from ..ranking.datasets import load_ctr
    from ..ranking.runs import HEADLINE, fit_and_evaluate_ranker

    with console.status(f"loading {data}"):
        ctr = load_ctr(data, data_root)
    console.print(f"[bold]{ctr.name}[/]  {ctr.sizes()}  fields: {', '.join(f.name for f in ctr.fields)}")
    run = fit_and_evaluate_ranker(
        model, ctr, params=params,
        options=FitOptions(seed=seed, show_progress=not no_progress, threads=threads, checkpoint_dir=checkpoint_dir,
                           resume=resume),
        out_dir=out_dir, data_spec={"data": data, "data_root": data_root})
    m = run.metrics
    table = RichTable(title=f"{model} on {ctr.name}")
    table.add_column("part")
    for name in HEADLINE:
        table.add_column(name, justify="right")
    for part in ("valid", "test"):
        table.add_row(part, *(f"{m[part][k]:.4f}" for k in HEADLINE))
    console.print(table)
    console.print(f"fit {m['fit_seconds']:.2f}s  eval {m['eval_seconds']:.2f}s  {m['training']['epochs_run']} epochs  "
                  f"peak RSS {m['peak_rss_mb']:.0f} MiB  -> {out_dir}/metrics.json")
