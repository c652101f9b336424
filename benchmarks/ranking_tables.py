"""[Rank] Embedding tables for huge vocabularies: per-field tables vs the hashing trick vs Unified Embedding, at
1/4 and 1/16 of the per-field embedding parameters; and DeepFM with semantic-ID n-gram fields.

    python benchmarks/ranking_tables.py --data ml-100k-ctr --seeds 2020,2021,2022
    python benchmarks/ranking_tables.py --data amazon-seq-din --seeds 2020
    python benchmarks/ranking_tables.py --data amazon-seq-din --sid ../shared/data/amazon-sid/Beauty.letter.index.json
    python benchmarks/ranking_tables.py --plot-only                       # redraw the figure from the JSON

For each dataset and model (DeepFM, FM; library defaults, embedding_dim 16) and each seed, the runs are:
``field`` (one table per vocabulary: the reference budget ``P``, counted over every token table including the
first-order term's), ``hash:N`` with the largest N whose tables fit in ``P / f``, and ``unified:N`` /
``unified:N:2`` (Unified Embedding, one or two chunks) with N rows filling ``P / f``, for ``f`` in
``--fractions`` (4, 16). Budgets count embedding parameters only (the MLP is the same in all runs).
``--sid`` adds DeepFM with the item's semantic-ID prefix fields (LETTER codes: ``id_offset=-1`` maps amazon-seq
items to the file's keys; ``--sid-levels 2``: the first two prefixes only, the deeper ones being nearly unique per
item) against DeepFM without, with per-field tables and with each method at ``P / 16`` (the same
``embedding_table``: the n-gram vocabularies share the budget).
Every run is :func:`fit_and_evaluate_ranker` with ``--threads`` threads; results go to ``--out`` (JSON, one row
per run, resumable: rows already there are skipped), a markdown table on stdout and the plot (test AUC against
embedding parameters) to ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from recembed.models.ranking._tables import table_parameters
from recembed.options import FitOptions
from recembed.ranking.datasets import load_ctr
from recembed.ranking.runs import fit_and_evaluate_ranker

ROOT = Path(__file__).resolve().parents[1]
DIM = 16


def vocab_sizes(data) -> dict[str, int]:  # noqa: ANN001
    schema = data.schema()
    tokens = [schema.table_of(f.name) for f in data.fields if f.kind in ("categorical", "tags", "sequence")]
    return {v: schema.cardinality(v) for v in dict.fromkeys(tokens)}


def embedding_budget(spec: str, sizes: dict[str, int]) -> int:
    """Parameters of the token tables a DeepFM / FM builds: the D-wide embedding and the first-order term."""
    return table_parameters(spec, sizes, DIM) + table_parameters(spec, sizes, 1)


def specs_for(sizes: dict[str, int], fractions: list[int]) -> list[tuple[str, str]]:
    """``[(label, embedding_table), ...]``: field, then hash / unified / unified:2 at each fraction."""
    full = embedding_budget("field", sizes)
    out = [("field", "field")]
    for f in fractions:
        target = full // f
        lo, hi = 1, max(sizes.values())
        while lo < hi:  # the largest N whose hashed tables fit the budget
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if embedding_budget(f"hash:{mid}", sizes) <= target else (lo, mid - 1)
        out.append((f"hash 1/{f}", f"hash:{lo}"))
        out.append((f"unified 1/{f}", f"unified:{target // (DIM + 1)}:1"))
        out.append((f"unified:2 1/{f}", f"unified:{target // (DIM // 2 + 1)}:2"))
    return out


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def run_all(args: argparse.Namespace, rows: list[dict]) -> None:
    done = {(r["data"], r["model"], r["label"], r["seed"], r.get("sid", "")) for r in rows}
    for name in args.data:
        t = time.perf_counter()
        base = load_ctr(name, args.data_root)
        print(f"{name}: loaded in {time.perf_counter() - t:.1f}s {base.sizes()}", file=sys.stderr)
        plans = []
        for model in args.models:
            plans += [(model, label, spec, "") for label, spec in specs_for(vocab_sizes(base), args.fractions)]
        if args.sid:
            from recembed.ranking.features import add_semantic_id_fields, load_item_codes

            codes, item_ids = load_item_codes(args.sid, base, id_offset=args.sid_id_offset)
            with_sid = add_semantic_id_fields(base, codes, item_ids, ngram=args.sid_ngram,
                                              levels=args.sid_levels or None)
            for label, spec in specs_for(vocab_sizes(base), [16]):  # field and every method at 1/16
                tag = f"{args.sid_ngram}{args.sid_levels or ''}"
                plans += [("deepfm", label, spec, ""), ("deepfm", label, spec, tag)]
        for model, label, spec, sid in plans:
            for seed in args.seeds:
                if (name, model, label, seed, sid) in done:
                    continue
                data = with_sid if sid else base
                t = time.perf_counter()
                run = fit_and_evaluate_ranker(model, data, params={"embedding_table": spec},
                                              options=FitOptions(seed=seed, threads=args.threads,
                                                                 show_progress=False))
                m = run.metrics
                row = {"data": name, "model": model, "label": label, "spec": spec, "seed": seed, "sid": sid,
                       "test_auc": m["test"]["auc"], "test_logloss": m["test"]["logloss"],
                       "test_gauc": m["test"]["gauc"], "valid_auc": m["valid"]["auc"],
                       "parameters": m["parameters"], "embedding_parameters": m["embedding_parameters"],
                       "fit_seconds": m["fit_seconds"], "epochs": m["training"]["epochs_run"],
                       "seconds_per_epoch": m["training"]["seconds_per_epoch"],
                       "wall_seconds": round(time.perf_counter() - t, 1), "fields": len(data.fields)}
                rows.append(row)
                done.add((name, model, label, seed, sid))
                args.out.write_text(json.dumps(rows, indent=1))
                print(f"{name} {model} {label:>14} {spec:>18} seed {seed} sid {sid or '-':>6}: "
                      f"AUC {row['test_auc']:.4f} logloss {row['test_logloss']:.4f} "
                      f"emb {row['embedding_parameters']:,} fit {row['fit_seconds']:.1f}s", file=sys.stderr)


def summary(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["data"], r["model"], r["label"], r.get("sid", "")), []).append(r)
    out = []
    for (data, model, label, sid), rs in groups.items():
        def mean_sd(key: str, rs: list[dict] = rs) -> tuple[float, float]:
            v = [r[key] for r in rs]
            return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)

        out.append({"data": data, "model": model, "label": label, "sid": sid, "spec": rs[0]["spec"],
                    "seeds": len(rs), "auc": mean_sd("test_auc"), "logloss": mean_sd("test_logloss"),
                    "gauc": mean_sd("test_gauc"), "embedding_parameters": rs[0]["embedding_parameters"],
                    "parameters": rs[0]["parameters"], "fit_seconds": mean_sd("fit_seconds")[0],
                    "seconds_per_epoch": statistics.fmean(r["seconds_per_epoch"] for r in rs)})
    return out


def markdown(stats: list[dict]) -> str:
    head = ("| data | model | tables | embedding_table | sid fields | seeds | test AUC | test logloss | test GAUC | "
            "emb. params | all params | fit s | s / epoch |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in stats:
        auc, sd = s["auc"]
        lines.append(
            f"| {s['data']} | {s['model']} | {s['label']} | `{s['spec']}` | {s['sid'] or '-'} | {s['seeds']} | "
            f"{auc:.4f}" + (f" ± {sd:.4f}" if s["seeds"] > 1 else "") + f" | {s['logloss'][0]:.4f} | "
            f"{s['gauc'][0]:.4f} | {s['embedding_parameters']:,} | {s['parameters']:,} | {s['fit_seconds']:.1f} | "
            f"{s['seconds_per_epoch']:.2f} |")
    return "\n".join(lines)


def plot(stats: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    with_sid = [s for s in stats if s["sid"]]
    stats = [s for s in stats if not s["sid"]]
    panels = sorted({(s["data"], s["model"]) for s in stats})
    if not panels:
        return
    cols = min(2, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    styles = {"field": ("black", "*"), "hash": ("tab:red", "s"), "unified": ("tab:blue", "o"),
              "unified:2": ("tab:green", "^")}
    for ax, (data, model) in zip(axes.flat, panels):
        for s in (s for s in with_sid if s["data"] == data and s["model"] == model):
            color, _ = styles[s["label"].split(" ")[0]]
            ax.scatter([s["embedding_parameters"]], [s["auc"][0]], color=color, marker="*", s=90, zorder=6,
                       edgecolors="black", linewidths=0.5,
                       label=f"+ semantic-ID {s['sid']} fields (colour: tables)" if s["label"] == "field" else None)
        here = [s for s in stats if s["data"] == data and s["model"] == model]
        field = [s for s in here if s["label"] == "field"]
        for method, (color, marker) in styles.items():
            if method == "field":
                continue
            pts = sorted((s["embedding_parameters"], s["auc"][0], s["auc"][1]) for s in here
                         if s["label"].split(" ")[0] == method)
            pts += [(f["embedding_parameters"], f["auc"][0], f["auc"][1]) for f in field]  # all meet at full size
            pts.sort()
            if len(pts) > 1:
                x, y, e = zip(*pts)
                ax.errorbar(x, y, yerr=e, color=color, marker=marker, ms=5, lw=1.2, capsize=2,
                            label={"hash": "hashing trick", "unified": "Unified Embedding (k=1)",
                                   "unified:2": "Unified Embedding (k=2)"}[method])
        for f in field:
            ax.scatter([f["embedding_parameters"]], [f["auc"][0]], color="black", zorder=5, s=30,
                       label="per-field tables")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("embedding parameters")
        ax.set_ylabel("test AUC")
        ax.set_title(f"{model} on {data}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="ml-100k-ctr", type=lambda s: s.split(","))
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--models", default="deepfm,fm", type=lambda s: s.split(","))
    p.add_argument("--seeds", default="2020", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--fractions", default="4,16", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--sid", default="", help="semantic-ID folder or *.index.json: + DeepFM with / without them")
    p.add_argument("--sid-id-offset", type=int, default=-1)
    p.add_argument("--sid-ngram", default="prefix")
    p.add_argument("--sid-levels", type=int, default=0, help="first code levels used (0: all but a collision level)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "ranking_tables.json")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "ranking_tables.png")
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = load(args.out)
    if not args.plot_only:
        run_all(args, rows)
    stats = summary(rows)
    print(markdown(stats))
    plot(stats, args.plot)


if __name__ == "__main__":
    main()
