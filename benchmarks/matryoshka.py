"""[Compact] Matryoshka embeddings: one model trained once with nested prefix losses, evaluated at every width,
against models trained alone at each width (issue #22 item 1).

For each setup: ``recembed fit MODEL --set embedding_dim=128 --set matryoshka_dims=8,16,32,64,128`` (metrics.json
``matryoshka`` holds every prefix's test / valid metrics, from the same evaluator), then ``recembed fit MODEL --set
embedding_dim=D`` for every D; the plain 128-wide model is also cut to each prefix (what truncating a model
trained without Matryoshka gives). The table: test NDCG@10 (and recall@10) per width, the relative gap
``(matryoshka - alone) / alone`` and the goal (gap >= -2 %). One thread; a plot per setup in docs/img.

    python benchmarks/matryoshka.py --data-root ../shared/data [--only ml100k-bpr,beauty-sasrec]
        [--budget-s 240] [--reuse] [--out benchmarks/matryoshka.json]

Runs are written under ``benchmarks/out/matryoshka/``; ``--reuse`` keeps a finished run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIMS = (8, 16, 32, 64, 128)
SETUPS = {  # name -> (model, data, split (relative to the data root when it has a "/"), --set values, label)
    "ml100k-bpr": ("bpr", "ml-100k", "ml-100k/splits/random-80-10-10", {}, "BPR on ml-100k (PEERS 80/10/10)"),
    "ml100k-sasrec": ("sasrec", "ml-100k", "loo", {"patience": "20", "epochs": "1000", "budget": True},
                      "SASRec on ml-100k (leave-one-out by time)"),
    "beautycf-bpr": ("bpr", "amazon-beauty-cf", "given", {"budget": True}, "BPR on amazon-beauty-cf (given split)"),
    "beauty-sasrec": ("sasrec", "amazon-seq", None, {"dropout": "0.5", "budget": True},
                      "SASRec on amazon-seq Beauty (leave-one-out, IDs only)"),
}


def cli(args: list[str]) -> None:
    from recembed.cli.main import cli as group

    group.main(args, standalone_mode=False)


def fit(out: Path, model: str, data: str, split: str | None, sets: dict[str, str], data_root: str,
        reuse: bool) -> dict:
    if not (reuse and (out / "metrics.json").exists()):
        args = ["fit", model, "--data", data, "--data-root", data_root, "--out", str(out), "--threads", "1",
                "--no-progress", "--ks", "5,10,20"]
        if split:
            args += ["--split", split]
        for k, v in sets.items():
            args += ["--set", f"{k}={v}"]
        cli(args)
    return json.loads((out / "metrics.json").read_text())


def cut_plain(run_dir: Path) -> dict[str, dict]:
    """The plain (non-Matryoshka) 128-wide run cut to every width (same evaluator)."""
    from recembed.compact.matryoshka import evaluate_prefixes
    from recembed.runs import load_run

    run = load_run(run_dir)
    ks = tuple(run.config.get("ks", (5, 10, 20)))
    return evaluate_prefixes(run.model, run.split, dims=list(DIMS), ks=ks, cold_users=run.config.get("cold_users",
                                                                                                       "skip"))


def plot(name: str, label: str, rows: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    dims = [r["dim"] for r in rows]
    ax.plot(dims, [r["matryoshka_ndcg10"] for r in rows], "o-", label="Matryoshka (one model, prefix)")
    ax.plot(dims, [r["alone_ndcg10"] for r in rows], "s--", label="trained alone at the width")
    ax.plot(dims, [r["plain128_cut_ndcg10"] for r in rows], "^:", label="plain 128-d model, prefix")
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("embedding width (prefix)")
    ax.set_ylabel("test NDCG@10")
    ax.set_title(label, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = ROOT / "docs" / "img" / f"matryoshka_{name}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=os.environ.get("RECEMBED_DATA_ROOT", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--only", default="ml100k-bpr")
    ap.add_argument("--budget-s", type=float, default=240.0, help="time_budget_s of each fit in budgeted setups")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "matryoshka.json"))
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    work = ROOT / "benchmarks" / "out" / "matryoshka"
    results: dict[str, dict] = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    for name in args.only.split(","):
        model, data, split, sets, label = SETUPS[name]
        sets = dict(sets)
        if sets.pop("budget", False):
            sets["time_budget_s"] = str(args.budget_s)
        if split and "/" in split:
            split = str(Path(args.data_root) / split)
        t = time.perf_counter()
        mrl = fit(work / name / "matryoshka", model, data, split, {**sets, "embedding_dim": "128",
                  "matryoshka_dims": ",".join(map(str, DIMS))}, args.data_root, args.reuse)
        mrl_fit = mrl["fit_seconds"]
        alone = {d: fit(work / name / f"alone-{d}", model, data, split, {**sets, "embedding_dim": str(d)},
                        args.data_root, args.reuse) for d in DIMS}
        plain_cut = cut_plain(work / name / "alone-128")
        rows = []
        for d in DIMS:
            m, a = mrl["matryoshka"][str(d)]["test"], alone[d]["test"]
            gap = (m["ndcg@10"] - a["ndcg@10"]) / a["ndcg@10"]
            rows.append({"dim": d, "matryoshka_ndcg10": m["ndcg@10"], "alone_ndcg10": a["ndcg@10"],
                         "matryoshka_recall10": m["recall@10"], "alone_recall10": a["recall@10"],
                         "plain128_cut_ndcg10": plain_cut[str(d)]["test"]["ndcg@10"],
                         "relative_gap_ndcg10": gap, "goal_met": gap >= -0.02,
                         "alone_fit_seconds": alone[d]["fit_seconds"],
                         "alone_epochs": alone[d].get("training", {}).get("epochs_run"),
                         "alone_stopped_by_budget": alone[d].get("training", {}).get("stopped_by_budget")})
        results[name] = {"label": label, "model": model, "data": data, "split": split or "default (given)",
                         "sets": sets, "matryoshka_fit_seconds": mrl_fit,
                         "matryoshka_epochs": mrl.get("training", {}).get("epochs_run"),
                         "matryoshka_stopped_by_budget": mrl.get("training", {}).get("stopped_by_budget"),
                         "rows": rows, "plot": str(plot(name, label, rows).relative_to(ROOT)),
                         "wall_seconds": round(time.perf_counter() - t, 1)}
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"{name}: Matryoshka fit {mrl_fit:.0f}s")
        for r in rows:
            print(f"  d={r['dim']:>3}  matryoshka {r['matryoshka_ndcg10']:.4f}  alone {r['alone_ndcg10']:.4f}  "
                  f"gap {100 * r['relative_gap_ndcg10']:+.1f}%  plain-128 cut {r['plain128_cut_ndcg10']:.4f}")


if __name__ == "__main__":
    main()
