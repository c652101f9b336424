"""[Compact] quality vs bytes per item of quantised embedding tables (recembed compress).

For each dataset, one embedding model is fitted (``recembed fit``, one thread) and compressed with every method
(``recembed compress RUN --method M --out RUN2``: the same evaluator on the same split); the table gives bytes
per item (codes; and with the shared codebooks spread over the items), the ratio to fp32, test recall@20 /
ndcg@20 and their relative change, and the goals of issue #22 item 2: int8 <= 1 % relative recall@20 loss at
~4x smaller, PQ at >= 16x smaller <= 5 % loss.

    python benchmarks/compress.py --data-root ../shared/data [--only ml100k-bpr,ml100k-lightgcn,gowalla-bpr]
        [--out benchmarks/compress.json] [--reuse]

Runs are written under ``benchmarks/out/compress/``; ``--reuse`` keeps a fitted source run that exists.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS_SPLIT = "ml-100k/splits/random-80-10-10"

SETUPS = {  # name -> (model, data, split (relative to the data root when it is a folder), --set values)
    "ml100k-bpr": ("bpr", "ml-100k", PEERS_SPLIT, {"learning_rate": "5e-3", "batch_size": "2048"}),
    "ml100k-lightgcn": ("lightgcn", "ml-100k", PEERS_SPLIT, {"num_layers": "3", "reg_weight": "1e-4",
                                                            "learning_rate": "5e-3"}),
    "gowalla-bpr": ("bpr", "gowalla", "given:merge-valid", {"learning_rate": "5e-3", "batch_size": "4096",
                                                            "select_best": "false", "epochs": "60",
                                                            "time_budget_s": "600"}),
    "beauty-bpr": ("bpr", "amazon-beauty-cf", "given", {"batch_size": "2048", "time_budget_s": "480"}),
    "amazonseq-bpr": ("bpr", "amazon-seq", "given", {}),  # defaults; LOO (the catalog's given split)
}
METHODS = [("fp32", []), ("fp16", []), ("int8", []), ("binary", ["--rerank", "0"]),
           ("binary", ["--rerank", "100", "--rerank-on", "int8"]), ("binary", ["--rerank", "100", "--rerank-on", "fp32"]),
           ("pq:32", []), ("pq:16", []), ("opq:16", []), ("ivfpq:16", []), ("pq:8", []), ("opq:8", [])]


def cli(args: list[str]) -> None:
    from recembed.cli.main import cli as group

    group.main(args, standalone_mode=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=os.environ.get("RECEMBED_DATA_ROOT", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--only", default="ml100k-bpr,ml100k-lightgcn,gowalla-bpr")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "compress.json"))
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    work = ROOT / "benchmarks" / "out" / "compress"
    results: dict[str, dict] = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    for name in args.only.split(","):
        model, data, split, sets = SETUPS[name]
        if "/" in split:
            split = str(Path(args.data_root) / split)
        src = work / name / "fp32-source"
        t = time.perf_counter()
        if not (args.reuse and (src / "metrics.json").exists()):
            cli(["fit", model, "--data", data, "--data-root", args.data_root, "--split", split, "--out", str(src),
                 "--threads", "1", "--no-progress", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]])
        fit_wall = time.perf_counter() - t
        source = json.loads((src / "metrics.json").read_text())
        rows = []
        for method, extra in METHODS:
            label = method + "".join(extra).replace("--rerank-on", "-").replace("--rerank", "-r")
            out = work / name / label.replace(":", "")
            t = time.perf_counter()
            try:
                cli(["compress", str(src), "--method", method, "--out", str(out), "--threads", "1", "--no-progress",
                     *extra])
            except Exception as exc:  # noqa: BLE001 - a method the data cannot take (e.g. too few items)
                rows.append({"method": label, "error": str(exc)})
                continue
            m = json.loads((out / "metrics.json").read_text())
            c = m["compression"]
            rows.append({"method": c["method"], "bytes_per_item": c["bytes_per_item"],
                         "index_bytes_per_item": c.get("index_bytes_per_item", c["bytes_per_item"]),
                         "bytes_per_item_amortised": c["bytes_per_item_amortised"],
                         "ratio": c["compression_ratio"], "ratio_amortised": c["compression_ratio_amortised"],
                         "recall@20": m["test"]["recall@20"], "ndcg@20": m["test"]["ndcg@20"],
                         "rel_recall@20": c["relative_change_test"].get("recall@20"),
                         "rel_ndcg@20": c["relative_change_test"].get("ndcg@20"),
                         "compress_s": c["compress_seconds"], "eval_s": m["eval_seconds"],
                         "wall_s": round(time.perf_counter() - t, 1), "peak_rss_mb": m["peak_rss_mb"]})
            print(rows[-1], flush=True)
        ok = [r for r in rows if "error" not in r]
        int8 = next((r for r in ok if r["method"] == "int8"), None)
        pq16 = [r for r in ok if r["ratio"] >= 16 and r["method"].split(":")[0] in ("pq", "opq", "ivfpq")]
        goals = {"int8_le_1pct_loss": None if int8 is None else bool(-int8["rel_recall@20"] <= 0.01),
                 "int8_ratio": None if int8 is None else int8["ratio"],
                 "pq_ge16x_le_5pct_loss": {r["method"]: bool(-r["rel_recall@20"] <= 0.05) for r in pq16}}
        results[name] = {"model": model, "data": data, "split": split, "sets": sets,
                         "source_test": {k: source["test"][k] for k in ("recall@20", "ndcg@20")},
                         "fit_seconds": source["fit_seconds"], "fit_wall_s": round(fit_wall, 1),
                         "dataset_items": source["split_sizes"], "rows": rows, "goals": goals,
                         "peak_rss_mb_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    for name, res in results.items():
        print(f"\n### {name}: {res['model']} on {res['data']} (source test R@20 {res['source_test']['recall@20']:.4f}, "
              f"N@20 {res['source_test']['ndcg@20']:.4f}; fit {res['fit_seconds']:.0f} s)\n")
        print("| method | bytes/item | first-stage bytes/item | with codebooks | × smaller | R@20 | N@20 | ΔR@20 | ΔN@20 "
              "| compress s | eval s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in res["rows"]:
            if "error" in r:
                print(f"| {r['method']} | error: {r['error'][:80]} |||||||||")
                continue
            print(f"| {r['method']} | {r['bytes_per_item']} | {r['index_bytes_per_item']} | "
                  f"{r['bytes_per_item_amortised']} | {r['ratio']} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | "
                  f"{100 * r['rel_recall@20']:+.2f} % | {100 * r['rel_ndcg@20']:+.2f} % | {r['compress_s']} | "
                  f"{r['eval_s']} |")
        print(f"\ngoals: {res['goals']}")


if __name__ == "__main__":
    main()
