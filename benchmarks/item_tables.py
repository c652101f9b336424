"""[Compact] parameter-efficient item tables for training (``--set item_table=KIND:C``, recembed.compact.tables).

Each setup is fitted once per table (``recembed fit MODEL ... --set item_table=T``, one thread, the same split,
seed and settings); the table gives the item table's parameters and their share of the full table, test
recall@20 / ndcg@20 and their change against the full table, and the fit's wall time.

    python benchmarks/item_tables.py --data-root ../shared/data [--only gowalla-bpr,ml100k-bpr,ml100k-lightgcn]
        [--tables full,hash:4,qr:4,tt:4,hash:16,qr:16,tt:16] [--out benchmarks/item_tables.json]

Runs are written under ``benchmarks/out/item_tables/``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS_SPLIT = "ml-100k/splits/random-80-10-10"
SETUPS = {  # name -> (model, data, split, --set values): compress.py's sources
    "ml100k-bpr": ("bpr", "ml-100k", PEERS_SPLIT, {"learning_rate": "5e-3", "batch_size": "2048"}),
    "ml100k-lightgcn": ("lightgcn", "ml-100k", PEERS_SPLIT, {"num_layers": "3", "reg_weight": "1e-4",
                                                            "learning_rate": "5e-3"}),
    "gowalla-bpr": ("bpr", "gowalla", "given:merge-valid", {"learning_rate": "5e-3", "batch_size": "4096",
                                                            "select_best": "false", "epochs": "60",
                                                            "time_budget_s": "600"}),
}
TABLES = "full,hash:4,qr:4,tt:4,hash:16,qr:16,tt:16"


def item_parameters(table: str, num_items: int, dim: int) -> int:
    from recembed.compact.tables import make_table, table_parameters

    module = make_table(table, num_items, dim, 0.1)
    return num_items * dim if module is None else table_parameters(module)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=os.environ.get("RECEMBED_DATA_ROOT", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--only", default="ml100k-bpr,ml100k-lightgcn,gowalla-bpr")
    ap.add_argument("--tables", default=TABLES)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "item_tables.json"))
    args = ap.parse_args()
    import torch

    from recembed.cli.main import cli
    from recembed.runs import load_run

    torch.set_num_threads(1)
    work = ROOT / "benchmarks" / "out" / "item_tables"
    results: dict[str, dict] = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    for name in args.only.split(","):
        model, data, split, sets = SETUPS[name]
        if "/" in split:
            split = str(Path(args.data_root) / split)
        rows = []
        for table in args.tables.split(","):
            out = work / name / table.replace(":", "")
            t = time.perf_counter()
            cli.main(["fit", model, "--data", data, "--data-root", args.data_root, "--split", split, "--out",
                      str(out), "--threads", "1", "--no-progress", "--set", f"item_table={table}",
                      *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]], standalone_mode=False)
            m = json.loads((out / "metrics.json").read_text())
            fitted = load_run(out).model
            dim = int(fitted.config.embedding_dim)
            num_items, num_users = int(fitted.num_items_), int(fitted.num_users_)
            sizes = m["split_sizes"]
            rows.append({"table": table, "recall@20": m["test"]["recall@20"], "ndcg@20": m["test"]["ndcg@20"],
                         "fit_seconds": m["fit_seconds"], "wall_s": round(time.perf_counter() - t, 1),
                         "peak_rss_mb": m.get("peak_rss_mb"), "epochs": m["training"]["epochs_run"], "dim": dim,
                         "num_items": num_items, "num_users": num_users, "sizes": sizes})
            print(rows[-1], flush=True)
        full = next((r for r in rows if r["table"] == "full"), None)
        for r in rows:
            if r["num_items"]:
                r["item_parameters"] = item_parameters(r["table"], r["num_items"], r["dim"])
                r["item_share"] = r["item_parameters"] / (r["num_items"] * r["dim"])
            if full is not None:
                for k in ("recall@20", "ndcg@20"):
                    r[f"rel_{k}"] = r[k] / full[k] - 1
        results[name] = {"model": model, "data": data, "split": split, "sets": sets, "rows": rows}
        Path(args.out).write_text(json.dumps(results, indent=1))
    for name, res in results.items():
        print(f"\n### {name}: {res['model']} on {res['data']}\n")
        print("| item table | item params | share | R@20 | N@20 | ΔR@20 | ΔN@20 | fit s |")
        print("|---|---|---|---|---|---|---|---|")
        for r in res["rows"]:
            print(f"| {r['table']} | {r.get('item_parameters', '?'):,} | {r.get('item_share', 0):.3f} | "
                  f"{r['recall@20']:.4f} | {r['ndcg@20']:.4f} | {100 * r.get('rel_recall@20', 0):+.2f} % | "
                  f"{100 * r.get('rel_ndcg@20', 0):+.2f} % | {r['fit_seconds']:.0f} |")


if __name__ == "__main__":
    main()
