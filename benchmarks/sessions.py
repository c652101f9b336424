"""[Tasks] Session-based recommendation on DIGINETICA (SR-GNN / GCE-GNN preprocessing): P@20 (= HR@20) and
MRR@20 over the released test prefixes, all items ranked, nothing excluded (recembed.evaluation.sessions).

    python benchmarks/sessions.py                    # every model once, each its own `recembed fit` process
    python benchmarks/sessions.py --models vsknn,stan
    python benchmarks/sessions.py --tune             # the kNN defaults: coordinate search on validation

``--tune`` never reads the test prefixes: it fits on the first 90% of the training sessions and scores a fixed
random subsample (``--valid-prefixes``) of all prefixes of the last 10% (SessionTask.validation), choosing by
P@20 + MRR@20, one key at a time in the order of the grid, starting from the config defaults.
Results are merged into --out (JSON, one key per run); RESULTS.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import time

from foundation import ROOT, merge_results, run_cli

DATA = "diginetica-session"
# the neural models on 2 contended cores: --threads 1 (2 threads spin-wait under load: 15 min for no epoch), a
# sampled softmax (2,000 negatives; the full 43k-item softmax is ~20x the work), windows of 10 clicks (test
# prefixes average 4), and a wall-clock budget for training + validation
NEURAL = ["max_len=10", "num_negatives=2000", "batch_size=512", "valid_sample=3000", "patience=3"]
RUNS = [
    ("vsknn", []),
    ("stan", []),
    ("sknn", []),
    ("sasrec", [*NEURAL, "time_budget_s=540"]),
    ("gru4rec", [*NEURAL, "time_budget_s=300"]),
]
GRIDS = {
    "sknn": {"k": [50, 100, 200, 500], "sample": [500, 1000, 2000, 0]},
    "vsknn": {"weighting": ["linear", "div", "log", "quadratic", "same"], "k": [50, 100, 200, 500],
              "sample": [500, 1000, 2000, 0], "idf_weight": [0.0, 1.0, 2.0, 5.0, 10.0]},
    "stan": {"lambda1": [0.5, 1.0, 2.0, 4.0, 8.0], "lambda3": [0.5, 1.0, 2.0, 4.0, 8.0, 0.0],
             "lambda2": [0.0, 10000.0, 30000.0, 100000.0], "k": [50, 100, 200, 500, 1000],
             "idf_weight": [0.0, 1.0, 2.0, 5.0, 10.0]},
}


def tune(data_root: str, models: list[str], n_prefixes: int, seed: int = 0, keys: list[str] | None = None) -> dict:
    import numpy as np

    from recembed.data.catalog import load
    from recembed.evaluation.sessions import evaluate_sessions
    from recembed.models.registry import model_class
    from recembed.tasks.sessions import SessionTask, session_interactions

    valid = SessionTask.from_dataset(load(DATA, root=data_root)).validation(0.1)
    pick = np.sort(np.random.default_rng(seed).choice(len(valid.test_targets),
                                                       min(n_prefixes, len(valid.test_targets)), replace=False))
    prefixes, targets = [valid.test_prefixes[i] for i in pick], valid.test_targets[pick]
    train = session_interactions(valid.train, valid.num_items)
    out: dict = {}

    def score(cls: type, params: dict, trials: list) -> float:
        t = time.perf_counter()
        model = cls(**params).fit(train)
        r = evaluate_sessions(model.score_histories, prefixes, targets)
        trials.append({"params": dict(params), "p@20": r.summary["p@20"], "mrr@20": r.summary["mrr@20"],
                       "seconds": round(time.perf_counter() - t, 1)})
        print(cls.name, trials[-1], flush=True)
        return r.summary["p@20"] + r.summary["mrr@20"]

    for name in models:
        cls = model_class(name)
        best: dict = {}
        trials: list = []
        best_value = score(cls, best, trials)
        for key, values in GRIDS[name].items():
            if keys and key not in keys:
                continue
            for v in values:
                if getattr(cls.Config(**best), key) == v:
                    continue
                value = score(cls, {**best, key: v}, trials)
                if value > best_value:
                    best_value, best = value, {**best, key: v}
        out[name if not keys else f"{name} (pass: {','.join(keys)})"] = {"best": best, "best_p@20+mrr@20": best_value, "trials": trials,
                     "valid": {**valid.notes, "prefixes_scored": len(targets), "seed": seed}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "sessions.json"))
    ap.add_argument("--models", default=None, help="Comma-separated subset.")
    ap.add_argument("--tune", action="store_true", help="Choose the kNN defaults on validation.")
    ap.add_argument("--valid-prefixes", type=int, default=15000)
    ap.add_argument("--keys", default=None, help="With --tune: only these grid keys (from the current defaults).")
    args = ap.parse_args()
    wanted = args.models.split(",") if args.models else None
    if args.tune:
        models = wanted or list(GRIDS)
        result = tune(args.data_root, models, args.valid_prefixes, keys=args.keys.split(",") if args.keys else None)
        merge_results(ROOT / "benchmarks" / "sessions_tune.json", result)
        print(json.dumps({k: v["best"] for k, v in result.items()}))
        return
    runs_dir = ROOT / "benchmarks" / "out" / "sessions"
    for model, sets in RUNS:
        if wanted and model not in wanted:
            continue
        r = run_cli(model, DATA, None, runs_dir / model, args.data_root, sets, ["--threads", "1"])
        t = r.get("test", {})
        print(model, r.get("error", ""), {k: round(100 * t[k], 2) for k in ("p@20", "mrr@20") if k in t},
              "fit", r.get("fit_seconds"), "eval", r.get("eval_seconds"), "wall", r.get("process_wall_seconds"),
              flush=True)
        merge_results(args.out, {model: r})


if __name__ == "__main__":
    main()
