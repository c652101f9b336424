"""[Tasks] commands: ``cutoff`` (a calibrated relevance cut-off for a retrieval run, :mod:`recembed.tasks.cutoff`)
and ``slates`` (Thompson sampling vs greedy on a planted slate simulator, :mod:`recembed.tasks.slates`).

    recembed cutoff RUN [--candidates 200] [--out DIR]
    recembed slates RUN [--rounds 300] [--slate 10] [--users 128] [--seeds 0,1,2] [--out DIR]
    recembed complements RUN [--window 3] [--out DIR]   (dual vs single embeddings, :mod:`recembed.tasks.complements`)
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table as RichTable

from .common import POSITIVE_INT, THREADS_HELP, _load_run, console


def register(cli: click.Group) -> None:
    cli.add_command(cutoff)
    cli.add_command(slates)
    cli.add_command(complements)


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--candidates", type=POSITIVE_INT, default=200, show_default=True,
              help="Each user's top candidates the cut-off chooses from.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write OUT/cutoff.json and OUT/cutoff.png (default: RUN).")
@click.option("--threads", type=POSITIVE_INT, default=None, help=THREADS_HELP)
def cutoff(run_dir: str, candidates: int, out_dir: str | None, threads: int | None) -> None:
    """Fit P(relevant) of RUN's candidates on validation; test precision / recall / result counts per threshold."""
    from ..io import write_json
    from ..tasks.cutoff import evaluate_cutoffs, plot_cutoffs

    if threads:
        import torch

        torch.set_num_threads(threads)
    run = _load_run(run_dir)
    result = evaluate_cutoffs(run, candidates=candidates)
    table = RichTable(title=f"relevance cut-off on {run.config.get('model')}'s top {candidates} (test, "
                            f"{result['test_users']} users)")
    for col in ("P(rel) >=", "results", "empty", "precision", "recall", "F1", "top-K F1 (K)", "global score F1"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        c = r["cutoff"]
        table.add_row(f"{r['threshold']:.2f}", f"{c['mean_count']:.1f}", f"{c['empty_share']:.0%}",
                      f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}",
                      f"{r['top_k']['f1']:.4f} ({r['top_k']['k']})", f"{r['global_score']['f1']:.4f}")
    console.print(table)
    out = Path(out_dir or run_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "cutoff.json", result)
    plot_cutoffs(result, out / "cutoff.png", f"{run.config.get('model')}: relevance cut-off vs fixed K")
    console.print(f"-> {out / 'cutoff.json'}, {out / 'cutoff.png'}")


