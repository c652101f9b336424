"""Streaming a Parquet impression file larger than memory vs reading it in memory (issue #21; RESULTS.md "Own CTR
files and streaming from Parquet").

Writes a synthetic impression log (``recembed.testing.impressions.planted_impressions``: click with probability
0.9 iff ``cat == 'a'`` xor ``flag``, else 0.1, so the best possible AUC is 0.90; 100k users, 20k items, tags, a
4-d vector, a numeric) as a folder of train / valid / test Parquet files (80 / 10 / 10, row groups of 100k,
written chunk by chunk: the writer never holds the file either), then fits DeepFM (defaults, 1 epoch) through
the same code as ``recembed fit deepfm --data FOLDER --set stream=true|false``. Each mode runs in its own
process (peak RSS is per process), one after the other::

    python benchmarks/ctr_stream.py write  --rows 10000000 --out benchmarks/out/ctr_stream/big
    python benchmarks/ctr_stream.py stream --out benchmarks/out/ctr_stream/big
    python benchmarks/ctr_stream.py write  --rows 2000000 --out benchmarks/out/ctr_stream/medium
    python benchmarks/ctr_stream.py stream --out benchmarks/out/ctr_stream/medium
    python benchmarks/ctr_stream.py memory --out benchmarks/out/ctr_stream/medium
    (the same three for --rows 500000 --out benchmarks/out/ctr_stream/small)
    python benchmarks/ctr_stream.py report --out benchmarks/out/ctr_stream --json benchmarks/ctr_stream.json

Each fit writes ``OUT/result-MODE.json``: rows, the Parquet data's uncompressed (Arrow) size, peak RSS before the
data is touched (torch and the library imported) and after the fit, wall seconds, training rows/s, valid / test
AUC and the streaming buffer statistics.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROW_GROUP = 100_000
CHUNK = 250_000


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write(out: Path, rows: int, seed: int) -> None:
    import pyarrow.parquet as pq

    from recembed.testing.impressions import planted_impressions

    out.mkdir(parents=True, exist_ok=True)
    cuts = {"train": (0, int(0.8 * rows)), "valid": (int(0.8 * rows), int(0.9 * rows)), "test": (int(0.9 * rows), rows)}
    t = time.perf_counter()
    for part, (a, b) in cuts.items():
        writer = None
        for s in range(a, b, CHUNK):
            chunk = planted_impressions(min(CHUNK, b - s), seed, users=100_000, items=20_000, start=s)
            writer = writer or pq.ParquetWriter(out / f"{part}.parquet", chunk.schema)
            writer.write_table(chunk, row_group_size=ROW_GROUP)
        writer.close()
    size = sum(f.stat().st_size for f in out.glob("*.parquet"))
    print(f"wrote {rows:,} rows to {out} ({size / 2**20:.0f} MiB on disk) in {time.perf_counter() - t:.0f}s")


def fit(out: Path, mode: str, threads: int) -> None:
    import torch

    from recembed.options import FitOptions
    from recembed.ranking.ctr_files import load_ctr_file, parquet_bytes
    from recembed.ranking.runs import fit_and_evaluate_ranker

    torch.set_num_threads(threads)
    base_rss = rss_mb()
    t = time.perf_counter()
    ctr, spec = load_ctr_file(out, stream="true" if mode == "stream" else "false")
    load_seconds = time.perf_counter() - t
    run = fit_and_evaluate_ranker("deepfm", ctr, params={"epochs": 1}, out_dir=out / f"run-{mode}",
                                  options=FitOptions(seed=0, show_progress=False, threads=threads), data_spec=spec)
    wall = time.perf_counter() - t
    m = run.metrics
    result = {"mode": mode, "rows": sum(ctr.sizes().values()), "sizes": ctr.sizes(),
              "arrow_mb": round(parquet_bytes(sorted(out.glob("*.parquet"))) / 2**20, 1),
              "disk_mb": round(sum(f.stat().st_size for f in out.glob("*.parquet")) / 2**20, 1),
              "rss_before_data_mb": round(base_rss, 1), "peak_rss_mb": round(rss_mb(), 1),
              "wall_seconds": round(wall, 1), "load_seconds": round(load_seconds, 1),
              "fit_seconds": m["fit_seconds"], "eval_seconds": m["eval_seconds"],
              "train_rows_per_s": round(ctr.sizes()["train"] / m["training"]["seconds_per_epoch"]),
              "valid_auc": round(m["valid"]["auc"], 4), "test_auc": round(m["test"]["auc"], 4),
              "test_logloss": round(m["test"]["logloss"], 4), "test_gauc": round(m["test"]["gauc"], 4),
              "streaming": m.get("streaming"), "threads": threads}
    (out / f"result-{mode}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def report(out: Path, json_path: Path | None) -> None:
    rows, results = [], {}
    for f in sorted(out.glob("*/result-*.json")):
        r = json.loads(f.read_text())
        results[f"{f.parent.name}/{r['mode']}"] = r
        rows.append(f"| {f.parent.name} | {r['mode']} | {r['rows']:,} | {r['arrow_mb']:.0f} | "
                    f"{r['rss_before_data_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['wall_seconds']:.0f} | "
                    f"{r['train_rows_per_s']:,} | {r['valid_auc']:.4f} | {r['test_auc']:.4f} | {r['test_gauc']:.4f} |")
    print("| file | mode | rows | Arrow MiB | RSS before data MiB | peak RSS MiB | wall s | train rows/s | valid AUC | "
          "test AUC | test GAUC |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["write", "stream", "memory", "report"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rows", type=int, default=5_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="report: also write every result to this file")
    a = p.parse_args()
    if a.mode == "write":
        write(a.out, a.rows, a.seed)
    elif a.mode == "report":
        report(a.out, a.json)
    else:
        fit(a.out, a.mode, a.threads)


if __name__ == "__main__":
    sys.exit(main())
