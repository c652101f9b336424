"""[Tasks] relevance cut-offs: `recembed cutoff RUN` on ml-100k's PEERS split for a few retrievers.

Fits each retriever with its defaults when missing (`recembed fit MODEL --data ml-100k --split S`), then
`recembed cutoff RUN --candidates 200`; prints the test table (per threshold: mean results, share of users with
none, precision / recall / F1 means over users, and F1 of a fixed top-K and of one global raw-score threshold
with the same mean result count). Results: `benchmarks/cutoff.json`.

    python benchmarks/cutoff.py --data-root ../shared/data [--models ease,bpr,itemknn]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--models", default="ease,bpr,itemknn")
    ap.add_argument("--work", default="benchmarks/out/cutoff")
    args = ap.parse_args()
    split = str(Path(args.data_root) / "ml-100k/splits/random-80-10-10")
    out = {}
    for model in args.models.split(","):
        run = ROOT / args.work / model
        if not (run / "metrics.json").exists():
            subprocess.run([sys.executable, "-m", "recembed.cli", "fit", model, "--data", "ml-100k", "--data-root",
                            args.data_root, "--split", split, "--threads", "1", "--no-progress", "--out", str(run)],
                           check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "recembed.cli", "cutoff", str(run), "--threads", "1"], check=True,
                       cwd=ROOT, stdout=subprocess.DEVNULL)
        out[model] = {**json.loads((run / "cutoff.json").read_text()), "seconds": round(time.perf_counter() - t, 1)}
    (ROOT / "benchmarks/cutoff.json").write_text(json.dumps(out, indent=1))
    print("| retriever | P(rel) ≥ | mean results | users with none | precision | recall | F1 | top-K F1 (K) | "
          "global-score F1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, r in out.items():
        for row in r["rows"]:
            c = row["cutoff"]
            print(f"| {model} | {row['threshold']:.2f} | {c['mean_count']:.1f} | {c['empty_share']:.0%} | "
                  f"{c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {row['top_k']['f1']:.4f} "
                  f"({row['top_k']['k']}) | {row['global_score']['f1']:.4f} |")


if __name__ == "__main__":
    main()
