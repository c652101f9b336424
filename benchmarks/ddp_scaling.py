"""[Scale] 1 vs 2 data-parallel ranks (torchrun, gloo) on the same fit: epoch time, wall, peak RSS, test NDCG@10.

    python benchmarks/ddp_scaling.py --data-root ../shared/data [--model bpr] [--epochs 5]

Each configuration is one `recembed fit MODEL --data ml-100k --split PEERS --set epochs=E --set patience=0
--threads 1` process (1 rank) or `torchrun --nproc_per_node 2 -m recembed fit ... --distributed` (2 ranks of one
thread each, so both use the same two cores' worth of threads at most). Results: `benchmarks/ddp_scaling.json` and a
markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], out: Path) -> dict:
    t = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(["/usr/bin/time", "-v", *cmd], check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                   stderr=open(out.with_suffix(".time"), "w"))
    wall = time.perf_counter() - t
    rss = [int(line.split()[-1]) for line in out.with_suffix(".time").read_text().splitlines()
           if "Maximum resident set size" in line]
    history = json.loads((out / "history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall_s": round(wall, 1), "epoch_s": round(sum(h["train_seconds"] for h in history) / len(history), 3),
            "test_ndcg@10": metrics["test"]["ndcg@10"], "peak_rss_mib_one_process": round(max(rss) / 1024, 1),
            "load_average": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--model", default="bpr")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--work", default="benchmarks/out/ddp")
    ap.add_argument("--out", default="benchmarks/ddp_scaling.json")
    args = ap.parse_args()
    split = str(Path(args.data_root) / "ml-100k/splits/random-80-10-10")
    fit = ["fit", args.model, "--data", "ml-100k", "--data-root", args.data_root, "--split", split, "--set",
           f"epochs={args.epochs}", "--set", "patience=0", "--threads", "1", "--no-progress", "--ks", "10"]
    work = ROOT / args.work
    work.mkdir(parents=True, exist_ok=True)
    rows = {}
    rows["1 rank"] = run([sys.executable, "-m", "recembed", *fit, "--out", str(work / "one")], work / "one")
    rows["2 ranks"] = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "recembed",
                           *fit, "--distributed", "--out", str(work / "two")], work / "two")
    (ROOT / args.out).write_text(json.dumps({"model": args.model, "epochs": args.epochs, "rows": rows}, indent=2))
    print("| ranks | epoch s | wall s | test N@10 | peak RSS MiB (largest process) | load avg |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['epoch_s']} | {r['wall_s']} | {r['test_ndcg@10']:.4f} | {r['peak_rss_mib_one_process']} "
              f"| {r['load_average']:.1f} |")


if __name__ == "__main__":
    main()
