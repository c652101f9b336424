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
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table as RichTable

from ..errors import RecembedError
from .common import _metrics_table, _parse_sets, _run_parts, console
from .data_opts import attach_content, cold_users_option, load_data, own_data_options, report_split
from .data_opts import text_encoder as _text_encoder
from .semantic_cmds import register as _register_semantic
from .serve_cmds import register as _register_serve


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
    table = RichTable(title=f"datasets (root: {root})")
    for col in ("name", "default split", "available", "description"):
        table.add_column(col)
    for entry in catalog.CATALOG.values():
        available = "yes" if not entry.needs_root or (root / entry.name).is_dir() else "no"
        table.add_row(entry.name, entry.split, available, entry.description)
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
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Run directory to write.")
@click.option("--seed", default=2020, show_default=True, help="Random seed.")
@click.option("--ks", default="5,10,20,50", show_default=True, help="Cut-offs K for the metrics.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch / BLAS (default: library default).")
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
def fit(model: str, data: str, data_root: str | None, items_path: str | None, users_path: str | None,
        columns: str | None, duplicates: str | None, split_spec: str | None, sets: tuple[str, ...], out_dir: str,
        seed: int, ks: str, no_progress: bool, threads: int | None, checkpoint_dir: str | None, resume: bool,
        monitor_test: bool, feature_specs: tuple[str, ...], text_columns: str, encoder: str,
        cache_dir: str | None, cold_users: str) -> None:
    """Fit MODEL, evaluate on validation and test, write RUN_DIR/metrics.json."""
    from ..data.splits import make_split
    from ..models.registry import model_class
    from ..options import FitOptions

    model_class(model)  # fail fast on an unknown name
    with console.status(f"loading {data}"):
        dataset, default_split = load_data(data, data_root, items_path, users_path, columns, duplicates)
        split = make_split(dataset, split_spec or default_split, seed=seed)
    added = attach_content(dataset, feature_specs, text_columns, encoder, cache_dir, threads)
    console.print(f"[bold]{dataset}[/]  split {split.spec} {split.sizes()}"
                  + (f"  content added: {', '.join(added)}" if added else ""))
    report_split(split, cold_users)
    from ..runs import HEADLINE, fit_and_evaluate  # after the data: a data error needs no torch import

    ks_tuple = tuple(int(k) for k in ks.split(","))
    result = fit_and_evaluate(
        model, dataset, split, params=_parse_sets(sets),
        options=FitOptions(seed=seed, show_progress=not no_progress, threads=threads, checkpoint_dir=checkpoint_dir,
                           resume=resume), out_dir=out_dir, ks=ks_tuple,
        data_spec={"data": data, "data_root": data_root, "features": list(feature_specs),
                   "text_columns": text_columns or None, "encoder": encoder if text_columns else None,
                   **{k: v for k, v in (("items", items_path), ("users", users_path), ("columns", columns),
                                        ("duplicates", duplicates)) if v}},
        monitor_test=monitor_test, cold_users=cold_users,
    )
    m = result.metrics
    console.print(_metrics_table(f"{model} on {dataset.name}", _run_parts(m), HEADLINE))
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
@click.option("--batch-size", default=64, show_default=True, help="Texts per encoder batch.")
@click.option("--threads", type=int, default=None, help="CPU threads for the encoder.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Folder to write features.safetensors to.")
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


@cli.command(name="evaluate")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--write", is_flag=True, help="Rewrite RUN_DIR/metrics.json with the new scores.")
@click.option("--set", "sets", multiple=True,
              help="Inference-time setting key=value (repeatable), e.g. beam_size=50 for tiger.")
@click.option("--part", "parts_wanted", type=click.Choice(["all", "valid", "test"]), default="all",
              show_default=True, help="Which held-out parts to score.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the scores (with the settings and seconds) to this JSON file.")
