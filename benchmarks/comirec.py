"""[Compact] Multi-interest: ComiRec-SA (K learned interests, max-score ranking) vs SASRec (one vector).

Each fit is its own `recembed fit` process with `--threads 1` and a training time budget (small, see RESULTS.md);
then the test users' top-50 lists (history = train + validation, those items excluded) are scored for recall,
NDCG@10 (from the fit's metrics.json), intra-list diversity and tag coverage
(`recembed.compact.multi_interest.list_metrics`; tags: ml-100k `class` genres, amazon-seq `attributes`).

    python benchmarks/comirec.py                      # both datasets, both models
    python benchmarks/comirec.py --only ml-100k --models comirec
    python benchmarks/comirec.py --only ml-100k --models comirec-k1   # the one-interest ablation
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from foundation import ROOT, merge_results, run_cli

# split, tags column, training budget (s), settings for both models: on amazon-seq a full-softmax epoch plus a
# full validation took over 180 s on the shared core (1 epoch in a 240-s budget), so there both models train with
# a sampled softmax (512 shared negatives) and validate on 2,000 users (test: every user, full ranking)
DATASETS = {"ml-100k": ("loo", "class", 120, []),
            "amazon-seq": (None, "attributes", 300, ["num_negatives=512", "valid_sample=2000"])}
MODELS = {"comirec": ("comirec", ["num_interests=4"]), "sasrec": ("sasrec", []),  # each model's defaults otherwise
          "comirec-k1": ("comirec", ["num_interests=1"])}  # ablation: one interest (ml-100k only by default)


def list_scores(run_dir: Path, data_root: str, tags_column: str, k: int = 50) -> dict:
    from recembed.compact.multi_interest import item_tags, list_metrics
    from recembed.ranking.candidates import top_candidates
    from recembed.ranking.pipeline import load_ranker_dataset
    from recembed.runs import load_run

    run = load_run(run_dir)
    dataset = load_ranker_dataset(run.config["data"], data_root)
    split = run.split
    train, valid, test = split.train.csr(), split.valid.csr(), split.test.csr()
    exclude = (train + valid).tocsr()
    users = np.flatnonzero((np.diff(test.indptr) > 0) & (np.diff(train.indptr) > 0))
    scorer = run.model.scorer_after(split.valid)
    t = time.perf_counter()
    top = np.concatenate([top_candidates(np.asarray(scorer(users[b: b + 1024]), np.float32), exclude[users[b: b + 1024]],
                                         k)[0] for b in range(0, len(users), 1024)])
    seconds = time.perf_counter() - t
    tags, column = item_tags(dataset, run.items, tags_column)
    out = list_metrics(top, users, test, tags, run.model.item_embeddings())
    out = {**out, "users": int(len(users)), "tags_column": column, "top50_seconds": round(seconds, 2)}
    if hasattr(run.model, "_interests_of"):  # ComiRec: how many interests fill the lists, how alike they are
        v = run.model._interests_of(run.model.sequences_.extend(split.valid), users)  # (U, K, D)
        e = run.model.item_embeddings()[:, : v.shape[-1]]
        best = np.einsum("ukd,ujd->ujk", v, e[top]).argmax(-1)  # (U, 50) the interest that ranks each item
        share = np.stack([(best == j).mean(1) for j in range(v.shape[1])], 1)
        n = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
        cos = np.einsum("ukd,ujd->ukj", n, n)
        off = ~np.eye(v.shape[1], dtype=bool)
        out["interests_in_list"] = float((share > 0).sum(1).mean())
        out["top_interest_share"] = float(share.max(1).mean())
        out["interest_cosine"] = float(cos[:, off].mean()) if v.shape[1] > 1 else 1.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "comirec.json"))
    ap.add_argument("--only", choices=list(DATASETS), default=None)
    ap.add_argument("--models", default=None, help="Comma-separated subset of comirec,sasrec,comirec-k1.")
    args = ap.parse_args()
    runs_dir = ROOT / "benchmarks" / "out" / "runs"
    results: dict = {}
    for data, (split, tags, budget, common) in DATASETS.items():
        if args.only and data != args.only:
            continue
        for name, (model, sets) in MODELS.items():
            if (args.models and name not in args.models.split(",")) or (name == "comirec-k1" and not args.models):
                continue
            key = f"{data}/{name}"
            out = runs_dir / f"comirec-{data}-{name}"
            r = run_cli(model, data, split, out, args.data_root,
                        [*sets, *common, f"time_budget_s={budget}", "patience=10"], ["--threads", "1", "--ks", "10,50"])
            if "error" not in r:
                r["lists"] = list_scores(out, args.data_root, tags)
            keep = {k: r.get(k) for k in ("command", "process_wall_seconds", "fit_seconds", "peak_rss_mb", "error")}
            keep["test"] = {m: v for m, v in r.get("test", {}).items() if m in ("recall@50", "ndcg@10", "recall@10")}
            keep["training"] = {m: r.get("training", {}).get(m) for m in ("epochs_run", "best_epoch", "stopped")}
            keep["lists"] = r.get("lists")
            results[key] = keep
            print(key, keep, flush=True)
            merge_results(args.out, results)


if __name__ == "__main__":
    main()
