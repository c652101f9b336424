"""``recembed fit RANKER --data CTR_DATASET``: the ranking stage's side of ``fit`` (CTR models, AUC / logloss / GAUC).

Semantic-ID n-gram fields for the item (:func:`recembed.ranking.features.add_semantic_id_fields`) come from
``--set`` keys that are read here, not by the model: ``sid_features=PATH`` (a ``recembed tokenize`` folder or a
LETTER / LC-Rec ``*.index.json``), ``sid_ngram=prefix|unigram|bigram`` (default prefix), ``sid_id_offset=N``
(``*.index.json`` keys are ``int(item id) + N``; LETTER Beauty on amazon-seq-din: -1), ``sid_levels=L`` (the first
L code levels; default all but a collision level). They are recorded under ``data`` in config.json.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table as RichTable

from ..errors import ConfigError
from .common import _parse_sets, console

#: fit options that only mean something for the retrieval models (their flag names)
RETRIEVAL_ONLY = {"split_spec": "--split", "items_path": "--items", "users_path": "--users", "columns": "--columns",
                  "duplicates": "--duplicates", "feature_specs": "--features", "text_columns": "--text-columns",
                  "monitor_test": "--monitor-test"}


#: ``--set`` keys that configure the semantic-ID fields (data, not model hyperparameters)
SID_KEYS = ("sid_features", "sid_ngram", "sid_id_offset", "sid_levels")


def _sid_options(params: dict[str, str]) -> dict[str, Any] | None:
    """Pop and check the ``sid_*`` keys of ``params`` (before any data is read)."""
    from pathlib import Path

    from ..ranking.features import NGRAMS

    given = {k: params.pop(k) for k in SID_KEYS if k in params}
    if not given:
        return None
    if not given.get("sid_features"):
        raise ConfigError(f"{', '.join(sorted(given))}: set sid_features=PATH (a `recembed tokenize` folder or a "
                          "*.index.json file) to add semantic-ID fields")
    path = Path(given["sid_features"])
    if not (path.is_dir() or (path.suffix == ".json" and path.is_file())):
        raise ConfigError(f"sid_features: {str(path)!r} is not a semantic-ID folder (`recembed tokenize --out`) or "
                          "an existing *.index.json file")
    ngram = given.get("sid_ngram", "prefix")
    if ngram not in NGRAMS:
        raise ConfigError(f"sid_ngram: expected one of {list(NGRAMS)}, got {ngram!r}")
    out: dict[str, Any] = {"sid_features": str(path), "sid_ngram": ngram}
    for key, low in (("sid_id_offset", None), ("sid_levels", 1)):
        if key in given:
            try:
                value = int(given[key])
            except ValueError:
                raise ConfigError(f"{key}: expected an integer, got {given[key]!r}") from None
            if low is not None and value < low:
                raise ConfigError(f"{key}: must be >= {low}, got {value}")
            out[key] = value
    return out


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
    sid = _sid_options(params)
    model_class(model)(**params)  # unknown keys / bad values before the data
    if resume and not checkpoint_dir:
        raise ConfigError("--resume needs --checkpoint-dir")
    from ..options import FitOptions
    from ..ranking.datasets import load_ctr
    from ..ranking.runs import HEADLINE, fit_and_evaluate_ranker

    with console.status(f"loading {data}"):
        ctr = load_ctr(data, data_root)
    if sid is not None:
        from ..ranking.features import add_semantic_id_fields, load_item_codes

        with console.status("adding semantic-ID fields"):
            codes, item_ids = load_item_codes(sid["sid_features"], ctr, id_offset=sid.get("sid_id_offset", 0))
            ctr = add_semantic_id_fields(ctr, codes, item_ids, ngram=sid["sid_ngram"], levels=sid.get("sid_levels"))
    console.print(f"[bold]{ctr.name}[/]  {ctr.sizes()}  fields: {', '.join(f.name for f in ctr.fields)}")
    run = fit_and_evaluate_ranker(
        model, ctr, params=params,
        options=FitOptions(seed=seed, show_progress=not no_progress, threads=threads, checkpoint_dir=checkpoint_dir,
                           resume=resume),
        out_dir=out_dir, data_spec={"data": data, "data_root": data_root, **(sid or {})})
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
