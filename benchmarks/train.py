"""[Train] benchmarks: the trainable models on ml-100k (PEERS.md split), gowalla (LightGCN split) and
amazon-beauty-cf (given split). Every fit is its own `recembed fit` process with `--threads 1` (see
RESULTS.md: torch's 2 OpenMP threads are 10-50x slower on this 2-core machine under any other load), so
wall time and peak RSS are per run.

    python benchmarks/train.py --only ml-100k
    python benchmarks/train.py --only gowalla-best      # sampled-softmax LightGCN under a 45-minute budget
    python benchmarks/train.py --only gowalla-paper     # LightGCN, paper setting, under a time budget
    python benchmarks/train.py --only gowalla-bspm      # BSPM (training-free graph filter)
    python benchmarks/train.py --only beauty            # six models + baselines, 20-minute cap each
    python benchmarks/train.py --only beauty --models bpr,lightgcn   # a subset

Results are merged into --out (JSON, one key per run); RESULTS.md quotes them with these commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from foundation import ROOT, merge_results, run_cli

ML100K = [
    ("bpr", []),
    ("bpr", ["learning_rate=1e-3", "batch_size=2048"]),
    ("bpr", ["batch_size=2048", "reg_weight=0.01"]),
    ("bpr", ["learning_rate=7e-3", "batch_size=4096", "reg_weight=0.01"]),
    ("bpr", ["batch_size=2048", "reg_weight=0.015"]),  # best validation N@10 of the 2026-11-27 sweep
    ("multvae", []),
    ("multvae", ["latent_dim=64"]),
    ("lightgcn", []),
    ("lightgcn", ["num_layers=2", "reg_weight=1e-5"]),
    ("lightgcn", ["learning_rate=5e-3"]),
    ("xsimgcl", ["cl_weight=0.02"]),
    ("simgcl", ["cl_weight=0.02"]),
    ("directau", ["gamma=0.5", "weight_decay=1e-4"]),
]

# gowalla has no validation set (train = train.txt + valid.txt): a fixed wall-time budget, the last
# epoch's weights are reported, and the test metrics are logged every few epochs for the curve only.
GOWALLA_MONITOR = ["select_best=false", "valid_metric=ndcg@20", "patience=0"]
GOWALLA = {
    "gowalla-best": ("lightgcn", ["loss=softmax", "log_q=false", "batch_size=4096", "learning_rate=1e-2",
                                  "lr_schedule=cosine", "epochs=22", "eval_every=3", "time_budget_s=2700"]),
    "gowalla-softmax-logq": ("lightgcn", ["loss=softmax", "batch_size=4096", "learning_rate=1e-2",
                                          "lr_schedule=cosine", "epochs=30", "eval_every=5", "time_budget_s=3600"]),
    "gowalla-paper": ("lightgcn", ["eval_every=10", "time_budget_s=3600"]),
    # training-free: BSPM with the reference code's gowalla setting (README of jeongwhanchoi/BSPM)
    "gowalla-bspm": ("bspm", ["factor_dim=448", "idl_beta=0.2", "solver_shr=rk4", "k_s=1", "t_s=2.5"]),
}
CLOSED_FORM = {"bspm", "gfcf"}

BEAUTY_CAP = "time_budget_s=480"  # 8 minutes per model (PEERS.md gave RecBole 20)
BEAUTY = [
    ("pop", []),
    ("itemknn", []),
    ("gfcf", []),
    ("bspm", []),  # the reference code's defaults (one Euler step each, beta 0.3, 256 factors)
    ("bspm", ["factor_dim=448", "idl_beta=0.2", "solver_shr=rk4", "t_s=2.5"]),  # its gowalla setting
    ("ease", []),  # expected: ResourceError (dense 57k x 57k Gram matrix), recorded as such
    ("bpr", ["eval_every=2", "valid_metric=ndcg@20", "patience=5", BEAUTY_CAP]),
    ("bpr", ["learning_rate=1e-3", "batch_size=2048", "eval_every=2", "valid_metric=ndcg@20", "patience=5",
             BEAUTY_CAP]),  # RecBole's lr / batch
    ("lightgcn", ["learning_rate=5e-3", "eval_every=2", "valid_metric=ndcg@20", "patience=5", BEAUTY_CAP]),
    ("simgcl", ["cl_weight=0.02", "eval_every=2", "valid_metric=ndcg@20", "patience=5", BEAUTY_CAP]),
    ("xsimgcl", ["cl_weight=0.02", "eval_every=2", "valid_metric=ndcg@20", "patience=5", BEAUTY_CAP]),
    ("directau", ["gamma=0.5", "weight_decay=1e-4", "eval_every=2", "valid_metric=ndcg@20", "patience=5",
                  BEAUTY_CAP]),
    ("multvae", ["latent_dim=64", "eval_every=2", "valid_metric=ndcg@20", "patience=5", BEAUTY_CAP]),
]


def _as_recorded(model: str, sets: list[str]) -> list[str]:
    """``sets`` on top of the defaults these rows were recorded with (2026-11-22 / 27): the model's
    ``FORMER_DEFAULTS`` first, so a row keeps reproducing its RESULTS.md figure after a default changed ([Polish]
    Defaults); the row's own settings come later and win."""
    from recembed.models import model_class

    former = getattr(model_class(model).Config, "FORMER_DEFAULTS", {})
    return [f"{k}={v}" for k, v in former.items()] + sets