def evaluate_cmd(run_dir: str, write: bool, sets: tuple[str, ...], parts_wanted: str,
                 json_out: str | None) -> None:
    """Re-score a saved run (model and split are read from RUN_DIR)."""
    import time

    from ..io import write_json
    from ..runs import HEADLINE, cold_section, cold_test_items, evaluate_split, load_run

    overrides = _parse_sets(sets)
    if write and (overrides or parts_wanted != "all"):
        raise click.UsageError("--write keeps metrics.json the fitted run's own: it cannot go with --set or --part")
    run = load_run(run_dir)
    if overrides:
        try:
            run.model.with_inference(**overrides)
        except RecembedError as exc:
            raise click.UsageError(str(exc)) from None
    ks = tuple(run.config.get("ks", (5, 10, 20, 50)))
    cold_policy = run.config.get("cold_users", "include")  # runs from before the policy ranked every user
    t = time.perf_counter()
    parts, notes = {}, {}
    for part in ("valid", "test"):
        if parts_wanted in ("all", part):
            res = evaluate_split(run.model, run.split, part, ks=ks, cold_users=cold_policy)
            parts[part] = res.summary if res else {}
    cold = cold_test_items(run.split) if len(run.split.test) and parts_wanted != "valid" else None
    if cold is not None and cold.any():
        res = evaluate_split(run.model, run.split, "test", ks=ks, candidates=cold, cold_users=cold_policy)
        section = cold_section(res, cold)  # test_cold, or a test_cold_omitted note
        parts.update({k: v for k, v in section.items() if k == "test_cold"})
        notes = {k: v for k, v in section.items() if k != "test_cold"}
    seconds = time.perf_counter() - t
    console.print(_metrics_table(f"{run.config['model']} (re-scored)", parts, HEADLINE))
    for key, note in notes.items():
        console.print(f"{key}: {note}")
    if "test" in parts:
        stored = run.metrics.get("test", {})
        same = all(abs(stored.get(n, 0) - parts["test"].get(n, 0)) < 1e-9 for n in HEADLINE if n in stored)
        console.print(f"eval {seconds:.2f}s; matches the stored test metrics: {same}")
    if json_out:
        write_json(json_out, {"run": str(run_dir), "settings": overrides, **parts, **notes,
                              "eval_seconds": round(seconds, 3)})
    if write:
        merged = {**run.metrics, **parts, **notes, "eval_seconds": round(seconds, 3)}
        if notes or "test_cold" in parts:  # the cold ranking was re-scored: its outcome replaces the stored one
            merged.pop("test_cold_omitted" if "test_cold" in parts else "test_cold", None)
        write_json(Path(run_dir) / "metrics.json", merged)


def _print_items(title: str, run, items, scores) -> None:  # noqa: ANN001
    table = RichTable(title=title)
    for col in ("rank", "item_id", "title", "score"):
        table.add_column(col)
    for rank, (i, s) in enumerate(zip(items, scores), start=1):
        if i < 0:
            break
        name = "" if run.titles is None else str(run.titles[i])
        table.add_row(str(rank), str(run.items.lookup(int(i))), name, f"{s:.4f}")
    console.print(table)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--user", "user_id", default=None, help="External user id (a known user).")
@click.option("--history", default=None, metavar="ID,ID,...",
              help="Item ids, oldest first: recommend after this history (an anonymous user or a session).")
@click.option("--k", default=10, show_default=True)
def recommend(run_dir: str, user_id: str | None, history: str | None, k: int) -> None:
    """Print the top-K items for a known user (--user) or after any history (--history), excluding the items
    already seen. Sequential models read a known user's whole history, validation and test events included."""
    from ..data.interactions import Interactions
    from ..runs import load_run

    if (user_id is None) == (history is None):
        raise click.UsageError("give exactly one of --user and --history")
    run = load_run(run_dir)
    if history is not None:
        ids = [h.strip() for h in history.split(",") if h.strip()]
        if not ids:
            raise click.UsageError("--history: expected comma-separated item ids")
        idx = run.items.index(ids, source="--history")
        try:
            items, scores = run.model.recommend_history(idx, k=k)
        except NotImplementedError as exc:
            raise click.ClickException(str(exc)) from None
        _print_items(f"top {k} after a history of {len(ids)} items", run, items, scores)
        return
    u = int(run.users.index([user_id], source="--user")[0])
    seen = Interactions.concat([run.split.train, run.split.valid, run.split.test]).csr()
    history_items = run.items.lookup(seen[u].indices)
    if run.titles is not None and len(history_items):
        shown = [str(run.titles[i]) for i in seen[u].indices[:5]]
        console.print(f"user {user_id}: {len(history_items)} known items, e.g. {shown}")
    if hasattr(run.model, "scorer_after"):  # the history goes on through validation and test
        import numpy as np

        from ..evaluation.ranking import rank_topk

        scorer = run.model.scorer_after(Interactions.concat([run.split.valid, run.split.test]))
        top, top_scores = rank_topk(scorer, np.array([u]), seen, k,
                                    num_items=run.model.num_items_)
        items, scores = top[0], top_scores[0]
    else:
        items, scores = run.model.recommend(u, k=k, exclude=seen, exclude_seen=False)
    _print_items(f"top {k} for user {user_id}", run, items, scores)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--item", "item_id", required=True, help="External item id.")
