"""``recembed fit RANKER --data CTR_DATASET | IMPRESSIONS_FILE | INTERACTIONS``: the ranking stage's side of ``fit``
(CTR models, AUC / logloss / GAUC; an impression file: ranking/ctr_files.py);
``recembed importance RUN_DIR``: per-field permutation importance of a fitted ranker (and the model-free OutRank-style
field ranking of its training part), written to ``RUN_DIR/importance.json`` + ``importance.png``.

Semantic-ID n-gram fields for the item (:func:`recembed.ranking.features.add_semantic_id_fields`) come from
``--set`` keys that are read here, not by the model: ``sid_features=PATH`` (a ``recembed tokenize`` folder or a
LETTER / LC-Rec ``*.index.json``), ``sid_ngram=prefix|unigram|bigram`` (default prefix), ``sid_id_offset=N``
(``*.index.json`` keys are ``int(item id) + N``; LETTER Beauty on amazon-seq-din: -1), ``sid_levels=L`` (the first
L code levels; default all but a collision level). They are recorded under ``data`` in config.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table as RichTable

from ..errors import ConfigError
from .checks import is_main_process
from .common import _parse_sets, console

#: fit options a CTR dataset (which brings its own split and fields) has no use for (their flag names)
DATA_OPTIONS = {"split_spec": "--split", "items_path": "--items", "users_path": "--users", "columns": "--columns",
                "duplicates": "--duplicates", "feature_specs": "--features", "text_columns": "--text-columns"}


#: ``--retriever-folds`` when not given: out-of-fold refits of the retriever for the ranker's training rows
DEFAULT_FOLDS = 0

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


def _from_retriever(run: Any, retriever_dir: str, data: str, split: Any, dataset: Any, candidates: int, seed: int,
                    folds: int, threads: int | None) -> tuple[Any, dict[str, Any]]:
    """The CTR parts from the retrieval run's candidates (``ranking/candidates.py``) after checking that the run was
    fitted on the same data and split; and what ``config.json`` records of it."""
    from ..ranking.candidates import ctr_from_candidates

    if run.config.get("kind") == "ranker" or "split" not in run.config:
        raise ConfigError(f"--retriever: {retriever_dir} is not a retrieval run (`recembed fit MODEL --data D "
                          "--split S --out RUN`)")
    fitted = run.config.get("data", {}).get("data")
    if fitted != data or run.config["split"] != split.spec:
        raise ConfigError(f"--retriever: {retriever_dir} was fitted on {fitted!r} split {run.config['split']!r}, the "
                          f"ranker is on {data!r} split {split.spec!r}: fit both on the same data and split")
    if folds and hasattr(run.model, "scorer_after"):
        folds = 0  # sequential retrievers: the validation part's candidates only (no random folds of sequences)
    what = f"{run.config.get('model')}'s top {candidates} candidates" + (f" ({folds} out-of-fold refits)" if folds
                                                                           else "")
    with console.status(f"scoring {what}"):
        ctr = ctr_from_candidates(dataset, run, candidates=candidates, seed=seed, folds=folds, threads=threads)
    return ctr, {"retriever": {"run_dir": str(Path(retriever_dir).resolve()), "model": run.config.get("model")},
                 "candidates": candidates, "retriever_folds": folds}


def fit_ranker(model: str, data: str, data_root: str | None, sets: tuple[str, ...], out_dir: str, seed: int,
               no_progress: bool, threads: int | None, checkpoint_dir: str | None, resume: bool,
               negatives: int | None = None, negative_sampling: str | None = None, retriever_dir: str | None = None,
               candidates: int | None = None, retriever_folds: int | None = None, env: dict[str, Any] | None = None,
               **given: Any) -> None:
    from ..models.registry import model_class
    from ..ranking.datasets import CTR_DATASETS, is_ctr_dataset

    if given.get("monitor_test"):
        raise ConfigError(f"--monitor-test: {model} is a CTR ranker; it validates on the validation part's AUC")
    ctr_data = is_ctr_dataset(data)
    ctr_file = False  # an impression file (ranking/ctr_files.py): its own labels, fields from its columns
    if not ctr_data:
        from ..ranking.ctr_files import wants_ctr_file

        ctr_file = wants_ctr_file(data, given.get("columns"), given.get("split_spec"), given.get("field_kinds"),
                                  [s.partition("=")[0].strip() for s in sets])
    if given.get("field_kinds") and not ctr_file:
        raise ConfigError(f"--field-kinds: only for an impression file (a .csv / .tsv / .parquet with a 0/1 label "
                          f"column, --columns label=NAME); {data} is not one")
    if ctr_data or ctr_file:
        explicit = {**given, "negatives": negatives, "negative_sampling": negative_sampling,
                    "retriever_dir": retriever_dir, "candidates": candidates, "retriever_folds": retriever_folds}
        allowed = ("columns", "split_spec", "field_kinds") if ctr_file else ()
        for key, flag in {**DATA_OPTIONS, "negatives": "--negatives", "negative_sampling": "--negative-sampling",
                          "retriever_dir": "--retriever", "candidates": "--candidates",
                          "retriever_folds": "--retriever-folds"}.items():
            if key not in allowed and explicit.get(key) not in (None, False, (), ""):
                what = (f"{data} is an impression file: its rows are the impressions and their labels" if ctr_file
                        else f"{data} is a CTR dataset with its own fields and split (CTR datasets: "
                             f"{sorted(CTR_DATASETS)})")
                raise ConfigError(f"{flag}: {what}; on interaction data a ranker takes {flag}")
    if retriever_dir is not None:
        for value, flag in ((negatives, "--negatives"), (negative_sampling, "--negative-sampling")):
            if value is not None:
                raise ConfigError(f"{flag}: with --retriever the non-clicks are the retriever's own candidates, "
                                  "not sampled items")
    else:
        for value, flag in ((candidates, "--candidates"), (retriever_folds, "--retriever-folds")):
            if value is not None:
                raise ConfigError(f"{flag}: only with --retriever RUN (the ranker learns from that run's candidates)")
    negatives = 4 if negatives is None else negatives
    negative_sampling = negative_sampling or "uniform"
    retriever_run = None
    if retriever_dir is not None:
        from ..errors import DataError
        from ..io import read_json
        from ..runs import load_run

        config = Path(retriever_dir) / "config.json"
        saved = read_json(config) if config.is_file() else None
        if isinstance(saved, dict) and saved.get("kind") == "ranker":
            raise ConfigError(f"--retriever: {retriever_dir} is a ranker run; give a retrieval run (`recembed fit "
                              "MODEL --data D --split S --out RUN`)")
        try:
            retriever_run = load_run(retriever_dir)
        except DataError as exc:
            raise ConfigError(f"--retriever: {exc}") from None
    params = _parse_sets(sets)
    sid = _sid_options(params)
    stream = None
    if ctr_file:
        from ..ranking.ctr_files import stream_options

        stream = stream_options(params)
    model_class(model)(**params)  # unknown keys / bad values before the data
    if resume and not checkpoint_dir:
        raise ConfigError("--resume needs --checkpoint-dir")
    if negatives < 1:
        raise ConfigError(f"--negatives: must be >= 1, got {negatives}")
    from ..options import FitOptions
    from ..ranking.runs import HEADLINE, fit_and_evaluate_ranker

    spec: dict[str, Any] = {"data": data, "data_root": data_root}
    if ctr_data:
        from ..ranking.datasets import load_ctr

        with console.status(f"loading {data}"):
            ctr = load_ctr(data, data_root)
    elif ctr_file:
        from ..ranking.ctr_columns import parse_field_kinds
        from ..ranking.ctr_files import load_ctr_file

        with console.status(f"reading {data}"):
            ctr, file_spec = load_ctr_file(data, columns=given.get("columns"), split=given.get("split_spec"),
                                           field_kinds=parse_field_kinds(given.get("field_kinds")), seed=seed,
                                           **(stream or {}))
        if sid is not None and getattr(ctr, "streamed", False):
            raise ConfigError("sid_features: semantic-ID fields are added to in-memory parts; not with stream")
        spec.update(file_spec)
    else:  # interactions as clicks, sampled non-clicks (ranking/implicit.py), the fields from the data's tables
        from ..data.splits import make_split
        from ..ranking.implicit import ctr_from_split
        from .data_opts import attach_content, load_data

        with console.status(f"loading {data}"):
            dataset, default_split = load_data(data, data_root, given.get("items_path"), given.get("users_path"),
                                               given.get("columns"), given.get("duplicates"))
            split_spec = given.get("split_spec")
            if split_spec is None and retriever_run is not None:  # the retriever's own split
                split_spec = retriever_run.config.get("split")
            split = make_split(dataset, split_spec or default_split, seed=seed)
        attach_content(dataset, given.get("feature_specs") or (), given.get("text_columns") or "",
                       given.get("encoder") or "minilm", given.get("cache_dir"), threads)
        if retriever_dir is not None:
            ctr, fitted_on = _from_retriever(retriever_run, retriever_dir, data, split, dataset, candidates or 200,
                                             seed, DEFAULT_FOLDS if retriever_folds is None else retriever_folds,
                                             threads)
            spec.update(fitted_on)
        else:
            ctr = ctr_from_split(dataset, split, negatives=negatives, seed=seed, sampling=negative_sampling)
            spec.update({"negatives": negatives, "negative_sampling": negative_sampling})
        spec.update({"split": split.spec, "features": list(given.get("feature_specs") or ()),
                     "text_columns": given.get("text_columns") or None,
                     **{k: given[v] for k, v in (("items", "items_path"), ("users", "users_path"),
                                                  ("columns", "columns"), ("duplicates", "duplicates"))
                        if given.get(v)}})
    if sid is not None:
        from ..ranking.features import add_semantic_id_fields, load_item_codes

        with console.status("adding semantic-ID fields"):
            codes, item_ids = load_item_codes(sid["sid_features"], ctr, id_offset=sid.get("sid_id_offset", 0))
            ctr = add_semantic_id_fields(ctr, codes, item_ids, ngram=sid["sid_ngram"], levels=sid.get("sid_levels"))
    console.print(f"[bold]{ctr.name}[/]  {ctr.sizes()}  fields: {', '.join(f.name for f in ctr.fields)}")
    env = env or {}
    main_process = is_main_process(bool(env.get("distributed")))
    if not main_process:
        console.quiet = True
    run = fit_and_evaluate_ranker(
        model, ctr, params=params,
        options=FitOptions(seed=seed, show_progress=not no_progress and main_process, threads=threads,
                           checkpoint_dir=checkpoint_dir, resume=resume, **env),
        out_dir=out_dir if main_process else None, data_spec={**spec, **(sid or {})})
    if not main_process:
        return
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


def importance(run_dir: str, part: str, repeats: int, seed: int, data_root: str | None, threads: int | None,
               outrank: bool) -> None:
    """The body of ``recembed importance`` (see :func:`register`)."""
    from pathlib import Path

    from ..errors import DataError
    from ..io import read_json, write_json
    from ..ranking.importance import load_run_data, permutation_importance, plot_importance

    directory = Path(run_dir)
    config_path = directory / "config.json"
    if not directory.is_dir():
        raise DataError("no such run directory", path=directory)
    if not config_path.exists():
        raise DataError("not a run directory (no config.json; `recembed fit RANKER --data D --out RUN_DIR` writes "
                        "one)", path=directory)
    config = read_json(config_path)
    if config.get("kind") != "ranker":
        raise DataError(f"a {config.get('model', '?')!r} run, not a CTR ranker run: `recembed importance` needs a run "
                        "of `recembed fit RANKER` (RANKER: deepfm, dcnv2, ...)", path=config_path)
    from ..ranking.runs import load_ranker_run

    run = load_ranker_run(directory)
    if threads:
        import torch

        torch.set_num_threads(threads)
    with console.status(f"loading {config['data'].get('data', '?')}"):
        data = load_run_data(config, data_root)
    missing = sorted(set(run.model.schema_.names()) - set(data.part(part).columns))
    if missing:
        raise DataError(f"the reloaded data lacks the run's fields {missing}: was it fitted on other data?",
                        path=config_path)
    with console.status(f"permuting {len(run.model.schema_.fields)} fields x {repeats} on the {part} part"):
        result = permutation_importance(run.model, data.part(part), repeats=repeats, seed=seed)
    ranking = None
    if outrank:
        from ..ranking.selection import rank_fields

        ranking = rank_fields(run.model.schema_, data.train)
    out = {"run": str(directory), "model": config.get("model"), "data": data.name, "part": part,
           "permutation": result, "outrank": ranking}
    write_json(directory / "importance.json", out)
    plot_importance(result, directory / "importance.png", title=f"{config.get('model')} on {data.name} ({part})")
    by_name = {r["field"]: r for r in (ranking or {}).get("fields", [])}
    b = result["baseline"]
    table = RichTable(title=f"permutation importance: {config.get('model')} on {data.name}, {part} part "
                            f"(AUC {b['auc']:.4f}, {repeats} repeats)")
    for col in ("field", "AUC drop", "logloss rise", "GAUC drop", *(("OutRank",) if ranking else ())):
        table.add_column(col, justify="left" if col == "field" else "right", no_wrap=True)
    for r in result["fields"]:
        cells = [f"{r[k]['mean']:+.4f}±{r[k]['std']:.4f}" for k in ("auc_drop", "logloss_rise", "gauc_drop")]
        extra = ((f"{by_name[r['field']]['ami']:.4f} #{by_name[r['field']]['rank']}",) if ranking else ())
        table.add_row(r["field"], *cells, *extra)
    if ranking:
        table.caption = "mean ± std over the repeats; OutRank: adjusted mutual information with the click on the " \
                        "training part, and its rank (no model)"
    console.print(table)
    console.print(f"{result['seconds']:.1f}s  -> {directory / 'importance.json'}, {directory / 'importance.png'}")


def register(cli) -> None:  # noqa: ANN001
    import click

    from .common import POSITIVE_INT, THREADS_HELP, parse_ks

    @cli.command(name="importance")
    @click.argument("run_dir", type=click.Path(file_okay=False))
    @click.option("--part", type=click.Choice(["valid", "test"]), default="test", show_default=True,
                  help="Which held-out part to permute and score.")
    @click.option("--repeats", type=POSITIVE_INT, default=3, show_default=True,
                  help="Permutations per field (mean ± std over them).")
    @click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the permutations.")
    @click.option("--data-root", type=click.Path(), default=None, help="Where the run's dataset lives, if moved.")
    @click.option("--threads", type=POSITIVE_INT, default=None, help=THREADS_HELP)
    @click.option("--outrank/--no-outrank", default=True, show_default=True,
                  help="Also rank the fields without the model (adjusted mutual information with the click on the "
                       "training part; ranking/selection.py).")
    def importance_cmd(run_dir: str, part: str, repeats: int, seed: int, data_root: str | None,
                       threads: int | None, outrank: bool) -> None:
        """Per-field permutation importance of a fitted CTR ranker: RUN_DIR/importance.json + importance.png."""
        importance(run_dir, part, repeats, seed, data_root, threads, outrank)

    @cli.command()
    @click.option("--retriever", "retriever_dir", required=True, type=click.Path(exists=True, file_okay=False),
                  help="A retrieval run (recembed fit MODEL --data D --split S --out RUN).")
    @click.option("--ranker", "ranker_dir", required=True, type=click.Path(exists=True, file_okay=False),
                  help="A ranker fitted on the same data and split (recembed fit deepfm --data D --split S ...).")
    @click.option("--candidates", type=click.IntRange(min=1), default=200, show_default=True,
                  help="Items the retriever proposes per user; the ranker re-orders them.")
    @click.option("--ks", default="10,20", show_default=True, callback=parse_ks, help="Cut-offs K (<= candidates).")
    @click.option("--data-root", type=click.Path(), default=None, help="Where the ranker's dataset lives, if moved.")
    @click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                  help="Write OUT/metrics.json (retriever alone vs the pipeline).")
    @click.option("--refit", is_flag=True,
                  help="Fit the retriever's model again on training + validation before the test stage (the "
                       "production protocol for a ranker fitted with --retriever); its own list is reported too.")
    @click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch / BLAS threads for --refit.")
    @click.option("--no-progress", is_flag=True, help="Hide progress bars.")
    def pipeline(retriever_dir: str, ranker_dir: str, candidates: int, ks: tuple[int, ...], data_root: str | None,
                 out_dir: str | None, refit: bool, threads: int | None, no_progress: bool) -> None:
        """Retrieve-then-rank: the ranker re-orders the retriever's top candidates; test metrics of both."""
        from pathlib import Path

        from ..io import write_json
        from ..ranking.pipeline import evaluate_pipeline

        if max(ks) > candidates:
            raise ConfigError(f"--ks: {max(ks)} is above --candidates {candidates} (metrics past the candidates "
                              "would rank items the ranker never saw)")
        if threads:
            import torch

            torch.set_num_threads(threads)
        result = evaluate_pipeline(retriever_dir, ranker_dir, candidates=candidates, ks=ks, data_root=data_root,
                                   show_progress=not no_progress, refit=refit, threads=threads)
        table = RichTable(title=f"retrieve {candidates} then rank  ({result['users']} test users)")
        table.add_column("")
        names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
        for n in names:
            table.add_column(n, justify="right")
        rows = [("retriever alone", "retriever_alone")]
        if refit:
            rows.append(("retriever refitted on train + valid", "retriever_refit_alone"))
        rows.append(("refitted retriever + ranker" if refit else "retriever + ranker", "pipeline"))
        for label, key in rows:
            table.add_row(label, *(f"{result[key].get(n, float('nan')):.4f}" for n in names))
        console.print(table)
        sec = result["seconds"]
        console.print(f"scoring: retriever alone {sec['retriever_alone']:.1f}s, pipeline {sec['pipeline']:.1f}s "
                      f"(retrieve {sec['pipeline_retrieve']:.1f}s, rank {sec['pipeline_rank']:.1f}s)")
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            write_json(Path(out_dir) / "metrics.json", result)
