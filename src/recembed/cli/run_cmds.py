"""Commands that read a fitted run directory: ``evaluate``, ``recommend``, ``similar``, ``compare``.

    recembed evaluate RUN_DIR [--part test] [--set key=value ...] [--json FILE] [--write]
    recembed recommend RUN_DIR --user ID [--k 10]
    recembed recommend RUN_DIR --history ID,ID,... [--k 10]
    recembed similar RUN_DIR --item ID [--k 10]
    recembed compare RUN_A RUN_B [--metric ndcg@10]
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table as RichTable

from ..errors import DataError, RecembedError, did_you_mean
from .common import _load_run, _metrics_table, _parse_sets, console, k_option


def register(cli: click.Group) -> None:
    """Add the run-reading commands to the ``recembed`` group."""
    for command in (evaluate_cmd, recommend, similar, compare):
        cli.add_command(command)


@click.command(name="evaluate")
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
    from ..runs import HEADLINE, cold_section, cold_test_items, evaluate_split

    overrides = _parse_sets(sets)
    if write and (overrides or parts_wanted != "all"):
        raise click.UsageError("--write keeps metrics.json the fitted run's own: it cannot go with --set or --part")
    run = _load_run(run_dir)
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


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--user", "user_id", default=None, help="External user id (a known user).")
@click.option("--history", default=None, metavar="ID,ID,...",
              help="Item ids, oldest first: recommend after this history (an anonymous user or a session).")
@k_option(help="How many items to print.")
def recommend(run_dir: str, user_id: str | None, history: str | None, k: int) -> None:
    """Print the top-K items for a known user (--user) or after any history (--history), excluding the items
    already seen. Sequential models read a known user's whole history, validation and test events included."""
    from ..data.interactions import Interactions

    if (user_id is None) == (history is None):
        raise click.UsageError("give exactly one of --user and --history")
    run = _load_run(run_dir)
    if history is not None:
        ids = [h.strip() for h in history.split(",") if h.strip()]
        if not ids:
            raise click.UsageError("--history: expected comma-separated item ids")
        idx = run.items.index(ids, source="--history")
        try:
            items, scores = run.model.recommend_history(idx, k=k)
        except NotImplementedError as exc:
            raise click.UsageError(f"--history: {exc}") from None
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


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--item", "item_id", required=True, help="External item id.")
@k_option(help="How many similar items to print.")
def similar(run_dir: str, item_id: str, k: int) -> None:
    """Print the K items most similar to an item."""
    run = _load_run(run_dir)
    i = int(run.items.index([item_id], source="--item")[0])
    items, scores = run.model.similar_items(i, k=k)
    name = "" if run.titles is None else f" ({run.titles[i]})"
    _print_items(f"similar to {item_id}{name}", run, items, scores)


@click.command()
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
        if not (Path(run) / "per_user_test.parquet").exists():
            raise DataError("no per_user_test.parquet: a run with test metrics (recembed fit) is needed", path=run)
        t = pq.read_table(Path(run) / "per_user_test.parquet")
        if metric not in t.column_names:
            have = t.column_names[2:-1]
            raise click.BadParameter(f"{metric!r}{did_you_mean(metric, have)} not in {run}; have {have}",
                                     param_hint="--metric")
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
