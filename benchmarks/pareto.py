"""[Compact] quality vs bytes per item (Pareto plot): every `recembed compress` method of benchmarks/compress.json (ml-100k, gowalla, amazon-seq BPR)
and, for ml-100k BPR, Matryoshka prefixes of one BPR trained once with nested losses (the compress source's
settings plus ``matryoshka_dims=8,16,32,64``; prefix d costs 4 d bytes per item in fp32, d in int8 would need
both). Test recall@20 of the PEERS split / gowalla's, from the same evaluator.

    python benchmarks/pareto.py --data-root ../shared/data   # -> docs/img/compact_pareto.png, benchmarks/pareto.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matryoshka_rows(data_root: str) -> list[dict]:
    import torch

    from recembed.compact.matryoshka import evaluate_prefixes
    from recembed.data import catalog
    from recembed.data.splits import make_split
    from recembed.models.registry import model_class
    from recembed.options import FitOptions

    torch.set_num_threads(1)
    ds = catalog.load("ml-100k", data_root)
    split = make_split(ds, str(Path(data_root) / "ml-100k/splits/random-80-10-10"))
    model = model_class("bpr")(learning_rate=5e-3, batch_size=2048, matryoshka_dims=(8, 16, 32, 64))
    model.fit(split.train, options=FitOptions(show_progress=False, threads=1, seed=2020), valid=split.valid)
    got = evaluate_prefixes(model, split, ks=(20,))
    return [{"method": f"matryoshka d={d}", "bytes_per_item": 4 * int(d), "recall@20": v["test"]["recall@20"]}
            for d, v in got.items()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=os.environ.get("RECEMBED_DATA_ROOT", str(ROOT.parent / "shared" / "data")))
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compress = json.loads((ROOT / "benchmarks" / "compress.json").read_text())
    out = {name: [{"method": r["method"], "bytes_per_item": r["bytes_per_item_amortised"],
                   "recall@20": r["recall@20"]} for r in res["rows"] if "error" not in r]
           for name, res in compress.items() if name in ("ml100k-bpr", "gowalla-bpr", "amazonseq-bpr")}
    out["ml100k-bpr-matryoshka"] = matryoshka_rows(args.data_root)
    (ROOT / "benchmarks" / "pareto.json").write_text(json.dumps(out, indent=1))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, name in zip(axes, ("ml100k-bpr", "gowalla-bpr", "amazonseq-bpr")):
        rows = sorted(out[name], key=lambda r: r["bytes_per_item"])
        best, front = -1.0, []
        for r in rows:  # the frontier: the best recall at or below each size
            if r["recall@20"] > best:
                best = r["recall@20"]
                front.append(r)
        ax.scatter([r["bytes_per_item"] for r in rows], [r["recall@20"] for r in rows], s=18, label="compress")
        ax.plot([r["bytes_per_item"] for r in front], [r["recall@20"] for r in front], "k--", lw=0.8, label="frontier")
        for r in rows:
            ax.annotate(r["method"], (r["bytes_per_item"], r["recall@20"]), fontsize=6, xytext=(2, 2),
                        textcoords="offset points")
        if name == "ml100k-bpr":
            m = out["ml100k-bpr-matryoshka"]
            ax.plot([r["bytes_per_item"] for r in m], [r["recall@20"] for r in m], "o-", ms=3, color="tab:red",
                    label="Matryoshka prefixes (fp32)")
        ax.set_xscale("log")
        ax.set_xlabel("bytes per item (codes + shared codebooks)")
        ax.set_ylabel("test recall@20")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = ROOT / "docs" / "img" / "compact_pareto.png"
    fig.savefig(path, dpi=110)
    print(json.dumps(out, indent=1))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
