"""[Tasks] commands: ``cutoff`` (a calibrated relevance cut-off for a retrieval run, :mod:`recembed.tasks.cutoff`).

    recembed cutoff RUN [--candidates 200] [--out DIR]
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table as RichTable

from .common import POSITIVE_INT, THREADS_HELP, _load_run, console


def register(cli: click.Group) -> None:
    cli.add_command(cutoff)


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
