"""[Rank] Per-field feature importance and feature selection for a CTR ranker (issue #21, item 4).

    python benchmarks/feature_selection.py --data ml-100k-ctr --data-root ../shared/data
    python benchmarks/feature_selection.py --table-only          # reprint the table from the JSON

1. Fits ``--model`` (DeepFM, library defaults, embedding_dim 16) once with the first seed.
2. Permutation importance (``ranking/importance.py``, ``--repeats`` permutations per field) on the validation
   part (it guides the search) and on the test part (reported only); the OutRank-style ranking
   (``ranking/selection.py``: adjusted mutual information with the click on the training part, no model).
3. Per-field size search (``ranking/size_search.py``; widths ``--widths`` below embedding_dim, 0 = dropped;
   selection on validation AUC within ``--tol`` of the full model): ``guided`` by the validation permutation
   importance, ``guided`` by the OutRank ranking, and ``greedy`` backward elimination, all with the first seed.
4. Refits every selected configuration, the full model and uniform narrower models (embedding_dim 8 and 4)
   with every seed in ``--seeds``: the table's test AUC is their mean ± std (a one-seed search overfits the
   validation part; the other seeds show how much of a difference survives). Two controls tell the fields
   apart from the narrow tables: each selection's kept fields at the full width, and every token field at
   width 4 through the projection (against uniform embedding_dim 4, which has no projection).

Writes ``--out`` (JSON: every fit of the search, the importances, the rankings, the table as markdown) and
prints the markdown tables. One thread (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recembed.options import FitOptions
from recembed.ranking.datasets import load_ctr
from recembed.ranking.importance import permutation_importance
from recembed.ranking.runs import fit_and_evaluate_ranker
from recembed.ranking.selection import rank_fields
from recembed.ranking.size_search import field_dims_spec, ladders, ranker_trial, size_search

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def spearman(a: list[str], b: list[str]) -> float:
    ra = {f: i for i, f in enumerate(a)}
    rb = {f: i for i, f in enumerate(b)}
    x = np.asarray([ra[f] for f in a], float)
    y = np.asarray([rb[f] for f in a], float)
    return float(np.corrcoef(x, y)[0, 1])


def describe(widths: dict[str, int], dim: int) -> str:
    """``"dropped: a, b; width 4: c"`` (fields at the full width are not named)."""
    parts = []
    for w in sorted({v for v in widths.values() if v != dim}):
        names = ", ".join(f for f, v in widths.items() if v == w)
        parts.append(f"dropped: {names}" if w == 0 else f"width {w}: {names}")
    return "; ".join(parts) or "all at full width"


_REFITS: dict[tuple[str, int], dict] = {}


def refit(args: argparse.Namespace, data, params: dict, seeds: list[int], first: dict | None) -> list[dict]:  # noqa: ANN001
    """Test / valid AUC and parameters of ``params`` for every seed (``first``: the first seed's, already fitted;
    a configuration two searches selected is fitted once per seed)."""
    out = []
    for seed in seeds:
        key = (json.dumps(params, sort_keys=True), seed)
        if seed == seeds[0] and first is not None:
            out.append(first)
            continue
        if key in _REFITS:
            out.append(_REFITS[key])
            continue
        t = time.perf_counter()
        m = fit_and_evaluate_ranker(args.model, data, params=params,
                                    options=FitOptions(seed=seed, show_progress=False, threads=args.threads)).metrics
        out.append({"seed": seed, "valid_auc": m["valid"]["auc"], "test_auc": m["test"]["auc"],
                    "test_logloss": m["test"]["logloss"], "parameters": m["parameters"],
                    "embedding_parameters": m["embedding_parameters"], "seconds": round(time.perf_counter() - t, 2)})
        _REFITS[key] = out[-1]
        log(f"  refit {params or 'full'} seed {seed}: test AUC {out[-1]['test_auc']:.4f} ({out[-1]['seconds']:.1f}s)")
    return out


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load_ctr(args.data, args.data_root)
    seeds = [int(s) for s in args.seeds.split(",")]
    dim = 16
    log(f"{args.data}: {data.sizes()}")
    options = FitOptions(seed=seeds[0], show_progress=False, threads=args.threads)
    t = time.perf_counter()
    full = fit_and_evaluate_ranker(args.model, data, options=options)
    fit_seconds = time.perf_counter() - t
    model = full.model
    dim = model.config.embedding_dim
    schema = model.schema_
    log(f"full model: valid AUC {full.metrics['valid']['auc']:.4f} test {full.metrics['test']['auc']:.4f} "
        f"({fit_seconds:.1f}s)")
    imp = {p: permutation_importance(model, data.part(p), repeats=args.repeats, seed=0) for p in ("valid", "test")}
    outrank = rank_fields(schema, data.train)
    plain = rank_fields(schema, data.train, score="mi")
    perm_order = [r["field"] for r in imp["valid"]["fields"]]  # most important first
    out_order = [r["field"] for r in outrank["fields"]]
    ladder = ladders(schema, dim, widths=[int(w) for w in args.widths.split(",")])
    fit = ranker_trial(args.model, data, options=options, log=log)
    fields = schema.names()
    searches = {}
    for label, strategy, order in (("guided by permutation importance", "guided", perm_order[::-1]),
                                   ("guided by OutRank", "guided", out_order[::-1]),
                                   ("greedy backward", "greedy", None)):
        if strategy not in args.strategies.split(","):
            continue
        log(f"search: {label}")
        searches[label] = size_search(fit, fields, ladder, dim, strategy=strategy, order=order, tol=args.tol,
                                      max_steps=args.max_steps)
        s = searches[label]
        log(f"  -> {describe(s['widths'], dim)}: valid {s['selected']['valid_auc']:.4f} "
            f"({s['fits']} fits, {s['seconds']:.0f}s)")
    ref = fit("")
    configs = [("full model (embedding_dim 16)", {}, {f: dim for f in fields}, {**ref, "seed": seeds[0]}),
               ("uniform embedding_dim 8", {"embedding_dim": 8}, {f: 8 for f in fields}, None),
               ("uniform embedding_dim 4", {"embedding_dim": 4}, {f: 4 for f in fields}, None)]
    for label, s in searches.items():
        spec = field_dims_spec(s["widths"], fields, dim)
        configs.append((label, {"field_dims": spec} if spec else {}, s["widths"], {**s["selected"], "seed": seeds[0]}))
    # controls: is it the fields or the narrow (projected) tables? the selections' fields at full width, and
    # every token field at width 4 through the projection (vs uniform embedding_dim 4 without one)
    seen = {json.dumps(c[1], sort_keys=True) for c in configs}
    narrow = {f: (4 if 4 in ladder[f] else dim) for f in fields}
    controls = [("every field width 4, projected to 16", narrow)]
    for label, s in searches.items():
        controls.append((f"control: fields of '{label}' at width {dim}",
                         {f: (0 if w == 0 else dim) for f, w in s["widths"].items()}))
    for label, widths in controls:
        spec = field_dims_spec(widths, fields, dim)
        params = {"field_dims": spec} if spec else {}
        if json.dumps(params, sort_keys=True) not in seen:
            seen.add(json.dumps(params, sort_keys=True))
            configs.append((label, params, widths, fit(spec)))
    rows = []
    for label, params, widths, first in configs:
        seeds_out = refit(args, data, params, seeds, first)
        tests = [r["test_auc"] for r in seeds_out]
        rows.append({"label": label, "params": params, "widths": widths, "kept": sum(w > 0 for w in widths.values()),
                     "parameters": seeds_out[0]["parameters"],
                     "embedding_parameters": seeds_out[0]["embedding_parameters"],
                     "valid_auc_first_seed": seeds_out[0]["valid_auc"], "test_auc_first_seed": seeds_out[0]["test_auc"],
                     "test_auc_mean": statistics.mean(tests),
                     "test_auc_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
                     "valid_auc_mean": statistics.mean(r["valid_auc"] for r in seeds_out),
                     "fits": searches[label]["fits"] if label in searches else None,
                     "search_seconds": searches[label]["seconds"] if label in searches else None,
                     "seeds": seeds_out})
    result = {"data": args.data, "model": args.model, "seeds": seeds, "repeats": args.repeats, "tol": args.tol,
              "widths": args.widths, "threads": args.threads, "full_fit_seconds": round(fit_seconds, 2),
              "importance": imp, "outrank": outrank, "plain_mi": plain,
              "spearman_perm_valid_vs_outrank": spearman(perm_order, out_order),
              "spearman_perm_valid_vs_test": spearman(perm_order, [r["field"] for r in imp["test"]["fields"]]),
              "searches": searches, "rows": rows, "wall_seconds": round(time.perf_counter() - t0, 1)}
    result["markdown"] = markdown(result)
    return result


def markdown(r: dict) -> str:
    by = {p: {f["field"]: f for f in r["importance"][p]["fields"]} for p in ("valid", "test")}
    orank = {f["field"]: f for f in r["outrank"]["fields"]}
    plain = {f["field"]: i + 1 for i, f in enumerate(r["plain_mi"]["fields"])}
    lines = [f"Permutation importance ({r['model']}, seed {r['seeds'][0]}, {r['repeats']} permutations; AUC drop, "
             "mean ± std) and the model-free ranking on the training part (AMI: adjusted mutual information with "
             "the click; its rank, and the rank by plain MI):", "",
             "| field | AUC drop, valid | AUC drop, test | logloss rise, test | GAUC drop, test | AMI (rank) | "
             "distinct tokens | rank by plain MI |", "|---|---|---|---|---|---|---|---|"]
    for f in by["test"]:
        v, t, o = by["valid"][f], by["test"][f], orank[f]
        lines.append(f"| {f} | {v['auc_drop']['mean']:+.4f} ± {v['auc_drop']['std']:.4f} | "
                     f"{t['auc_drop']['mean']:+.4f} ± {t['auc_drop']['std']:.4f} | {t['logloss_rise']['mean']:+.4f} | "
                     f"{t['gauc_drop']['mean']:+.4f} | {o['ami']:.4f} ({o['rank']}) | {o['distinct']} | {plain[f]} |")
    lines += ["", f"Spearman rank correlation of the fields: permutation (valid) vs OutRank "
              f"{r['spearman_perm_valid_vs_outrank']:.2f}; permutation valid vs test "
              f"{r['spearman_perm_valid_vs_test']:.2f}.", "",
              f"Size search (validation AUC within {r['tol']} of the full model, seed {r['seeds'][0]}; widths "
              f"{{16, {r['widths'].replace(',', ', ')}}}, 0 = dropped) against the full and uniformly narrower models; test AUC over "
              f"seeds {', '.join(map(str, r['seeds']))}:", "",
              "| configuration | fields kept | widths | parameters | embedding params | valid AUC (seed "
              f"{r['seeds'][0]}) | test AUC (seed {r['seeds'][0]}) | test AUC, {len(r['seeds'])} seeds | fits | "
              "search s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        dim = 16
        widths = describe(row["widths"], dim) if "uniform" not in row["label"] else "all " + str(
            next(iter(row["widths"].values())))
        lines.append(f"| {row['label']} | {row['kept']} | {widths} | {row['parameters']:,} | "
                     f"{row['embedding_parameters']:,} | {row['valid_auc_first_seed']:.4f} | "
                     f"{row['test_auc_first_seed']:.4f} | {row['test_auc_mean']:.4f} ± {row['test_auc_std']:.4f} | "
                     f"{row['fits'] if row['fits'] is not None else '—'} | "
                     f"{row['search_seconds'] if row['search_seconds'] is not None else '—'} |")
    lines += ["", f"Wall time {r['wall_seconds'] / 60:.1f} min ({r['threads']} thread)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="ml-100k-ctr")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--model", default="deepfm")
    ap.add_argument("--seeds", default="2020,2021,2022", help="The first one fits and searches; all refit.")
    ap.add_argument("--repeats", type=int, default=3, help="Permutations per field.")
    ap.add_argument("--widths", default="4,0", help="Widths below embedding_dim the search may give (0: drop).")
    ap.add_argument("--tol", type=float, default=0.001, help="Validation AUC a selection may lose.")
    ap.add_argument("--strategies", default="guided,greedy")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "feature_selection.json")
    ap.add_argument("--table-only", action="store_true", help="Reprint the tables from --out.")
    args = ap.parse_args()
    if args.table_only:
        print(json.loads(args.out.read_text())["markdown"])
        return
    result = run(args)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(result["markdown"])


if __name__ == "__main__":
    main()
