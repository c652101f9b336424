"""[Content] benchmarks: multimodal and language-representation models against ID-only ones, cold-start
items, and text-encoding throughput. Every fit is its own `recembed fit` process with `--threads 1`.

    python benchmarks/content.py --only tiktok          # given split, image + audio vectors
    python benchmarks/content.py --only ml-100k-text    # MMRec x_label split, MiniLM text of title+genres+summary
    python benchmarks/content.py --only cold            # cold-items:0.2 on ml-100k-text and scientific
    python benchmarks/content.py --only encode          # MiniLM items/s on 2 cores, then the same run from cache
    python benchmarks/content.py --only tiktok --models freedom,lightgcn   # a subset
    python benchmarks/content.py --only tiktok-seeds    # 5 seeds per model, then each model's 5-seed ensemble
    python benchmarks/content.py --only tiktok-ensemble-sizes --plot docs/img/tiktok_seed_ensembles.png
                                                        # every subset of those seeds as an ensemble

Results are merged into --out (JSON, one key per run); RESULTS.md quotes them with these commands.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from foundation import ROOT, merge_results, run_cli, run_command

CAP = "time_budget_s=600"  # 10 minutes of training per model
EARLY = ["valid_metric=ndcg@20", "patience=10", CAP]
TIKTOK = [
    ("pop", [], []),
    ("ease", [], []),
    ("cease", [], []),
    ("lightgcn", EARLY, []),
    ("vbpr", EARLY, []),
    ("freedom", EARLY, []),
    ("freedom", ["dropout=0.3", *EARLY], []),  # best validation N@20 (RESULTS.md); add --seed for the spread
    ("mgcn", EARLY, []),
    ("bm3", EARLY, []),
    ("alpharec", EARLY, []),
    ("mmultvae", ["valid_metric=ndcg@20", "patience=30", CAP], []),
]
# seed spread and seed ensembles on tiktok-mm: the best ID-only and multimodal settings, seeds 2020, 1, 2, 3, 4
SEEDS = [2020, 1, 2, 3, 4]
TIKTOK_SEEDS = [
    ("lightgcn", ["init=xavier", "num_layers=2", "reg_weight=1e-5", "valid_metric=ndcg@20", "patience=10"]),
    ("multvae", ["valid_metric=ndcg@20", "patience=30"]),  # patience 10 stops 2 of 5 seeds in KL annealing
    ("freedom", ["dropout=0.3", "valid_metric=ndcg@20", "patience=10"]),
    ("mgcn", ["valid_metric=ndcg@20", "patience=10"]),
    ("mmultvae", ["valid_metric=ndcg@20", "patience=30"]),  # MultVAE + frozen image/audio kNN graph
]
TEXT = ["--text-columns", "title,genres,summary"]  # encoded by the local MiniLM (cached) into 'minilm_text'
ML100K_TEXT = [
    ("pop", [], []),
    ("ease", [], []),
    ("ease", ["l2=500"], []),  # best validation N@20 of l2 in {100, 250, 500, 1000}
    ("lightgcn", EARLY, []),
    ("multvae", ["valid_metric=ndcg@20", "patience=30", CAP], []),  # ID-only; patience past the KL annealing
    ("mmultvae", ["features=minilm_text", "valid_metric=ndcg@20", "patience=30", CAP], TEXT),
    ("cease", ["features=minilm_text", "l2=500", "content_weight=20"], TEXT),  # best valid of a small grid
    ("vbpr", ["features=minilm_text", *EARLY], TEXT),
    ("freedom", ["features=minilm_text", *EARLY], TEXT),
    ("freedom", ["features=minilm_text", "dropout=0.3", *EARLY], TEXT),
    ("mgcn", ["features=minilm_text", *EARLY], TEXT),
    ("bm3", ["features=minilm_text", *EARLY], TEXT),
    ("alpharec", ["features=minilm_text", *EARLY], TEXT),
]
COLD_DATA = {
    "ml-100k-text": (["features=minilm_text"], TEXT),
    "scientific": (["features=text_feat,image_feat"], []),
}
COLD_MODELS = ["random", "pop", "ease", "lightgcn", "multvae", "cease", "vbpr", "freedom", "mgcn", "bm3", "alpharec",
               "mmultvae"]
CONTENT_MODELS = {"cease", "vbpr", "freedom", "mgcn", "bm3", "alpharec", "mmultvae"}
COLD_CAP = ["valid_metric=ndcg@20", "patience=10", "time_budget_s=300"]
KL_ANNEALED = {"multvae", "mmultvae"}  # the VAEs: patience 30 instead of 10 on the cold splits


def _key(prefix: str, model: str, sets: list[str]) -> str:
    shown = [s for s in sets if s not in EARLY and s not in COLD_CAP]
    return f"{prefix}/{model}" + ("/" + ",".join(shown) if shown else "")


def _show(key: str, r: dict) -> None:
    pick = ("recall@20", "ndcg@20")
    test = {k: round(v, 4) for k, v in r.get("test", {}).items() if k in pick}
    cold = {k: round(v, 4) for k, v in r.get("test_cold", {}).items() if k in pick}
    tr = r.get("training", {})
    print(key, r.get("error", ""), "test", test, "cold", cold, "fit", r.get("fit_seconds"), "epochs",
          tr.get("epochs_run"), "best", tr.get("best_epoch"), "rss", r.get("peak_rss_mb"), flush=True)


def encode_runs(data_root: str) -> dict:
    """MiniLM over ml-100k-text's title + genres + summary: a cold cache, then the same command again."""
    cache = Path(tempfile.mkdtemp(prefix="recembed-cache-"))
    out: dict = {}
    try:
        for attempt in ("cold-cache", "warm-cache"):
            folder = Path(tempfile.mkdtemp(prefix="recembed-encode-"))
            cmd = [sys.executable, "-m", "recembed.cli", "encode", "--data", "ml-100k-text", "--data-root",
                   data_root, "--text-columns", "title,genres,summary", "--no-vectors", "--cache-dir", str(cache),
                   "--threads", "2", "--out", str(folder)]
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - t
            if proc.returncode != 0:
                out[attempt] = {"error": proc.stderr[-2000:]}
                continue
            info = json.loads((folder / "encode.json").read_text())
            out[attempt] = {**info, "process_wall_seconds": round(wall, 2),
                            "command": "recembed " + " ".join(cmd[3:]).replace(str(cache), "CACHE")}
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return out


