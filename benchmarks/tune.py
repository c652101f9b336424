"""[Tune] `recembed tune` against the hand-tuned figures of RESULTS.md and RecBole's, on ml-100k.

For each model: one `recembed tune MODEL --data ml-100k --split S --time-budget B --jobs J --threads 1` process
(TPE, median pruning, the declared search space, validation NDCG@10 as the objective), then the best trial's
re-fit in `DIR/best/metrics.json` -- the test part, scored once. The references are RESULTS.md's best hand-tuned
rows and RecBole 1.2.1's (same split, measured in earlier sessions: "[Train] ml-100k" and "[Sequential] ml-100k").

    python benchmarks/tune.py --data-root ../shared/data [--models bpr,lightgcn,multvae,sasrec] [--budget 600]

Results: `benchmarks/tune.json` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
PEERS_SPLIT = "ml-100k/splits/random-80-10-10"
#: model -> (split, hand-tuned test N@10 in RESULTS.md and its setting, RecBole's test N@10)
REFERENCE = {
    "bpr": ("peers", 0.2975, "lr 5e-3, batch 2048, reg 0.015 (a 16-run sweep)", 0.2931),
    "lightgcn": ("peers", 0.3082, "RecBole's: 2 layers, reg 1e-5, lr 1e-3", 0.3050),
    "multvae": ("peers", 0.2983, "latent 64", 0.3001),
    "sasrec": ("loo", 0.1161, "defaults, 300 s budget, 2 threads", 0.0322),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--models", default="bpr,lightgcn,multvae,sasrec")
    ap.add_argument("--budget", type=int, default=600, help="seconds of search per model")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--trials", type=int, default=200, help="a cap; the budget normally ends the search first")
    ap.add_argument("--work", default="benchmarks/out/tune")
    ap.add_argument("--out", default="benchmarks/tune.json")
    args = ap.parse_args()
    rows = []
    for model in args.models.split(","):
        split_kind, hand, hand_setting, recbole = REFERENCE[model]
        split = str(Path(args.data_root) / PEERS_SPLIT) if split_kind == "peers" else "loo"
        out = ROOT / args.work / model
        cmd = [sys.executable, "-m", "recembed.cli", "tune", model, "--data", "ml-100k", "--data-root",
               args.data_root, "--split", split, "--trials", str(args.trials), "--time-budget", str(args.budget),
               "--jobs", str(args.jobs), "--threads", "1", "--no-progress", "--out", str(out)]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        best = json.loads((out / "best_config.json").read_text())
        test = json.loads((out / "best" / "metrics.json").read_text())["test"]
        trials = pq.read_table(out / "trials.parquet").to_pylist()
        states = [r["state"] for r in trials]
        rows.append({"model": model, "split": split_kind, "wall_s": round(wall, 1), "budget_s": args.budget,
                     "jobs": args.jobs, "trials": len(trials), "complete": states.count("complete"),
                     "pruned": states.count("pruned"), "best_params": best["params"],
                     "search_valid_ndcg@10": best["search_valid"], "test_ndcg@10": test["ndcg@10"],
                     "test_recall@10": test["recall@10"], "hand_tuned": hand, "hand_setting": hand_setting,
                     "recbole": recbole, "fit_command": best.get("fit_command")})
        r = rows[-1]
        print(f"{model}: test N@10 {r['test_ndcg@10']:.4f} (hand {hand:.4f}, RecBole {recbole:.4f}), "
              f"{r['trials']} trials in {wall:.0f} s", flush=True)
        (ROOT / args.out).write_text(json.dumps({"rows": rows}, indent=1))
    print("\n| model | split | trials (complete / pruned) | wall s | best valid N@10 | tuned test N@10 | hand-tuned "
          "(RESULTS.md) | goal ≥ hand − 0.003 | RecBole | goal ≥ RecBole | best parameters |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["test_ndcg@10"]
        params = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r["best_params"].items())
        print(f"| {r['model']} | {r['split']} | {r['trials']} ({r['complete']} / {r['pruned']}) | {r['wall_s']:.0f} | "
              f"{r['search_valid_ndcg@10']:.4f} | {t:.4f} | {r['hand_tuned']:.4f} ({r['hand_setting']}) | "
              f"{'yes' if t >= r['hand_tuned'] - 0.003 else 'no'} | {r['recbole']:.4f} | "
              f"{'yes' if t >= r['recbole'] else 'no'} | {params} |")


if __name__ == "__main__":
    main()
