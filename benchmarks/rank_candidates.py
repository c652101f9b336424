"""[Rank] retrieve-then-rank offline: does a ranker improve on its retriever's own top-N list?

For each retriever (default: ease, itemknn, bpr; default settings) on ml-100k's PEERS split, three rankers are
fitted and put behind it with ``recembed pipeline --candidates 200``:

* ``deepfm`` on sampled non-clicks (``recembed fit deepfm --data ml-100k --split S``; the default before
  ``--retriever`` existed: it learns "an item the user took vs a random item");
* ``lr``, ``deepfm``, ``dcnv2`` on the retriever's own candidates (``--retriever RUN``: its top 200 per
  validation user, clicks = the validation items, with the retrieval score / rank / gap and the train counts).

Every row is a CLI process, as a user runs it; results (test NDCG / recall at 10 and 20, the rankers' test AUC /
GAUC on their own rows, seconds) go to ``benchmarks/rank_candidates.json`` and a markdown table on stdout.

    python benchmarks/rank_candidates.py --data-root ../shared/data [--retrievers ease,itemknn,bpr]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPLIT = "ml-100k/splits/random-80-10-10"


def cli(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "recembed.cli", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--retrievers", default="ease,itemknn,bpr")
    ap.add_argument("--rankers", default="lr,deepfm,dcnv2")
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--work", default="benchmarks/out/rank_candidates")
    ap.add_argument("--out", default="benchmarks/rank_candidates.json")
    args = ap.parse_args()
    work = ROOT / args.work
    split = str(Path(args.data_root) / SPLIT)
    common = ["--data", "ml-100k", "--data-root", args.data_root, "--split", split, "--threads", "1", "--no-progress"]
    rows = []

    def pipeline(ret_dir: Path, rk_dir: Path, *extra: str) -> dict:
        out = rk_dir / (f"pipeline@{args.candidates}" + ("-refit" if extra else ""))
        seconds = cli("pipeline", "--retriever", str(ret_dir), "--ranker", str(rk_dir), "--candidates",
                      str(args.candidates), "--no-progress", "--threads", "1", "--out", str(out), *extra)
        return {**json.loads((out / "metrics.json").read_text()), "wall_seconds": round(seconds, 1)}

    for retriever in args.retrievers.split(","):
        ret_dir = work / retriever
        fit_s = None
        if not (ret_dir / "metrics.json").exists():
            fit_s = cli("fit", retriever, *common, "--out", str(ret_dir))
        variants = [("deepfm", "sampled non-clicks (4 uniform per click)", [])]
        variants += [(r, f"{retriever}'s top {args.candidates}", ["--retriever", str(ret_dir), "--candidates",
                                                                  str(args.candidates)])
                     for r in args.rankers.split(",")]
        alone = None
        for ranker, trained_on, extra in variants:
            tag = "sampled" if not extra else "candidates"
            rk_dir = work / f"{retriever}-{ranker}-{tag}"
            rk_s = None
            if not (rk_dir / "metrics.json").exists():
                rk_s = cli("fit", ranker, *common, *extra, "--out", str(rk_dir))
            rk = json.loads((rk_dir / "metrics.json").read_text())
            p = pipeline(ret_dir, rk_dir)
            q = pipeline(ret_dir, rk_dir, "--refit") if extra else None
            alone = p["retriever_alone"]
            rows.append({"retriever": retriever, "ranker": ranker, "trained_on": trained_on,
                         "retriever_fit_s": fit_s, "ranker_fit_s": rk_s, "ranker_test": {
                             k: rk["test"][k] for k in ("auc", "gauc", "logloss")},
                         "ranker_epochs": rk["training"]["epochs_run"], "alone": alone, "pipeline": p["pipeline"],
                         "seconds": p["seconds"],
                         "refit": None if q is None else {"alone": q["retriever_refit_alone"],
                                                          "pipeline": q["pipeline"], "seconds": q["seconds"]}})
            print(f"{retriever} -> {ranker} ({tag}): N@10 {p['pipeline']['ndcg@10']:.4f} vs alone "
                  f"{alone['ndcg@10']:.4f}" + ("" if q is None else f"; refitted: "
                                               f"{q['pipeline']['ndcg@10']:.4f} vs alone "
                                               f"{q['retriever_refit_alone']['ndcg@10']:.4f}"), flush=True)
    (ROOT / args.out).write_text(json.dumps({"split": SPLIT, "candidates": args.candidates, "rows": rows}, indent=1))
    print("\n| retriever | ranker | ranker trained on | ranker test AUC / GAUC | pipeline R@10 / N@10 / N@20 | N@10 "
          "− retriever alone | `--refit`: pipeline N@10 − refitted retriever alone | rank s (943 users) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, p, q = r["alone"], r["pipeline"], r["refit"]
        refit = "—" if q is None else (f"{q['pipeline']['ndcg@10']:.4f} − {q['alone']['ndcg@10']:.4f} = "
                                       f"{q['pipeline']['ndcg@10'] - q['alone']['ndcg@10']:+.4f}")
        print(f"| {r['retriever']} | {r['ranker']} | {r['trained_on']} | {r['ranker_test']['auc']:.4f} / "
              f"{r['ranker_test']['gauc']:.4f} | {p['recall@10']:.4f} / {p['ndcg@10']:.4f} / {p['ndcg@20']:.4f} | "
              f"{p['ndcg@10'] - a['ndcg@10']:+.4f} ({a['ndcg@10']:.4f}) | {refit} | "
              f"{r['seconds']['pipeline_rank']:.1f} |")


if __name__ == "__main__":
    main()