def _parse_seeds(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    parts = [p.strip() for p in value.split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise click.BadParameter(f"expected non-negative integers separated by commas, e.g. 0,1,2; got {value!r}")
    return tuple(dict.fromkeys(int(p) for p in parts))


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--rounds", type=POSITIVE_INT, default=300, show_default=True, help="Rounds of the simulation.")
@click.option("--slate", type=POSITIVE_INT, default=10, show_default=True, help="Items per slate (S).")
@click.option("--users", "users_per_round", type=POSITIVE_INT, default=128, show_default=True,
              help="Distinct users arriving per round.")
@click.option("--seeds", type=str, default="0,1,2", show_default=True, callback=_parse_seeds,
              help="Simulation seeds (arrivals, clicks, draws), comma-separated.")
@click.option("--epsilon", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.1, show_default=True,
              help="Epsilon-greedy: the probability that a slot shows a random item.")
@click.option("--explore", type=click.FloatRange(0.0, min_open=True), default=0.3, show_default=True,
              help="Thompson sampling: multiplier of the posterior sd in the draws.")
@click.option("--policies", type=str, default="base,greedy,epsilon-greedy,thompson", show_default=True,
              help="Comma-separated: base, greedy, epsilon-greedy, thompson, bootstrap (5 heads, 5x the cost).")
@click.option("--truth-rank", type=POSITIVE_INT, default=16, show_default=True,
              help="Rank of the truncated SVD of the full log that plants the true click model.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write OUT/slates.json and OUT/regret.png (default: RUN).")
@click.option("--threads", type=POSITIVE_INT, default=None, help=THREADS_HELP)
def slates(run_dir: str, rounds: int, slate: int, users_per_round: int, seeds: tuple[int, ...], epsilon: float,
           explore: float, policies: str, truth_rank: int, out_dir: str | None, threads: int | None) -> None:
    """Thompson sampling vs greedy / epsilon-greedy slates over RUN's scores, on a simulator with a planted click
    model (the full log's low-rank truth); cumulative regret against the oracle slate."""
    from ..io import write_json
    from ..tasks.slate_sim import simulator_from_run
    from ..tasks.slates import PosteriorConfig, plot_regret, run_slates

    if threads:
        import torch

        torch.set_num_threads(threads)
    run = _load_run(run_dir)
    sim = simulator_from_run(run, truth_rank=truth_rank)
    result = run_slates(sim, rounds=rounds, slate=slate, users_per_round=users_per_round, seeds=seeds,
                        epsilon=epsilon, config=PosteriorConfig(explore=explore),
                        policies=tuple(dict.fromkeys(p.strip() for p in policies.split(",") if p.strip())))
    model = run.config.get("model")
    table = RichTable(title=f"slates over {model}'s scores: {rounds} rounds x {users_per_round} users x {slate} "
                            f"items, seeds {','.join(map(str, seeds))}")
    for col in ("policy", "cumulative regret", "regret / visit", "CTR", "oracle CTR"):
        table.add_column(col, justify="right")
    for name, r in result["policies"].items():
        table.add_row(name, f"{r['final_regret_mean']:.1f} ± {r['final_regret_std']:.1f}",
                      f"{r['regret_per_visit_mean']:.4f}", f"{r['ctr_mean']:.4f} ± {r['ctr_std']:.4f}",
                      f"{r['oracle_ctr_mean']:.4f}")
    console.print(table)
    out = Path(out_dir or run_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "slates.json", result)
    plot_regret(result, out / "regret.png", f"{model} on {run.metrics.get('dataset', '?')}: cumulative regret "
                                            f"(mean ± sd over {len(seeds)} seeds)")
    console.print(f"-> {out / 'slates.json'}, {out / 'regret.png'}")


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--window", type=POSITIVE_INT, default=3, show_default=True,
              help="A pair's B is a test event at most this many purchases after A.")
@click.option("--column", default="attributes", show_default=True,
              help="The item table's tags column holding category (and brand) tokens.")
@click.option("--data-root", default=None, help="Where the run's dataset lives (default: as fitted).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write OUT/complements.json (default: RUN).")
@click.option("--threads", type=POSITIVE_INT, default=None, help=THREADS_HELP)
def complements(run_dir: str, window: int, column: str, data_root: str | None, out_dir: str | None,
                threads: int | None) -> None:
    """Complementary (other-department) and similar held-out co-purchases: dual (in . out) vs single (in . in)."""
    from ..data import catalog
    from ..errors import DataError
    from ..io import write_json
    from ..tasks.complements import compare

    if threads:
        import torch

        torch.set_num_threads(threads)
    run = _load_run(run_dir)
    spec = run.config.get("data") or {}
    dataset, _ = catalog.load_any(str(spec.get("data")), root=data_root or spec.get("data_root"),
                                  **{k: spec.get(k) for k in ("items", "users", "columns", "duplicates") if k in spec})
    table = dataset.item_table
    if table is None or column not in table or table.kinds.get(column) != "tags":
        raise DataError(f"the run's data {spec.get('data')!r} has no tags column {column!r} in its item table",
                        field="--column")
    if dataset.items.to_list() != run.items.to_list():
        raise DataError("the reloaded data's items differ from the run's item vocabulary", path=run_dir)
    s = run.split
    result = compare(run.model, s.train, s.valid, s.test, table[column], window=window)
    out = Path(out_dir or run_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "complements.json", result)
    view = RichTable(title=f"{run.config.get('model')}: dual (in . out) vs single (in . in), @10, per query")
    for col in ("test/candidates", "queries", "score", "R@10", "N@10", "HR@10", "dN@10 [95% CI]", "p"):
        view.add_column(col, justify="right")
    for key, r in result["results"].items():
        d = r["dual_minus_single"]["ndcg@10"]
        for name in ("dual", "single", "pop"):
            m = r["scores"][name]
            first = name == "dual"
            view.add_row(key if first else "", str(result["tests"][key.split("/")[0]]["queries"]) if first else "",
                         name, f"{m['recall']:.4f}", f"{m['ndcg']:.4f}", f"{m['hit']:.4f}",
                         f"{d['diff']:+.4f} [{d['boot_ci95_low']:+.4f}, {d['boot_ci95_high']:+.4f}]" if first else "",
                         f"{d['p_wilcoxon']:.1e}" if first else "")
    console.print(view)
    console.print(f"-> {out / 'complements.json'}")
