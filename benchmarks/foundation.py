"""[Foundation] benchmarks: closed-form baselines on ml-100k (PEERS.md split) and gowalla (LightGCN split).

Each fit runs as its own `recembed fit` process, so wall time and peak RSS are per run. The evaluator
speed is measured in-process as the median of repeated full-ranking evaluations of the test set
(the same quantity benchmarks/peers/recbole_eval_timing.py measures for RecBole).

    python benchmarks/foundation.py --data-root ../shared/data --out benchmarks/out/foundation.json
    python benchmarks/foundation.py --only gowalla --with-ease-gowalla   # also EASE on 41k items (~15 min)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_cli(model: str, data: str, split: str | None, out: Path, data_root: str, sets: list[str],
            extra: list[str] | None = None) -> dict:
    cmd = [sys.executable, "-m", "recembed.cli", "fit", model, "--data", data, "--data-root", data_root,
           "--out", str(out), "--no-progress", "--ks", "10,20", *(extra or [])]
    if split:
        cmd += ["--split", split]
    for s in sets:
        cmd += ["--set", s]
    return run_command(cmd, out)


def run_command(cmd: list[str], out: Path) -> dict:
    """Run a `python -m recembed.cli ...` command that writes OUT/metrics.json; its metrics plus wall time and
    command (a failure is recorded, not raised)."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:  # recorded, not fatal: the other runs still count
        return {"error": f"exit code {proc.returncode}", "stderr": proc.stderr[-2000:],
                "command": "recembed " + " ".join(cmd[3:]), "process_wall_seconds": round(wall, 2), "test": {}}
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["process_wall_seconds"] = round(wall, 2)
    metrics["command"] = "recembed " + " ".join(cmd[3:])
    return metrics


def merge_results(out: str | Path, results: dict) -> None:
    """Merge ``results`` into the JSON file ``out`` (keys of earlier runs not re-run are kept)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.update(results)
    out.write_text(json.dumps(previous, indent=2) + "\n")


def eval_speed(data_root: str, repeats: int = 7) -> dict:
    from recembed.data.catalog import load
    from recembed.data.splits import make_split
    from recembed.models.registry import model_class
    from recembed.runs import evaluate_split

    ds = load("ml-100k", root=data_root)
    split = make_split(ds, str(Path(data_root) / "ml-100k" / "splits" / "random-80-10-10"))
    out = {}
    for name in ("pop", "itemknn", "ease"):
        model = model_class(name)().fit(split.train)
        evaluate_split(model, split, "test", ks=(10, 20))  # warm-up (first-call imports)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            evaluate_split(model, split, "test", ks=(10, 20))
            times.append(time.perf_counter() - t)
        out[name] = {"median_s": float(np.median(times)), "all_s": [round(x, 4) for x in times]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "foundation.json"))
    ap.add_argument("--only", choices=["ml-100k", "gowalla", "eval-speed"], default=None)
    ap.add_argument("--with-ease-gowalla", action="store_true")
    args = ap.parse_args()
    runs_dir = Path(args.out).parent / "runs"
    results: dict = {}
    if args.only in (None, "ml-100k"):
        split = str(Path(args.data_root) / "ml-100k" / "splits" / "random-80-10-10")
        for model in ("pop", "itemknn", "ease", "gfcf", "bspm"):
            results[f"ml-100k/{model}"] = run_cli(model, "ml-100k", split, runs_dir / f"ml100k-{model}",
                                                  args.data_root, [])
            print(model, {k: round(v, 4) for k, v in results[f"ml-100k/{model}"]["test"].items()
                          if k in ("recall@10", "ndcg@10", "recall@20", "ndcg@20")}, flush=True)
    if args.only in (None, "eval-speed"):
        results["eval_speed_ml100k"] = eval_speed(args.data_root)
        print(results["eval_speed_ml100k"], flush=True)
    if args.only in (None, "gowalla"):
        configs = [("gfcf", []), ("gfcf", ["svd_solver=randomized"]), ("itemknn", [])]
        if args.with_ease_gowalla:
            configs.append(("ease", ["l2=500"]))
        for model, sets in configs:
            key = f"gowalla/{model}" + ("/" + ",".join(sets) if sets else "")
            results[key] = run_cli(model, "gowalla", "given:merge-valid",
                                   runs_dir / ("gowalla-" + model + ("-" + "-".join(sets) if sets else "")),
                                   args.data_root, sets)
            r = results[key]
            headline = {k: round(v, 4) for k, v in r["test"].items() if k in ("recall@20", "ndcg@20")}
            print(key, r.get("error", ""), headline,
                  "fit", r.get("fit_seconds"), "eval", r.get("eval_seconds"), "rss", r.get("peak_rss_mb"), flush=True)
    merge_results(args.out, results)


if __name__ == "__main__":
    main()
