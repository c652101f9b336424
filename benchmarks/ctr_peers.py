"""[Rank] recembed's rankers beside FuxiCTR (benchmarks/peers/fuxictr_ctr.py) on the identical CTR splits.

    PYTHONPATH=src python benchmarks/ctr_peers.py --threads 1                      # our rankers, defaults
    PYTHONPATH=src python benchmarks/ctr_peers.py --runs ml-100k-ctr:deepfm --tag fuxictr-config \\
        --set embedding_dim=40 batch_size=10000 min_steps=0 hidden_units=300,300,300   # FuxiCTR's DeepFM config
    PYTHONPATH=src python benchmarks/ctr_peers.py --check-preds /tmp/fuxictr-work/preds --table

Each fit is its own ``recembed fit RANKER --data DATASET --threads N`` process (``OMP_NUM_THREADS=N``); the run
directories go to ``--work-dir``; ``--time-cap-seconds`` (default 900, as the peer's) is passed as
``time_budget_s``; the metrics (test / valid AUC, logloss, GAUC, epochs, seconds per epoch with
and without validation, fit and process wall time, peak RSS) are merged into ``--out`` (one key per run:
``dataset/ranker[@tag]``). ``--check-preds DIR`` recomputes recembed's AUC / logloss / GAUC on the test
predictions FuxiCTR saved (``DIR/<dataset>__<Model>[@tag].npz``: test.csv's row order, checked against its labels
and users) and records how far they are from the values FuxiCTR reported (``metric_check`` in ``--out``): the two implementations read the same
numbers. ``--table`` prints the side-by-side markdown table of ``--out`` and ``--fuxictr`` (the peer's JSON).
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
sys.path.insert(0, str(ROOT / "src"))

DEFAULT_RUNS = ["ml-100k-ctr:lr,fm,deepfm,dcnv2,autoint", "amazon-seq-din:deepfm,din"]


def merge(out: Path, results: dict) -> None:
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.update(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(previous, indent=2) + "\n")


def fit(dataset: str, model: str, sets: list[str], args: argparse.Namespace, key: str) -> dict:
    run_dir = args.work_dir / key.replace("/", "__")
    cmd = [sys.executable, "-m", "recembed.cli", "fit", model, "--data", dataset, "--data-root", args.data_root,
           "--threads", str(args.threads), "--no-progress", "--out", str(run_dir)]
    if args.time_cap_seconds and not any(s.startswith("time_budget_s=") for s in sets):
        sets = [*sets, f"time_budget_s={args.time_cap_seconds:g}"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONPATH": str(ROOT / "src")}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return {"error": f"exit code {proc.returncode}", "stderr": proc.stderr[-2000:], "wall_s": round(wall, 2)}
    m = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    cfg = json.loads((run_dir / "config.json").read_text())
    tr = m["training"]
    pick = ("auc", "logloss", "gauc", "gauc_users", "ece")
    return {
        "dataset": dataset, "model": model, "tag": args.tag, "sets": sets,
        "test": {k: m["test"][k] for k in pick}, "valid": {k: m["valid"][k] for k in pick},
        "epochs": tr["epochs_run"], "best_epoch": tr["best_epoch"], "stopped_early": tr["stopped_early"],
        "stopped_by_budget": tr["stopped_by_budget"],
        "seconds_per_epoch": round(tr["seconds_per_epoch"], 3),
        "seconds_per_epoch_with_valid": round(history[-1]["elapsed_seconds"] / len(history), 3),
        "fit_s": m["fit_seconds"], "eval_s": m["eval_seconds"], "wall_s": round(wall, 2),
        "peak_rss_mib": m["peak_rss_mb"], "parameters": m["parameters"], "params": cfg["params"],
        "auto_resolved": cfg.get("auto_resolved"), "threads": args.threads,
        "history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()} for h in history],
        "command": "recembed " + " ".join(cmd[3:]),
    }


def check_preds(pred_dir: Path, fuxictr: dict, data_root: str) -> dict:
    import numpy as np

    from recembed.ranking.datasets import load_ctr
    from recembed.ranking.metrics import ctr_metrics

    out, cache = {}, {}
    for key, r in fuxictr.items():
        path = pred_dir / (key.replace("/", "__") + ".npz")
        if not path.exists():
            continue
        test = cache.setdefault(r["dataset"], load_ctr(r["dataset"], data_root).test)
        saved = np.load(path, allow_pickle=False)
        p = saved["pred"]
        aligned = (len(p) == len(test) and np.array_equal(saved["label"], test.labels)
                   and np.array_equal(saved["user"], np.asarray(test.users).astype(str)))
        if not aligned:
            out[key] = {"error": "the saved rows are not test.csv's (labels / users differ)"}
            continue
        ours = ctr_metrics(test.labels, p, test.users)
        theirs = r["test"]
        diff = {"auc": abs(ours["auc"] - theirs["AUC"]), "logloss": abs(ours["logloss"] - theirs["logloss"]),
                "gauc": abs(ours["gauc"] - theirs["gAUC"])}
        out[key] = {"recembed": {k: ours[k] for k in ("auc", "logloss", "gauc")},
                    "fuxictr": {"auc": theirs["AUC"], "logloss": theirs["logloss"], "gauc": theirs["gAUC"]},
                    "abs_diff": diff, "rows_aligned": True,
                    "probs_below_1e-7_or_above_1-1e-7": int(((p < 1e-7) | (p > 1 - 1e-7)).sum())}
    return out


def table(ours: dict, peer: dict) -> str:
    rows = ["| dataset | library | model | config | test AUC | test logloss | test gAUC | epochs (best) "
            "| s/epoch train | s/epoch + valid | fit s | peak RSS MiB |", "|" + "---|" * 12]
    for key, r in sorted(ours.items()):
        if key == "metric_check" or "test" not in r or "auc" not in r.get("test", {}):
            continue
        rows.append(f"| {r['dataset']} | recembed | {r['model']} | {r['tag'] or 'default'} | {r['test']['auc']:.4f} "
                    f"| {r['test']['logloss']:.4f} | {r['test']['gauc']:.4f} | {r['epochs']} ({r['best_epoch']}) "
                    f"| {r['seconds_per_epoch']:.2f} | {r['seconds_per_epoch_with_valid']:.2f} | {r['fit_s']:.0f} "
                    f"| {r['peak_rss_mib']:.0f} |")
    for key, r in sorted(peer.items()):
        t = r["test"]
        rows.append(f"| {r['dataset']} | FuxiCTR | {r['model']} | {r.get('tag') or 'default'}"
                    f"{' (capped)' if r.get('capped') else ''} | {t['AUC']:.4f} | {t['logloss']:.4f} "
                    f"| {t['gAUC']:.4f} | {r['epochs']} ({r['best_epoch']}) | {r['seconds_per_epoch']:.2f} "
                    f"| {r['seconds_per_epoch_with_valid']:.2f} | {r['fit_s']:.0f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="*", default=None, help=f"DATASET:RANKER,... (default {DEFAULT_RUNS})")
    ap.add_argument("--set", nargs="*", default=[], help="key=value hyperparameters of every run")
    ap.add_argument("--tag", default="", help="suffix of the result keys (runs with --set)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-cap-seconds", type=float, default=900.0,
                    help="time_budget_s of every fit (recembed stops before an epoch that would pass it)")
    ap.add_argument("--data-root", default=os.environ.get("RECEMBED_DATA_ROOT", "/work/shared/data"))
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/ctr-ours"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "ctr_peers.json")
    ap.add_argument("--fuxictr", type=Path, default=ROOT / "benchmarks" / "peers" / "fuxictr_results.json")
    ap.add_argument("--check-preds", type=Path, default=None, help="FuxiCTR's saved test predictions")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args(argv)
    runs = args.runs if args.runs is not None else ([] if (args.check_preds or args.table) else DEFAULT_RUNS)
    for spec in runs:
        dataset, models = spec.split(":")
        for model in models.split(","):
            key = f"{dataset}/{model}" + (f"@{args.tag}" if args.tag else "")
            print(f"== {key}", flush=True)
            r = fit(dataset, model, args.set, args, key)
            merge(args.out, {key: r})
            if "error" in r:
                print(f"{key}: {r['error']}\n{r['stderr']}", flush=True)
            else:
                print(f"{key}: test AUC {r['test']['auc']:.4f} logloss {r['test']['logloss']:.4f} "
                      f"gAUC {r['test']['gauc']:.4f}, {r['epochs']} epochs, {r['seconds_per_epoch']:.2f} s/epoch, "
                      f"wall {r['wall_s']:.0f} s", flush=True)
    peer = json.loads(args.fuxictr.read_text()) if args.fuxictr.exists() else {}
    if args.check_preds:
        checks = check_preds(args.check_preds, peer, args.data_root)
        merge(args.out, {"metric_check": checks})
        for key, c in checks.items():
            print(f"{key}: {c}")
    if args.table:
        ours = json.loads(args.out.read_text()) if args.out.exists() else {}
        print(table(ours, peer))


if __name__ == "__main__":
    main()