@click.option("--k", default=10, show_default=True)
def similar(run_dir: str, item_id: str, k: int) -> None:
    """Print the K items most similar to an item."""
    from ..runs import load_run

    run = load_run(run_dir)
    i = int(run.items.index([item_id], source="--item")[0])
    items, scores = run.model.similar_items(i, k=k)
    name = "" if run.titles is None else f" ({run.titles[i]})"
    _print_items(f"similar to {item_id}{name}", run, items, scores)


@cli.command()
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
@click.option("--metric", default="ndcg@10", show_default=True)
def compare(run_a: str, run_b: str, metric: str) -> None:
    """Paired significance test (t-test and Wilcoxon) of RUN_B against RUN_A on per-user test metrics."""
    import pyarrow.parquet as pq

    from ..evaluation.significance import paired_test
    from ..io import read_json

    tables = []
    for run in (run_a, run_b):
        h = read_json(Path(run) / "metrics.json").get("split_hash")
        t = pq.read_table(Path(run) / "per_user_test.parquet")
        if metric not in t.column_names:
            raise click.BadParameter(f"{metric!r} not in {run}; have {t.column_names[2:-1]}", param_hint="--metric")
        tables.append((h, t))
    if tables[0][0] != tables[1][0]:
        console.print("[yellow]warning: the runs used different splits (split_hash differs)[/]")
    import numpy as np

    ua, ub = (np.asarray(t.column("user_id").to_pylist()) for _, t in tables)
    va, vb = (t.column(metric).to_numpy() for _, t in tables)
    res = paired_test(ua, va, ub, vb)
    console.print(f"{metric}: A {res['mean_a']:.4f}  B {res['mean_b']:.4f}  diff {res['diff']:+.4f}  "
                  f"users {res['users']}  t {res['t']:.3f}  p(t-test) {res['p_ttest']:.3g}  "
                  f"p(Wilcoxon) {res['p_wilcoxon']:.3g}")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Run directory to write.")
@click.option("--weights", default="", help="One weight per run, comma-separated (default: equal).")
@click.option("--combine", type=click.Choice(["zscore", "mean"]), default="zscore", show_default=True,
              help="zscore: standardise each run's scores per user, then average; mean: average raw scores.")
@click.option("--ks", default=None, help="Cut-offs K (default: the first run's).")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: library default).")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def ensemble(runs: tuple[str, ...], out_dir: str, weights: str, combine: str, ks: str | None,
             threads: int | None, no_progress: bool) -> None:
    """Combine runs fitted on the same split into one ensemble run (RUN_DIR/metrics.json, as `fit` writes)."""
    from ..config import config_to_dict
    from ..errors import DataError
    from ..models.ensemble import Ensemble
    from ..runs import HEADLINE, evaluate_run, load_run

    if threads:
        import torch

        torch.set_num_threads(threads)
    loaded = [load_run(r) for r in runs]
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
    ks_tuple = tuple(int(k) for k in ks.split(",")) if ks else tuple(first.config.get("ks", (5, 10, 20, 50)))
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


_register_serve(cli)
_register_semantic(cli)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except RecembedError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
