"""[Generative] semantic-ID tokenizers on Amazon Beauty (amazon-seq): codebook utilisation, collisions, wall time.

    python benchmarks/semantic_ids.py                                   # attribute vectors, rkmeans/rqvae/fsq
    python benchmarks/semantic_ids.py --cf-run runs/sid/cf-bpr-beauty   # + CF item embeddings, + both concatenated
    python benchmarks/semantic_ids.py --methods rkmeans --threads 1     # a subset

Sources: ``attributes`` = the item table's attribute tags (multi-hot -> TF-IDF -> truncated SVD, 64-d; many
items share the same tags, so identical vectors bound the collision rate from below: ``input dup``);
``cf`` = a fitted run's item embeddings (``--cf-run``); ``attributes+cf`` = both, each L2-normalised. Every
tokenizer makes 3 levels x 256 codes (+ TIGER's collision level); the LETTER codes shipped in
``amazon-sid`` are read as a reference row. The codes are saved under ``--save-dir/<source>-<method>/``
(``SemanticIds.save`` + ``items.parquet``), ready for ``recembed fit tiger --set semantic_ids=DIR``.
Results go to ``--out`` (JSON) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from recembed.data import catalog
from recembed.semantic import SemanticIds, combine_vectors, tokenize, vectors_from_column, vectors_from_run

ROOT = Path(__file__).resolve().parents[1]


def save(ids: SemanticIds, directory: Path, dataset) -> None:  # noqa: ANN001
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids.save(directory)
    pq.write_table(pa.table({"item_id": dataset.items.arrow}), directory / "items.parquet")


def row(source: str, ids: SemanticIds, extra: dict) -> dict:
    raw = ids.info["raw_stats"]
    return {
        "source": source, "method": ids.method, "items": raw["num_items"],
        "utilisation": [round(p["utilisation"], 4) for p in raw["per_level"]],
        "perplexity": [round(p["perplexity"], 1) for p in raw["per_level"]],
        "distinct_tuples": raw["distinct_tuples"], "collision_rate": round(raw["collision_rate"], 4),
        "max_items_per_tuple": raw["max_items_per_tuple"], "collision_level_size": ids.sizes[-1],
        "fit_seconds": ids.info.get("fit_seconds"), "encode_seconds": ids.info.get("encode_seconds"),
        "relative_reconstruction_error": ids.info.get("relative_reconstruction_error"),
        "input_duplicate_rate": ids.info.get("input_duplicate_rate"), **extra,
    }


def markdown(rows: list[dict]) -> str:
    head = ("| source | method | utilisation L1/L2/L3 | perplexity L1/L2/L3 | distinct tuples | collision rate | "
            "max items / tuple | collision level | input dup | rel. recon err | fit s | encode s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def fmt(v: float | None, p: int = 3) -> str:
        return "-" if v is None else f"{v:.{p}f}"

    for r in rows:
        lines.append(
            f"| {r['source']} | {r['method']} | {'/'.join(f'{u:.3f}' for u in r['utilisation'])} | "
            f"{'/'.join(f'{p:.0f}' for p in r['perplexity'])} | {r['distinct_tuples']} | {r['collision_rate']:.4f} | "
            f"{r['max_items_per_tuple']} | {r['collision_level_size']} | {fmt(r['input_duplicate_rate'])} | "
            f"{fmt(r['relative_reconstruction_error'], 4)} | {fmt(r['fit_seconds'], 1)} | "
            f"{fmt(r['encode_seconds'], 2)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--cf-run", default=None, help="Run directory of a model fitted on amazon-seq (item embeddings).")
    ap.add_argument("--methods", default="rkmeans,rqvae,fsq")
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--codebook", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=None, help="RQ-VAE / FSQ epochs (default: the config's, 200).")
    ap.add_argument("--attr-dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "semantic_ids.json"))
    ap.add_argument("--save-dir", default=str(ROOT / "runs" / "sid"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    dataset = catalog.load("amazon-seq", args.data_root)
    save_dir = Path(args.save_dir)
    rows: list[dict] = []

    letter = Path(args.data_root) / "amazon-sid" / "Beauty.letter.index.json"
    if letter.exists():
        ids = SemanticIds.read_index_json(letter, dataset.items.ids, id_offset=-1, method="LETTER (file)")
        ids.info["raw_stats"] = ids.stats()
        ids = ids.deduplicated()
        save(ids, save_dir / "letter", dataset)
        rows.append(row("text+CF (LETTER)", ids, {}))

    t = time.perf_counter()
    sources = {"attributes": vectors_from_column(dataset, "attributes", dim=args.attr_dim, seed=args.seed)}
    vector_seconds = {"attributes": round(time.perf_counter() - t, 2)}
    if args.cf_run:
        t = time.perf_counter()
        sources["cf"] = vectors_from_run(args.cf_run, dataset.items.ids)
        sources["attributes+cf"] = combine_vectors([sources["attributes"], sources["cf"]])
        vector_seconds["cf"] = round(time.perf_counter() - t, 2)
    params = {} if args.epochs is None else {"epochs": args.epochs}
    for source, x in sources.items():
        for method in args.methods.split(","):
            kwargs = params if method in ("rqvae", "fsq") else {}
            ids = tokenize(x, method, args.levels, args.codebook, seed=args.seed, progress=sys.stderr.isatty(),
                           **kwargs)
            ids.info.update({"data": "amazon-seq", "vectors": source, "cf_run": args.cf_run})
            save(ids, save_dir / f"{source}-{method}", dataset)
            rows.append(row(source, ids, {"input_dim": int(x.shape[1]), "threads": args.threads,
                                          "saved": str(save_dir / f"{source}-{method}")}))
            print(json.dumps({k: rows[-1][k] for k in ("source", "method", "collision_rate", "fit_seconds")}),
                  flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "vector_seconds": vector_seconds, "rows": rows},
                              indent=2) + "\n")
    print(markdown(rows))
    print(f"\n-> {out}; semantic IDs under {save_dir}/")


if __name__ == "__main__":
    main()
