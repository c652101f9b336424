"""[Scale] TorchRec-sharded tables: a DeepFM whose item table is larger than one rank's table-memory share trains
row-wise sharded on 2 ranks, and scores as the unsharded model does.

    python benchmarks/torchrec_shard.py                       # the RESULTS.md run (~10 min on 2 contended cores)
    python benchmarks/torchrec_shard.py --items 20000 --users 2000 --epochs 1      # a quick look

The catalog is the generated one (``recembed.data.synthetic``: planted topics, Zipf popularity within a topic) with
``--items`` items, written as an interactions CSV; DeepFM learns from it with one sampled non-click per interaction (``--negatives 1``), ``embedding_dim=--dim``, plain SGD (``optimizer=sgd``, the
optimizer FBGEMM's CPU kernels share with torch exactly; docs/scale.md). The runs, all with the same seed and
global batch:

* ``unsharded``: one process, the plain model (every table on the one rank);
* ``row:CAP``: ``torchrun --nproc_per_node 2 ... --distributed --shard row:CAP`` where CAP (MiB) is
  ``--cap-share`` (0.95) of the item table's bytes: no rank may hold the item table whole;
* ``table:CAP``: the same cap, table-wise: refused (exit code 2, the planner finds no plan), which is the point;
* ``table``: table-wise without a cap (each table whole on one rank), for the time.

Reported per run: each rank's sharded table bytes (the line ``--shard ...: rank r of 2 holds ...`` every rank
prints), wall time of the command, fit seconds, valid / test AUC and logloss. Results: ``--out`` (JSON) and a
markdown table on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOLDS = re.compile(r"--shard (\S+): rank (\d+) of (\d+) holds ([\d,]+) of ([\d,]+) table bytes")


def write_catalog(path: Path, users: int, items: int, events: float, popularity: float, noise: float, seed: int
                  ) -> dict:
    from recembed.data.synthetic import SyntheticConfig, generate

    ds = generate(SyntheticConfig(num_users=users, num_items=items, mean_events=events,
                                  popularity_exponent=popularity, noise=noise, num_topics=16, seed=seed))
    inter = ds.interactions
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "time"])
        for u, i, t in zip(inter.user_idx, inter.item_idx, inter.timestamp):
            w.writerow([f"u{u}", f"i{i}", int(t)])
    return {"users": int(len(set(inter.user_idx.tolist()))), "items": int(len(set(inter.item_idx.tolist()))),
            "interactions": len(inter)}


def run(cmd: list[str], cwd: Path, timeout: int) -> tuple[int, str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=6000)
    ap.add_argument("--items", type=int, default=60_000)
    ap.add_argument("--events", type=float, default=20.0, help="mean events per user")
    ap.add_argument("--popularity", type=float, default=0.9, help="Zipf exponent of popularity within a topic")
    ap.add_argument("--noise", type=float, default=0.05, help="share of events drawn uniformly from the catalog")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1.0)
    ap.add_argument("--negatives", type=int, default=1)
    ap.add_argument("--cap-share", type=float, default=0.95, help="per-rank cap as a share of the item table")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "torchrec_shard")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "torchrec_shard.json")
    ap.add_argument("--timeout", type=int, default=1800)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "interactions.csv"
    catalog = write_catalog(data, args.users, args.items, args.events, args.popularity, args.noise, seed=7)
    item_bytes = (catalog["items"] + 2) * args.dim * 4  # the vocabulary's rows (+ padding and OOV), float32
    cap_mb = round(args.cap_share * item_bytes / 2**20, 2)
    print(f"catalog {catalog}; item table ~{item_bytes / 2**20:.1f} MiB; per-rank cap {cap_mb} MiB", file=sys.stderr)
    fit = [sys.executable, "-m", "recembed", "fit", "deepfm", "--data", str(data), "--columns",
           "user=user,item=item,time=time", "--negatives", str(args.negatives), "--no-progress", "--threads", "1",
           "--seed", str(args.seed), "--set", f"epochs={args.epochs}", "--set", "patience=0", "--set",
           "optimizer=sgd", "--set", f"learning_rate={args.lr}", "--set", f"embedding_dim={args.dim}"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(29500 + os.getpid() % 1000)]
    runs = {"unsharded": [*fit[1:]], f"row:{cap_mb:g}": [*fit[1:], "--distributed", "--shard", f"row:{cap_mb:g}"],
            f"table:{cap_mb:g}": [*fit[1:], "--distributed", "--shard", f"table:{cap_mb:g}"],
            "table": [*fit[1:], "--distributed", "--shard", "table"]}
    rows = []
    for name, cmd in runs.items():
        out = args.work / name.replace(":", "_")
        full = ([sys.executable, *cmd] if name == "unsharded" else [*torchrun, *cmd]) + ["--out", str(out)]
        code, log, wall = run(full, ROOT, args.timeout)
        row = {"run": name, "exit": code, "wall_seconds": round(wall, 1), "ranks": 1 if name == "unsharded" else 2}
        holds = sorted({(int(r), int(b.replace(",", "")), int(t.replace(",", ""))) for _, r, _, b, t in
                        HOLDS.findall(log)})
        if holds:
            row["rank_table_bytes"] = [b for _, b, _ in holds]
            row["table_bytes"] = holds[0][2]
        if code == 0:
            m = json.loads((out / "metrics.json").read_text())
            row.update({"fit_seconds": m["fit_seconds"], "valid_auc": m["valid"]["auc"], "test_auc": m["test"]["auc"],
                        "test_logloss": m["test"]["logloss"], "embedding_parameters": m["embedding_parameters"]})
        else:
            said = [ln for ln in log.splitlines() if "--shard" in ln and "plan" in ln]
            row["error"] = (said[0] if said else log.strip().splitlines()[-1])[:400]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    result = {"catalog": catalog, "dim": args.dim, "epochs": args.epochs, "negatives": args.negatives,
              "learning_rate": args.lr, "cap_mb": cap_mb, "item_table_bytes": item_bytes, "runs": rows,
              "torch": _version("torch"), "torchrec": _version("torchrec"), "fbgemm_gpu_cpu": _version("fbgemm-gpu-cpu")}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("| run | ranks | exit | per-rank table MiB | wall s | fit s | valid AUC | test AUC | test logloss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mib = " / ".join(f"{b / 2**20:.1f}" for b in r.get("rank_table_bytes", [])) or (
            f"{r['embedding_parameters'] * 4 / 2**20:.1f} (all)" if "embedding_parameters" in r else "-")
        cells = [f"{r[k]:.4f}" if k in r else "-" for k in ("valid_auc", "test_auc", "test_logloss")]
        print(f"| {r['run']} | {r['ranks']} | {r['exit']} | {mib} | {r['wall_seconds']} | {r.get('fit_seconds', '-')} | "
              + " | ".join(cells) + " |")


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