def ensemble_cli(runs: list[Path], out: Path) -> dict:
    """`recembed ensemble RUN ... --out OUT` over fitted runs (standardised-score average)."""
    cmd = [sys.executable, "-m", "recembed.cli", "ensemble", *map(str, runs), "--out", str(out), "--no-progress",
           "--threads", "1"]
    return run_command(cmd, out)


def ensemble_sizes(runs_dir: Path, models: list[str], plot: str | None) -> dict:
    """Test N@20 / R@20 of every subset of each model's seed runs (from --only tiktok-seeds) as an ensemble."""
    import itertools

    import numpy as np

    from recembed.models.ensemble import Ensemble
    from recembed.runs import evaluate_split, load_run

    out: dict = {}
    for model in models:
        runs = [load_run(runs_dir / f"tiktok-seeds-{model}-seed{seed}") for seed in SEEDS]
        for size in range(1, len(runs) + 1):
            ndcg, recall = [], []
            for subset in itertools.combinations(runs, size):
                ens = Ensemble.from_models([r.model for r in subset])
                res = evaluate_split(ens, subset[0].split, "test", ks=(20,))
                ndcg.append(res.summary["ndcg@20"])
                recall.append(res.summary["recall@20"])
            out[f"tiktok-ensemble-sizes/{model}/{size}"] = {
                "subsets": len(ndcg), "ndcg@20_mean": float(np.mean(ndcg)), "ndcg@20_min": float(np.min(ndcg)),
                "ndcg@20_max": float(np.max(ndcg)), "recall@20_mean": float(np.mean(recall))}
            print(model, size, {k: round(v, 4) for k, v in out[f"tiktok-ensemble-sizes/{model}/{size}"].items()},
                  flush=True)
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for model in models:
            rows = [out[f"tiktok-ensemble-sizes/{model}/{k}"] for k in range(1, len(SEEDS) + 1)]
            x = np.arange(1, len(rows) + 1)
            mean = [r["ndcg@20_mean"] for r in rows]
            ax.plot(x, mean, marker="o", label=model)
            ax.fill_between(x, [r["ndcg@20_min"] for r in rows], [r["ndcg@20_max"] for r in rows], alpha=0.15)
        ax.axhline(0.0436, color="grey", linestyle="--", linewidth=1, label="RecBole LightGCN (PEERS.md, 1 run)")
        ax.set_xlabel("seeds in the ensemble")
        ax.set_ylabel("test NDCG@20 (mean over subsets; band: min-max)")
        ax.set_title("tiktok-mm: seed ensembles (standardised-score average)")
        ax.set_xticks(range(1, len(SEEDS) + 1))
        ax.legend(fontsize=8)
        fig.tight_layout()
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(plot, dpi=120)
    return out


