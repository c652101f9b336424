"""[Scale] Out-of-core scaling: vocabulary + split + one epoch + evaluation for 1M, 3M, 10M interactions.

    python benchmarks/outofcore.py [--sizes 1000000,3000000,10000000] [--users 1000000] [--items 1000000]
                                   [--ranks 1,2] [--eval-users 10000]

For each size: `recembed synth-scale --interactions N --users U --items I` (the catalog is the same for every size,
so the model's tables are too: what may grow with N is only what the pipeline holds of the data), then
`recembed fit bpr --data DIR --stream --set epochs=1 --set valid_sample=E --threads 1` (1 rank) and under
`torchrun --nproc_per_node 2 ... --distributed` (2 ranks), each under /usr/bin/time -v. Recorded: the seconds and
peak RSS after each stage (from RUN/metrics.json `stages`), the process's maximum RSS, test NDCG@10 / Recall@10 on
the E sampled users. Results: benchmarks/outofcore.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], log: Path) -> tuple[float, float]:
    t = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("w") as fh:
        subprocess.run(["/usr/bin/time", "-v", *cmd], check=True, cwd=ROOT, env=env, stdout=fh, stderr=fh)
    rss = max(int(line.split()[-1]) for line in log.read_text().splitlines() if "Maximum resident set size" in line)
    return time.perf_counter() - t, rss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000000,3000000,10000000")
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--eval-users", type=int, default=10_000)
    ap.add_argument("--work", default="benchmarks/out/outofcore")
    ap.add_argument("--out", default="benchmarks/outofcore.json")
    args = ap.parse_args()
    work = ROOT / args.work
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        data = work / f"synth-{n}"
        if not (data / "_SUCCESS.json").is_file():
            gen_s, gen_rss = timed([sys.executable, "-m", "recembed", "synth-scale", "--interactions", str(n),
                                    "--users", str(args.users), "--items", str(args.items), "--no-progress",
                                    "--out", str(data)], work / f"gen-{n}.log")
        else:
            gen_s, gen_rss = float("nan"), float("nan")
        for ranks in (int(r) for r in args.ranks.split(",")):
            run = work / f"run-{n}-{ranks}"
            shutil.rmtree(run, ignore_errors=True)
            fit = ["fit", "bpr", "--data", str(data), "--stream", "--set", "epochs=1", "--set",
                   f"valid_sample={args.eval_users}", "--threads", "1", "--no-progress", "--ks", "10,20",
                   "--out", str(run)]
            cmd = [sys.executable, "-m", "recembed", *fit] if ranks == 1 else \
                [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "-m", "recembed",
                 *fit, "--distributed"]
            wall, rss = timed(cmd, work / f"run-{n}-{ranks}.log")
            m = json.loads((run / "metrics.json").read_text())
            rows.append({"interactions": n, "users": m["users"], "items": m["items"], "ranks": ranks,
                         "generate_s": round(gen_s, 1), "generate_peak_rss_mib": round(gen_rss, 1),
                         "stages": m["stages"], "wall_s": round(wall, 1), "max_rss_mib": round(rss, 1),
                         "epoch_s": m["training"]["seconds_per_epoch"], "test_ndcg@10": m["test"]["ndcg@10"],
                         "test_recall@20": m["test"]["recall@20"], "eval_users": m["evaluated_users"]["test"],
                         "load_average_end": round(os.getloadavg()[0], 2)})
            (ROOT / args.out).write_text(json.dumps(rows, indent=2))
    print("| interactions | ranks | vocab s | split s | epoch s | eval s | wall s | peak RSS MiB (largest process) "
          "| test N@10 | R@20 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["stages"]
        print(f"| {r['interactions']:,} | {r['ranks']} | {s['vocabulary']['seconds']} | {s['split']['seconds']} | "
              f"{r['epoch_s']} | {s['evaluation']['seconds']} | {r['wall_s']} | {r['max_rss_mib']:,} | "
              f"{r['test_ndcg@10']:.4f} | {r['test_recall@20']:.4f} |")


if __name__ == "__main__":
    main()
