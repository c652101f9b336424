"""[Tune] `recembed tune` vs RecBole's HyperTuning side by side: best validation NDCG@10 reached per minute of search.

    python benchmarks/tune_vs_recbole.py --ours benchmarks/out/tune/bpr-vs-recbole \
        --recbole benchmarks/peers/recbole_hyper_bpr.json --out docs/img/tune_vs_recbole.png

Both searches: MF-BPR on the ml-100k PEERS split, validation NDCG@10 as the objective, the same space (learning rate
log-uniform on [1e-4, 1e-2], embedding size in {32, 64, 128}; recembed with `--set reg_weight=0`, RecBole's BPR
having no L2 term), the same 600-second budget, one worker with one thread each, run at the same time on the 2-core
machine. Ours: a trial's finish time is `started + seconds` from `trials.parquet` (pruned trials count at the epoch
they stopped); RecBole's: `finished_s` per trial from the peer script. Writes the plot and prints a table of
best-so-far at 1, 2, 5 and 10 minutes.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq


def ours_curve(study: Path) -> list[tuple[float, float]]:
    rows = [r for r in pq.read_table(study / "trials.parquet").to_pylist() if r["value"] is not None]
    t0 = min(datetime.fromisoformat(r["started"]) for r in rows)
    done = sorted(((datetime.fromisoformat(r["started"]) - t0).total_seconds() + r["seconds"], r["value"])
                  for r in rows)
    return best_so_far(done)


def recbole_curve(path: Path) -> list[tuple[float, float]]:
    data = json.loads(path.read_text())
    return best_so_far(sorted((r["finished_s"], r["valid_ndcg@10"]) for r in data["trials"]))


def best_so_far(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out, best = [], float("-inf")
    for t, v in points:
        best = max(best, v)
        out.append((t, best))
    return out


def at(curve: list[tuple[float, float]], seconds: float) -> float | None:
    vals = [v for t, v in curve if t <= seconds]
    return vals[-1] if vals else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ours", type=Path, required=True)
    ap.add_argument("--recbole", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/img/tune_vs_recbole.png"))
    args = ap.parse_args()
    curves = {"recembed tune (TPE + median pruning)": ours_curve(args.ours),
              "RecBole HyperTuning (hyperopt TPE)": recbole_curve(args.recbole)}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        ax.step([t / 60 for t, _ in curve], [v for _, v in curve], where="post", label=name, marker="o", ms=3)
    ax.set_xlabel("minutes of search")
    ax.set_ylabel("best validation NDCG@10 so far")
    ax.set_title("BPR on ml-100k (PEERS split), same space and budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print("| search | trials | best at 1 min | 2 min | 5 min | 10 min |")
    print("|---|---|---|---|---|---|")
    for name, curve in curves.items():
        cells = [at(curve, m * 60) for m in (1, 2, 5, 10)]
        print(f"| {name} | {len(curve)} | " + " | ".join("—" if c is None else f"{c:.4f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