def seed_compare(runs_dir: Path, model_a: str, model_b: str, metric: str = "ndcg@20") -> dict:
    """Paired tests of B against A over the test users, each user's metric averaged over the five seed runs
    (from --only tiktok-seeds), plus the per-seed means and their paired differences."""
    import numpy as np
    import pyarrow.parquet as pq

    from recembed.evaluation.significance import paired_test

    def per_user(model: str) -> tuple[np.ndarray, np.ndarray, list[float]]:
        cols = []
        for seed in SEEDS:
            t = pq.read_table(runs_dir / f"tiktok-seeds-{model}-seed{seed}" / "per_user_test.parquet",
                              columns=["user_id", metric])
            users = np.asarray(t["user_id"].to_pylist())
            order = np.argsort(users)
            cols.append((users[order], t[metric].to_numpy()[order]))
        if any(not np.array_equal(u, cols[0][0]) for u, _ in cols):
            raise SystemExit(f"{model}: the seed runs evaluate different test users")
        return cols[0][0], np.mean([v for _, v in cols], axis=0), [float(v.mean()) for _, v in cols]

    ua, va, seeds_a = per_user(model_a)
    ub, vb, seeds_b = per_user(model_b)
    diffs = np.subtract(seeds_b, seeds_a)
    out = {f"tiktok-seed-compare/{model_a}/{model_b}/{metric}": {
        **paired_test(ua, va, ub, vb), "per_seed_a": seeds_a, "per_seed_b": seeds_b,
        "seeds_b_above_a": int((diffs > 0).sum()), "mean_seed_diff": float(diffs.mean()),
        "relative_gain": float(np.mean(seeds_b) / np.mean(seeds_a) - 1.0)}}
    print(json.dumps(out, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "content.json"))
    ap.add_argument("--only", choices=["tiktok", "tiktok-seeds", "tiktok-ensemble-sizes", "tiktok-seed-compare",
                                       "ml-100k-text", "cold", "encode"], required=True)
    ap.add_argument("--plot", default=None, help="tiktok-ensemble-sizes: write the N@20-vs-size plot here.")
    ap.add_argument("--models", default=None, help="Comma-separated subset of the section's models "
                    "(tiktok-seed-compare: the two models A,B).")
    args = ap.parse_args()
    runs_dir = Path(args.out).parent / "runs"
    wanted = set(args.models.split(",")) if args.models else None
    threads = ["--threads", "1"]
    results: dict = {}
    if args.only == "encode":
        results = {f"encode/ml-100k-text/{k}": v for k, v in encode_runs(args.data_root).items()}
        for k, v in results.items():
            print(k, {x: v.get(x) for x in ("seconds", "items_per_second", "text_stats", "process_wall_seconds")})
    elif args.only == "tiktok-seed-compare":
        model_a, model_b = (args.models or "multvae,mmultvae").split(",")
        results = seed_compare(runs_dir, model_a, model_b)
    elif args.only == "tiktok-ensemble-sizes":
        results = ensemble_sizes(runs_dir, [m for m, _ in TIKTOK_SEEDS if not wanted or m in wanted], args.plot)
    elif args.only == "tiktok-seeds":
        for model, sets in TIKTOK_SEEDS:
            if wanted and model not in wanted:
                continue
            dirs = []
            for seed in SEEDS:
                key = f"tiktok-seeds/{model}/seed{seed}"
                dirs.append(runs_dir / key.replace("/", "-"))
                results[key] = run_cli(model, "tiktok-mm", "given", dirs[-1], args.data_root, sets,
                                       [*threads, "--seed", str(seed)])
                _show(key, results[key])
            key = f"tiktok-seeds/{model}/ensemble{len(SEEDS)}"
            results[key] = ensemble_cli(dirs, runs_dir / key.replace("/", "-"))
            _show(key, results[key])
    elif args.only in ("tiktok", "ml-100k-text"):
        data = "tiktok-mm" if args.only == "tiktok" else "ml-100k-text"
        for model, sets, extra in (TIKTOK if args.only == "tiktok" else ML100K_TEXT):
            if wanted and model not in wanted:
                continue
            key = _key(args.only, model, sets)
            results[key] = run_cli(model, data, "given", runs_dir / key.replace("/", "-"), args.data_root, sets,
                                   [*threads, *extra])
            _show(key, results[key])
    else:
        for data, (content_sets, extra) in COLD_DATA.items():
            for model in COLD_MODELS:
                if wanted and model not in wanted:
                    continue
                content = model in CONTENT_MODELS
                trained = model not in ("random", "pop", "ease", "cease")
                sets = ([*content_sets] if content else []) + (COLD_CAP if trained else [])
                if model in KL_ANNEALED:  # validation dips while the KL weight anneals: patience past it
                    sets = [("patience=30" if s == "patience=10" else s) for s in sets]
                key = _key(f"cold/{data}", model, sets)
                results[key] = run_cli(model, data, "cold-items:0.2", runs_dir / key.replace("/", "-"),
                                       args.data_root, sets, [*threads, *(extra if content else [])])
                _show(key, results[key])
    merge_results(args.out, results)


if __name__ == "__main__":
    main()
