"""Compact representations: ``compress``, ``multi-interest``.

    recembed compress RUN --method int8|fp16|binary|pq:M|opq:M|ivfpq:M --out RUN2 [--rerank N] [--rerank-on int8]
    recembed multi-interest RUN [--components 4] [--clusters 16] [--k 50] [--tags COLUMN] [--out DIR]

The method and byte accounting: :mod:`recembed.compact.quantize`; the run written: :mod:`recembed.compact.compress`.
"""

from __future__ import annotations

import click

from .common import POSITIVE_INT, THREADS_HELP, _metrics_table, _run_parts, console


def register(cli: click.Group) -> None:
    """Add the compact-representation commands to the ``recembed`` group."""
    cli.add_command(compress)
    cli.add_command(multi_interest)


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
@click.option("--method", required=True,
              help="fp16 | int8 (per-row scale) | binary (sign codes + exact re-rank) | pq:M | opq:M | ivfpq:M "
                   "(M sub-quantisers of 8 bits; pq:MxBITS for other widths).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@click.option("--rerank", type=click.IntRange(min=0), default=None,
              help="binary: items per user re-scored exactly (default 100; 0: sign codes only).")
@click.option("--rerank-on", type=click.Choice(["int8", "fp32"]), default=None,
              help="binary: the re-rank store (default int8).")
@click.option("--nlist", type=POSITIVE_INT, default=None, help="ivfpq: coarse cells (default ~4 sqrt(items)).")
@click.option("--nprobe", type=POSITIVE_INT, default=None, help="ivfpq: cells the stored index visits (default 16).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="k-means seed (PQ kinds).")
@click.option("--threads", type=POSITIVE_INT, default=None, help=THREADS_HELP)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def compress(run_dir: str, method: str, out_dir: str, rerank: int | None, rerank_on: str | None, nlist: int | None,
             nprobe: int | None, seed: int, threads: int | None, no_progress: bool) -> None:
    """Quantise RUN's user / item tables and write RUN2, evaluated on RUN's split (metrics.json: compression)."""
    from ..compact.quantize import parse_method

    spec = parse_method(method, rerank=rerank, rerank_on=rerank_on, nlist=nlist, nprobe=nprobe)  # names the flag
    if threads:
        import torch

        torch.set_num_threads(threads)
        from ..serve.index import set_index_threads

        set_index_threads(threads)
    from ..compact.compress import compress_run
    from ..runs import HEADLINE

    result = compress_run(run_dir, spec, out_dir, seed=seed, show_progress=not no_progress)
    m = result.metrics
    c = m["compression"]
    console.print(_metrics_table(f"{c['source_model']} compressed with {c['method']}", _run_parts(m), HEADLINE))
    console.print(f"{c['bytes_per_item']} bytes per item (fp32 {c['bytes_per_item_fp32']}, "
                  f"{c['compression_ratio']}x smaller; with shared codebooks {c['bytes_per_item_amortised']}); "
                  f"test change {c['relative_change_test']}  -> {out_dir}/metrics.json")


@click.command("multi-interest")
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--components", type=POSITIVE_INT, default=4, show_default=True, help="Mixture components per user.")
@click.option("--clusters", type=POSITIVE_INT, default=16, show_default=True, help="k-means clusters of the items.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.35, show_default=True,
              help="Weight of the user's items in a cluster (vs the user vector) in its component's query.")
@click.option("--beta", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Weight of the similar users' mixtures (local smoothing).")
@click.option("--k", "k", type=POSITIVE_INT, default=50, show_default=True, help="List length (recall@k, ILD@k).")
@click.option("--tags", "tags", default=None, help="Item-table column for ILD / coverage (default: the first tags one).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None, help="Where RUN's dataset lives.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write OUT/multi_interest.json (default: RUN).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="k-means seed.")
def multi_interest(run_dir: str, components: int, clusters: int, alpha: float, beta: float, k: int, tags: str | None,
                   data_root: str | None, out_dir: str | None, seed: int) -> None:
    """kNN-Embed multi-interest users over RUN's vectors vs its single user vector: recall, diversity, coverage."""
    from pathlib import Path

    from rich.table import Table as RichTable

    from ..compact.multi_interest import KNNEmbedConfig, evaluate_multi_interest
    from ..io import write_json
    from ..ranking.pipeline import load_ranker_dataset
    from .common import _load_run

    config = KNNEmbedConfig(components=components, clusters=clusters, alpha=alpha, beta=beta, seed=seed)
    run = _load_run(run_dir)
    dataset = load_ranker_dataset(run.config["data"], data_root)
    result = evaluate_multi_interest(run, dataset, k=k, config=config, tags_column=tags)
    table = RichTable(title=f"{run.config.get('model')}: one vector vs kNN-Embed ({components} components), test, "
                            f"{result['users']} users")
    table.add_column("metric")
    for col in ("single", "kNN-Embed", "change"):
        table.add_column(col, justify="right")
    for name, v in result["single"].items():
        w = result["multi"][name]
        table.add_row(name, f"{v:.4f}", f"{w:.4f}", f"{100 * (w / v - 1) if v else 0:+.2f} %")
    console.print(table)
    out = Path(out_dir or run_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "multi_interest.json", result)
    console.print(f"-> {out / 'multi_interest.json'}")
