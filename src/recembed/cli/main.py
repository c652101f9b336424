"""``recembed`` command line.

    recembed datasets
    recembed fit MODEL --data NAME_OR_PATH [--data-root DIR] [--split SPEC] [--set key=value ...] --out RUN_DIR
    recembed fit MODEL --data interactions.csv --items items.csv --text-columns title,description --out RUN_DIR
    recembed evaluate RUN_DIR
    recembed recommend RUN_DIR --user ID [--k 10]
    recembed recommend RUN_DIR --history ID,ID,... [--k 10]
    recembed similar RUN_DIR --item ID [--k 10]
    recembed compare RUN_A RUN_B [--metric ndcg@10]
    recembed ensemble RUN_A RUN_B ... --out RUN_DIR [--weights 1,1,...]
    recembed tune MODEL --data NAME --trials N [--time-budget S] [--space FILE.toml] --out DIR
    recembed compress RUN --method int8|fp16|binary|pq:M|opq:M|ivfpq:M --out RUN2
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table as RichTable

from ..errors import RecembedError
from .checks import check_device_options, check_fit, device_options, is_main_process
from .common import POSITIVE_INT, THREADS_HELP, _load_run, _metrics_table, _parse_sets, _run_parts, console, parse_ks
from .compact_cmds import register as _register_compact
from .data_opts import attach_content, cold_users_option, load_data, own_data_options, report_split
from .data_opts import text_encoder as _text_encoder
from .rank_cmds import register as _register_rank
from .run_cmds import register as _register_runs
from .scale_cmds import register as _register_scale
from .semantic_cmds import register as _register_semantic
from .serve_cmds import register as _register_serve
from .task_cmds import register as _register_tasks
from .tune_cmds import register as _register_tune


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recembed")
def cli() -> None:
    """Learn, evaluate and serve user and item representations for recommender systems."""


@cli.command()
@click.option("--data-root", type=click.Path(), default=None, help="Folder of the datasets (else $RECEMBED_DATA_ROOT).")
def datasets(data_root: str | None) -> None:
    """List the dataset catalog."""
    from ..data import catalog

    root = catalog.data_root(data_root)
    if not root.is_dir():
        console.print(f"[yellow]warning:[/] the data root {root} is not a folder (--data-root or $RECEMBED_DATA_ROOT): "
                      "only generated datasets are available")
    table = RichTable(title=f"datasets (root: {root})")
    for col in ("name", "default split", "available", "description"):
        table.add_column(col)
    for entry in catalog.CATALOG.values():
        available = "yes" if not entry.needs_root or (root / entry.name).is_dir() else "no"
        table.add_row(entry.name, entry.split, available, entry.description)
    from ..ranking.datasets import CTR_DATASETS, CTR_SOURCES

    for name, loader in CTR_DATASETS.items():  # the ranking stage's datasets, built from a catalog dataset
        available = "yes" if (root / CTR_SOURCES[name]).is_dir() else "no"
        table.add_row(name, "its own (CTR)", available, (loader.__doc__ or "").strip().splitlines()[0])
    console.print(table)


@cli.command()
@click.argument("model")
@click.option("--data", required=True, help="Catalog name (see `recembed datasets`), an interactions file (CSV / TSV / "
              "Parquet: one row per event) or a folder.")
@click.option("--data-root", type=click.Path(), default=None, help="Folder of the datasets (else $RECEMBED_DATA_ROOT).")
@own_data_options
@click.option("--split", "split_spec", default=None,
              help="random:0.8,0.1,0.1 | temporal:0.8,0.1,0.1 | loo | cold-items:0.2 | drop-items:0.1 | given | "
                   "given:merge-valid | DIR")
@click.option("--set", "sets", multiple=True, help="Hyperparameter key=value (repeatable).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@click.option("--seed", type=click.IntRange(min=0), default=2020, show_default=True, help="Random seed.")
@click.option("--ks", default="5,10,20,50", show_default=True, callback=parse_ks,
              help="Cut-offs K for the metrics (positive integers, comma-separated).")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--threads", type=POSITIVE_INT, default=None, help=THREADS_HELP)
@click.option("--checkpoint-dir", type=click.Path(), default=None,
              help="Write training checkpoints here (trainable models); with --resume, continue from one.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --checkpoint-dir.")
@click.option("--monitor-test", is_flag=True,
              help="Splits without validation: log test metrics per epoch (needs --set select_best=false).")
@click.option("--features", "feature_specs", multiple=True, metavar="NAME=PATH | DIR",
              help="Item vectors for content models (repeatable): NAME=file.npy (one row per item, row = item index; "
                   "fewer rows: NAME=file.npy,ids=IDS.txt or ,mask=MASK.npy) or .parquet (item_id column), or a "
                   "folder written by `recembed encode`. Added as item-table vector columns.")
@click.option("--text-columns", default="",
              help="Item-table columns joined and encoded into a vector column '<encoder>_text' (comma-separated).")
@click.option("--encoder", type=click.Choice(["minilm", "tfidf"]), default="minilm", show_default=True,
              help="Text encoder for --text-columns (minilm: local all-MiniLM-L6-v2, cached; tfidf: no model).")
@click.option("--cache-dir", type=click.Path(), default=None, help="Text-vector cache (default: ~/.cache/recembed).")
@cold_users_option
@click.option("--negatives", type=click.IntRange(min=1), default=None,
              help="CTR rankers on interaction data: sampled non-clicks per interaction (ranking/implicit.py; "
                   "default 4).")
@click.option("--negative-sampling", type=click.Choice(["uniform", "popularity"]), default=None,
              help="CTR rankers on interaction data: how the non-clicks are drawn (default uniform).")
@click.option("--retriever", "retriever_dir", type=click.Path(), default=None,
              help="CTR rankers on interaction data: learn from this retrieval run's own candidates instead of "
                   "sampled non-clicks (its top --candidates per validation user; ranking/candidates.py).")
@click.option("--candidates", type=click.IntRange(min=1), default=None,
              help="With --retriever: candidates per user (default 200).")
@click.option("--retriever-folds", type=click.IntRange(min=0), default=None,
              help="With --retriever: also learn from K out-of-fold refits of the retriever on its training part "
                   "(default 0: the validation part's candidates only).")
@click.option("--field-kinds", default=None, metavar="COLUMN=KIND,...",
              help="CTR rankers on an impression file (a 0/1 label column, --columns label=NAME): force a column's "
                   "field kind (categorical, tags, numeric, vector) over the inferred one (docs/ctr_data.md).")
@click.option("--stream", is_flag=True,
              help="Out of core (bpr): --data is a Parquet dataset (a file or a folder of files) read in batches: "
                   "vocabularies, split (written under RUN_DIR/split/), training and evaluation streamed "
                   "(docs/scale.md).")
@device_options
def fit(model: str, data: str, data_root: str | None, items_path: str | None, users_path: str | None,
        columns: str | None, duplicates: str | None, split_spec: str | None, sets: tuple[str, ...], out_dir: str,
        seed: int, ks: tuple[int, ...], no_progress: bool, threads: int | None, checkpoint_dir: str | None,
        resume: bool, monitor_test: bool, feature_specs: tuple[str, ...], text_columns: str, encoder: str,
        cache_dir: str | None, cold_users: str, negatives: int | None,
        negative_sampling: str | None, retriever_dir: str | None, candidates: int | None,
        retriever_folds: int | None, field_kinds: str | None, stream: bool, device: str, precision: str,
        distributed: bool, shard: str | None) -> None:
    """Fit MODEL, evaluate on validation and test, write RUN_DIR/metrics.json."""
    from ..data.splits import make_split
    from ..models.registry import is_ranker, is_session_model
    from ..options import FitOptions

    env = check_device_options(device, precision, distributed, shard)  # before the data: fail fast
    from .session_cmds import fit_session, is_session_data, refuse_options

    if is_session_model(model) or (is_session_data(data) and not is_ranker(model)):  # the session task
        refuse_options(model, {"--split": split_spec, "--stream": stream, "--monitor-test": monitor_test,
                               "--features": feature_specs, "--text-columns": text_columns, "--items": items_path,
                               "--users": users_path, "--columns": columns, "--checkpoint-dir": checkpoint_dir,
                               "--resume": resume, "--negatives": negatives, "--retriever": retriever_dir,
                               "--distributed": distributed, "--shard": shard})
        return fit_session(model, data, data_root, _parse_sets(sets), out_dir, seed=seed, ks=ks, threads=threads,
                           no_progress=no_progress, env=env)
    if stream:
        if shard is not None:
            raise click.UsageError("--shard: not with --stream (the streamed MF has its own sparse tables)")
        from .scale_cmds import fit_stream

        return fit_stream(model, data, sets, out_dir, seed=seed, ks=ks, no_progress=no_progress, threads=threads,
                          columns=columns, split_spec=split_spec, env=env)
    if shard is not None:
        from ..scale.spec import check_shardable

        check_shardable(model)
    if is_ranker(model):  # the ranking stage: CTR datasets, AUC / logloss / GAUC
        from .rank_cmds import fit_ranker

        return fit_ranker(model, data, data_root, sets, out_dir, seed, no_progress, threads, checkpoint_dir, resume,
                          split_spec=split_spec, items_path=items_path, users_path=users_path, columns=columns,
                          duplicates=duplicates, feature_specs=feature_specs, text_columns=text_columns,
                          monitor_test=monitor_test, encoder=encoder, cache_dir=cache_dir, negatives=negatives,
                          negative_sampling=negative_sampling, retriever_dir=retriever_dir, candidates=candidates,
                          retriever_folds=retriever_folds, field_kinds=field_kinds, env=env)
    from ..ranking.datasets import is_ctr_dataset

    for value, flag in ((negatives, "--negatives"), (negative_sampling, "--negative-sampling"),
                        (retriever_dir, "--retriever"), (candidates, "--candidates"),
                        (retriever_folds, "--retriever-folds"), (field_kinds, "--field-kinds")):
        if value is not None:
            from ..errors import ConfigError

            raise ConfigError(f"{flag}: only for the CTR rankers (recembed fit deepfm ...); {model} is a retrieval "
                              "model")

    if is_ctr_dataset(data):
        from ..errors import ConfigError
        from ..models.registry import RANKERS

        raise ConfigError(f"--data: {data} is a CTR dataset, for the rankers ({', '.join(sorted(RANKERS))}); "
                          f"{model} is a retrieval model")
    params = _parse_sets(sets)
    check_fit(model, params, split_spec, checkpoint_dir, resume)  # before the data: fail fast
    main_process = is_main_process(distributed)
    if not main_process:
        console.quiet = True
    with console.status(f"loading {data}"):
        dataset, default_split = load_data(data, data_root, items_path, users_path, columns, duplicates)
        split = make_split(dataset, split_spec or default_split, seed=seed)
    added = attach_content(dataset, feature_specs, text_columns, encoder, cache_dir, threads)
    console.print(f"[bold]{dataset}[/]  split {split.spec} {split.sizes()}"
                  + (f"  content added: {', '.join(added)}" if added else ""))
    report_split(split, cold_users)
    if split.spec == "loo" and dataset.interactions.timestamp is None:
        console.print("[yellow]warning:[/] --split loo: the data has no timestamps, so each user's last events are "
                      "taken in file order")
    from ..runs import HEADLINE, fit_and_evaluate  # after the data: a data error needs no torch import

    result = fit_and_evaluate(
        model, dataset, split, params=params,
        options=FitOptions(seed=seed, show_progress=not no_progress and main_process, threads=threads,
                           checkpoint_dir=checkpoint_dir, resume=resume, **env), out_dir=out_dir, ks=ks,
        data_spec={"data": data, "data_root": data_root, "features": list(feature_specs),
                   "text_columns": text_columns or None, "encoder": encoder if text_columns else None,
                   **{k: v for k, v in (("items", items_path), ("users", users_path), ("columns", columns),
                                        ("duplicates", duplicates)) if v}},
        monitor_test=monitor_test, cold_users=cold_users,
    )
    if not main_process:  # a torchrun rank other than 0: rank 0 evaluates and writes the run
        return
    m = result.metrics
    console.print(_metrics_table(f"{model} on {dataset.name}", _run_parts(m), HEADLINE))
    if "matryoshka" in m:
        console.print("matryoshka prefixes (test ndcg@10): " + ", ".join(
            f"{d}: {p['test'].get('ndcg@10', float('nan')):.4f}" for d, p in m["matryoshka"].items()))
    console.print(f"fit {m['fit_seconds']:.2f}s  eval {m['eval_seconds']:.2f}s  peak RSS {m['peak_rss_mb']:.0f} MiB"
                  f"  -> {out_dir}/metrics.json")


@cli.command()
@click.option("--data", required=True, help="Catalog name or a file / folder path.")
@click.option("--data-root", type=click.Path(), default=None, help="Folder of the datasets (else $RECEMBED_DATA_ROOT).")
@own_data_options
@click.option("--text-columns", default="", help="Item table columns joined into one text per item (comma-separated).")
@click.option("--encoder", type=click.Choice(["minilm", "tfidf"]), default="minilm", show_default=True,
              help="minilm: local all-MiniLM-L6-v2 (offline); tfidf: TF-IDF + truncated SVD, no model needed.")
@click.option("--dim", default=256, show_default=True, help="Output dimension (tfidf only; minilm is 384).")
@click.option("--vectors/--no-vectors", default=True, show_default=True,
              help="Also keep the table's precomputed vector columns as modalities.")
@click.option("--fields", default="", help="Categorical / tag / numeric columns to encode (comma-separated).")
@click.option("--cache-dir", type=click.Path(), default=None, help="Text-vector cache (default: ~/.cache/recembed).")
@click.option("--batch-size", type=POSITIVE_INT, default=64, show_default=True, help="Texts per encoder batch.")
@click.option("--threads", type=POSITIVE_INT, default=None, help="CPU threads for the encoder.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write features.safetensors to.")
def encode(data: str, data_root: str | None, items_path: str | None, users_path: str | None, columns: str | None,
           duplicates: str | None, text_columns: str, encoder: str, dim: int, vectors: bool, fields: str,
           cache_dir: str | None, batch_size: int, threads: int | None, out_dir: str) -> None:
    """Encode item content (text, vectors, fields) into OUT/features.safetensors + features.json."""
    import time

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..encoders import features_from_table
    from ..io import atomic_write, write_json

    dataset, _ = load_data(data, data_root, items_path, users_path, columns, duplicates)
    if dataset.item_table is None:
        raise click.BadParameter(f"{dataset.name} has no item table to encode", param_hint="--data")
    cols = [c for c in text_columns.split(",") if c]
    text_encoder = _text_encoder(encoder, cache_dir, threads, batch_size, dim)
    t = time.perf_counter()
    feats = features_from_table(dataset.item_table, text_columns=cols, text_encoder=text_encoder if cols else None,
                                vector_columns=None if vectors else [],
                                field_columns=[c for c in fields.split(",") if c])
    seconds = time.perf_counter() - t
    out = Path(out_dir)
    feats.save(out)
    ids = pa.table({"item_id": dataset.items.arrow})
    atomic_write(out / "items.parquet", lambda p: pq.write_table(ids, p))
    stats = getattr(text_encoder, "last_stats", {}) if cols else {}
    write_json(out / "encode.json", {"data": data, "text_columns": cols, "encoder": encoder if cols else None,
                                     "seconds": round(seconds, 3), "items": dataset.num_items,
                                     "items_per_second": round(dataset.num_items / max(seconds, 1e-9), 1),
                                     "text_stats": stats, "modalities": feats.dims()})
    console.print(f"{feats}\n{dataset.num_items} items in {seconds:.1f}s"
                  + (f" (text: {stats})" if stats else "") + f" -> {out}/features.safetensors")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@click.option("--weights", default="", help="One weight per run, comma-separated (default: equal).")
@click.option("--combine", type=click.Choice(["zscore", "mean"]), default="zscore", show_default=True,
              help="zscore: standardise each run's scores per user, then average; mean: average raw scores.")
@click.option("--ks", default=None, callback=parse_ks, help="Cut-offs K (default: the first run's).")
@click.option("--threads", type=POSITIVE_INT, default=None, help=THREADS_HELP)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def ensemble(runs: tuple[str, ...], out_dir: str, weights: str, combine: str, ks: tuple[int, ...] | None,
             threads: int | None, no_progress: bool) -> None:
    """Combine runs fitted on the same split into one ensemble run (RUN_DIR/metrics.json, as `fit` writes)."""
    from ..config import config_to_dict
    from ..errors import DataError
    from ..models.ensemble import Ensemble
    from ..runs import HEADLINE, evaluate_run

    if threads:
        import torch

        torch.set_num_threads(threads)
    loaded = [_load_run(r) for r in runs]
    first = loaded[0]
    for run in loaded[1:]:
        if run.metrics.get("split_hash") != first.metrics.get("split_hash"):
            raise DataError(f"fitted on a different split than {first.directory} (split_hash differs)",
                            path=run.directory / "metrics.json")
    try:
        w = [float(x) for x in weights.split(",") if x.strip()] or None
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {weights!r}",
                                 param_hint="--weights") from None
    model = Ensemble.from_models([r.model for r in loaded], weights=w, combine=combine)
    ks_tuple = ks or tuple(first.config.get("ks", (5, 10, 20, 50)))
    config = {"model": "ensemble", "params": config_to_dict(model.config),
              "member_runs": [str(Path(r).resolve()) for r in runs],
              "seed": [r.config.get("seed") for r in loaded], "data": first.config.get("data"),
              "split": first.split.spec, "ks": list(ks_tuple), "cold_users": first.config.get("cold_users", "include")}
    result = evaluate_run(model, first.split, dataset_name=first.metrics.get("dataset", "?"), titles=first.titles,
                          ks=ks_tuple, out_dir=out_dir, config=config, show_progress=not no_progress,
                          cold_users=config["cold_users"])
    m = result.metrics
    console.print(_metrics_table(f"ensemble of {len(runs)} runs", _run_parts(m), HEADLINE))
    console.print(f"eval {m['eval_seconds']:.2f}s  peak RSS {m['peak_rss_mb']:.0f} MiB  -> {out_dir}/metrics.json")


_register_runs(cli)
_register_rank(cli)
_register_serve(cli)
_register_semantic(cli)
_register_tune(cli)
_register_compact(cli)
_register_tasks(cli)
_register_scale(cli)


def main() -> None:
    code: object = 0
    try:
        _main()
    except SystemExit as exc:
        code = exc.code
        raise
    finally:
        _close_process_group(clean=code in (0, None))


def _close_process_group(clean: bool) -> None:
    """Under torchrun: wait for every rank (rank 0 evaluates and writes the run while the others are done), then
    tear the process group down before the interpreter exits (a live gloo group at exit can abort a rank)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    try:
        if clean:
            dist.barrier()
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - best effort at exit; the command's own outcome stands
        pass


def _main() -> None:
    try:
        cli(standalone_mode=True)
    except RecembedError as exc:
        from rich.markup import escape  # a message may name e.g. recembed[torchrec]: text, not markup

        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        # a path given on the command line that cannot be read or written (e.g. --json in a folder that is not there)
        from rich.markup import escape

        console.print(f"[bold red]error:[/] {escape(str(exc.filename or ''))}: {escape(exc.strerror or str(exc))}")
        sys.exit(2)


if __name__ == "__main__":
    main()
