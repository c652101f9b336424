"""``recembed synth-scale`` (the synthetic catalog at 10M+ rows) and ``recembed fit bpr --data DIR --stream`` (the
out-of-core path: vocabularies, split, training and evaluation streamed from a Parquet dataset)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from .common import POSITIVE_INT, _parse_sets, console

STREAM_MODELS = ("bpr",)


def register(cli: click.Group) -> None:
    @cli.command("synth-scale")
    @click.option("--interactions", type=POSITIVE_INT, default=10_000_000, show_default=True)
    @click.option("--users", type=POSITIVE_INT, default=1_000_000, show_default=True)
    @click.option("--items", type=POSITIVE_INT, default=1_000_000, show_default=True)
    @click.option("--topics", type=POSITIVE_INT, default=256, show_default=True, help="Planted item clusters.")
    @click.option("--rows-per-file", type=POSITIVE_INT, default=1_000_000, show_default=True)
    @click.option("--seed", type=click.IntRange(min=0), default=7, show_default=True)
    @click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to write.")
    def synth_scale(interactions: int, users: int, items: int, topics: int, rows_per_file: int, seed: int,
                    no_progress: bool, out_dir: str) -> None:
        """Write the synthetic catalog at scale as a Parquet dataset (part-*.parquet), chunk by chunk."""
        from ..data.synthetic_scale import ScaleConfig, write_scaled
        from ..progress import ProgressBar

        cfg = ScaleConfig(interactions=interactions, users=users, items=items, topics=topics,
                          rows_per_file=rows_per_file, seed=seed)
        t = time.perf_counter()
        with ProgressBar("generating", total=interactions, enabled=not no_progress) as bar:
            summary = write_scaled(out_dir, cfg, progress=bar.advance if bar.enabled else None)
        console.print(f"{interactions:,} interactions, {users:,} users, {items:,} items in {summary['files']} files "
                      f"({time.perf_counter() - t:.1f}s) -> {out_dir}")


def fit_stream(model: str, data: str, sets: tuple[str, ...], out_dir: str, *, seed: int, ks: tuple[int, ...],
               no_progress: bool, threads: int | None, columns: str | None, split_spec: str | None,
               env: dict[str, Any]) -> None:
    """The body of ``recembed fit MODEL --data DIR --stream``."""
    from ..data.readers.own import parse_columns
    from ..data.splits import parse_split_spec

    if model not in STREAM_MODELS:
        raise ConfigError(f"--stream: supported for {', '.join(STREAM_MODELS)} (MF-BPR with sparse tables); "
                          f"{model} trains in memory (drop --stream)")
    cols = parse_columns(columns)
    user_col, item_col = cols.get("user", "user_id"), cols.get("item", "item_id")
    kind, ratios = parse_split_spec(split_spec or "random:0.8,0.1,0.1")
    if kind != "random":
        raise ConfigError(f"--split: the streamed path splits at random by pair (random:0.8,0.1,0.1), not {kind}")
    params = _parse_sets(sets)
    params.setdefault("optimizer", "sparse_adam")
    from ..models.registry import model_class

    cfg = model_class(model)(**params).config
    from ..data.outofcore import open_split, scan_vocabularies, write_split
    from ..io import write_json
    from ..options import FitOptions
    from ..runs import peak_rss_mb
    from ..training.streaming import evaluate_part, fit_streaming_bpr, sample_users, save_factors

    out = Path(out_dir)
    stages: dict[str, dict[str, float]] = {}

    def stage(name: str, t0: float) -> None:
        stages[name] = {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}

    t = time.perf_counter()
    with console.status("pass 1: vocabularies"):
        users, items, rows = scan_vocabularies(data, user_col, item_col)
    stage("vocabulary", t)
    console.print(f"{rows:,} interactions, {len(users):,} users, {len(items):,} items")
    ctx = None
    if env.get("distributed"):  # rank 0 writes the split; the others read it after a barrier
        from ..training.device import resolve_device
        from ..training.distributed import init_distributed

        ctx = init_distributed(resolve_device(env.get("device", "cpu")))
    main = ctx is None or ctx.rank == 0
    if not main:
        console.quiet = True
    t = time.perf_counter()
    if main:
        with console.status("pass 2: split"):
            split = write_split(data, out / "split", users, items, ratios=tuple(ratios or (0.8, 0.1, 0.1)),
                                seed=seed, user_col=user_col, item_col=item_col)
    if ctx is not None:
        import torch.distributed as dist

        dist.barrier()
        if not main:
            split = open_split(out / "split", users, items)
    stage("split", t)
    console.print(f"split {split.sizes}")
    t = time.perf_counter()
    options = FitOptions(seed=seed, show_progress=not no_progress, threads=threads, **env)
    module, result, task = fit_streaming_bpr(split, cfg, options)
    stage("fit", t)
    if not main:
        return
    t = time.perf_counter()
    user_emb, item_emb = (w.detach().numpy() for w in module())
    keep = sample_users(split, "test", cfg.valid_sample or 10_000, seed + 1)
    test = evaluate_part(user_emb, item_emb, split, "test", keep, ks, ("train", "valid"))
    stage("evaluation", t)
    out.mkdir(parents=True, exist_ok=True)
    save_factors(out / "model", module)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..io import atomic_write

    for name, vocab in (("users", users), ("items", items)):
        atomic_write(out / f"{name}.parquet", lambda p, v=vocab: pq.write_table(pa.table({"id": v.arrow}), p))
    from ..config import config_to_dict

    write_json(out / "history.json", result.history)
    write_json(out / "config.json", {"model": model, "params": config_to_dict(cfg), "seed": seed, "stream": True,
                                     "data": {"data": data, "columns": columns}, "split": split_spec or "random"})
    best = result.history[result.best_epoch - 1] if result.best_epoch else {}
    metrics = {"model": model, "dataset": data, "split": "random (by pair, streamed)", "split_sizes": split.sizes,
               "rows": rows, "users": len(users), "items": len(items), "test": test,
               "valid": {k.removeprefix("valid_"): v for k, v in best.items() if k.startswith("valid_")},
               "evaluated_users": {"test": int(keep.sum()), "sampled": True},
               "training": {"epochs_run": len(result.history), "best_epoch": result.best_epoch,
                            "seconds_per_epoch": round(sum(h["train_seconds"] for h in result.history)
                                                       / max(len(result.history), 1), 2),
                            "shuffle_buffer_rows": task.peak_buffer_rows},
               "stages": stages, "fit_seconds": stages["fit"]["seconds"],
               "eval_seconds": stages["evaluation"]["seconds"], "peak_rss_mb": round(peak_rss_mb(), 1)}
    write_json(out / "metrics.json", metrics)
    console.print(json.dumps({"test": {k: round(v, 4) for k, v in test.items() if "@10" in k}, "stages": stages}))