def _key(prefix: str, model: str, sets: list[str]) -> str:
    return f"{prefix}/{model}" + ("/" + ",".join(sets) if sets else "")


def _show(key: str, r: dict) -> None:
    test = {k: round(v, 4) for k, v in r.get("test", {}).items() if k in ("ndcg@10", "recall@20", "ndcg@20")}
    tr = r.get("training", {})
    print(key, r.get("error", ""), test, "fit", r.get("fit_seconds"), "to best", tr.get("seconds_to_best_epoch"),
          "epochs", tr.get("epochs_run"), "rss", r.get("peak_rss_mb"), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "train.json"))
    ap.add_argument("--only", choices=["ml-100k", "beauty", *GOWALLA], required=True)
    ap.add_argument("--models", default=None, help="Comma-separated subset of the section's models.")
    args = ap.parse_args()
    runs_dir = Path(args.out).parent / "runs"
    wanted = set(args.models.split(",")) if args.models else None
    threads = ["--threads", "1"]
    results: dict = {}
    if args.only == "ml-100k":
        split = str(Path(args.data_root) / "ml-100k" / "splits" / "random-80-10-10")
        for model, sets in ML100K:
            if wanted and model not in wanted:
                continue
            key = _key("ml-100k", model, sets)
            results[key] = run_cli(model, "ml-100k", split, runs_dir / key.replace("/", "-"), args.data_root,
                                   _as_recorded(model, sets), threads)
            _show(key, results[key])
    elif args.only.startswith("gowalla"):
        model, sets = GOWALLA[args.only]
        extra = threads if model in CLOSED_FORM else [*threads, "--monitor-test"]
        sets = sets if model in CLOSED_FORM else GOWALLA_MONITOR + sets
        results[args.only] = run_cli(model, "gowalla", "given:merge-valid", runs_dir / args.only, args.data_root,
                                     _as_recorded(model, sets), extra)
        _show(args.only, results[args.only])
    else:
        for model, sets in BEAUTY:
            if wanted and model not in wanted:
                continue
            key = _key("beauty", model, sets)
            results[key] = run_cli(model, "amazon-beauty-cf", "given", runs_dir / key.replace("/", "-"),
                                   args.data_root, _as_recorded(model, sets), threads)
            _show(key, results[key])
    merge_results(args.out, results)


if __name__ == "__main__":
    main()
