"""[Sequential] benchmarks: next-item models on leave-one-out splits, full ranking (seen items masked).
Every fit is its own `recembed fit` process with `--threads 2`.

    python benchmarks/sequential.py --only beauty        # amazon-seq (S3-Rec Beauty), leave-one-out
    python benchmarks/sequential.py --only scientific    # ID vs text vs text + ID, warm and held-out items
    python benchmarks/sequential.py --only ml-100k       # SASRec on ml-100k loo under RecBole's budget
    python benchmarks/sequential.py --only beauty --models gru4rec   # a subset
    python benchmarks/sequential.py --only scientific --match patience=30   # runs whose key has this text

Results are merged into --out (JSON, one key per run); RESULTS.md quotes them with these commands. The RecBole
side of the ml-100k comparison is benchmarks/peers/recbole_seq_timing.py (its own venv).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from foundation import ROOT, merge_results, run_cli

EARLY = ["patience=10"]
BEAUTY = [
    ("pop", []),
    ("sasrec", ["dropout=0.5", "time_budget_s=1500", *EARLY]),
    ("sasrec", ["dropout=0.5", "num_heads=2", "batch_size=128", "time_budget_s=1140", "patience=20"]),
    ("gru4rec", ["time_budget_s=600", *EARLY]),
    ("bert4rec", ["mask_prob=0.6", "time_budget_s=900", *EARLY]),  # the paper's Beauty masking rate
]
SCI = ["features=text_feat", "time_budget_s=300", *EARLY]  # the dataset's 512-d text vectors
SCIENTIFIC = [
    ("pop", []),
    ("sasrec", ["dropout=0.5", "time_budget_s=300", *EARLY]),
    ("unisrec", ["use_id=false", *SCI]),
    ("unisrec", SCI),
    ("unisrec", [*SCI, "patience=30"]),  # text + ID learns slowly: patience 10 stopped it at epoch 23
]
ML100K_BUDGET = 300  # seconds of training + validation, the same cap the RecBole run gets


def _show(key: str, r: dict) -> None:
    pick = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
    test = {k: round(v, 4) for k, v in r.get("test", {}).items() if k in pick}
    cold = {k: round(v, 4) for k, v in r.get("test_cold", {}).items() if k in ("recall@10", "ndcg@10")}
    sl = r.get("test_slices", {}).get("cold_items", {})
    tr = r.get("training", {})
    print(key, r.get("error", ""), "test", test, "cold-only", cold, "cold slice", sl, "fit", r.get("fit_seconds"),
          "epochs", tr.get("epochs_run"), "best", tr.get("best_epoch"), "rss", r.get("peak_rss_mb"), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "sequential.json"))
    ap.add_argument("--only", choices=["beauty", "scientific", "ml-100k"], required=True)
    ap.add_argument("--models", default=None, help="Comma-separated subset of the section's models.")
    ap.add_argument("--match", default=None, help="Only the runs whose key contains this text.")
    args = ap.parse_args()
    runs_dir = Path(args.out).parent / "runs"
    wanted = set(args.models.split(",")) if args.models else None
    extra = ["--threads", "2", "--ks", "5,10,20"]
    results: dict = {}

    def run(prefix: str, model: str, data: str, split: str | None, sets: list[str]) -> None:
        shown = [s for s in sets if s not in EARLY and not s.startswith("time_budget")]
        shown = [s for s in shown if s != "patience=10"] if "patience=30" in shown else shown
        key = f"{prefix}/{model}" + ("/" + ",".join(shown) if shown else "")
        if args.match and args.match not in key:
            return
        results[key] = run_cli(model, data, split, runs_dir / key.replace("/", "-").replace("=", ""),
                               args.data_root, sets, extra)
        _show(key, results[key])

    if args.only == "beauty":
        for model, sets in BEAUTY:
            if not wanted or model in wanted:
                run("beauty", model, "amazon-seq", None, sets)
    elif args.only == "scientific":
        for split in ("given", "drop-items:0.1"):
            for model, sets in SCIENTIFIC:
                if not wanted or model in wanted:
                    run(f"scientific/{split}", model, "scientific", split, sets)
    else:
        run("ml-100k-loo", "sasrec", "ml-100k", "loo", [f"time_budget_s={ML100K_BUDGET}", "patience=0",
                                                         "epochs=1000"])
    merge_results(args.out, results)


if __name__ == "__main__":
    main()
