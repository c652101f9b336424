"""[Tasks] Query-aware user embeddings (QueryUE) on ml-100k-text and scientific.

    python benchmarks/query_aware.py --data-root ../shared/data            # both datasets -> query_aware.json
    python benchmarks/query_aware.py --only scientific --examples 3        # one dataset, printed examples

Test triples (recembed.tasks.query_aware): (user, query = a category of one of the user's test items, targets =
the user's test items in that category); recall@10 / ndcg@10 over those rows, train + valid items excluded.
The same rows built from the validation part (train items excluded) are reported as ``valid_metrics``: variants
(``--params``) are chosen there, never on test.
Methods: the query-aware user vector, the same model without a query, text-only retrieval (MiniLM(query) .
MiniLM(item text)), EASE (a strong CF baseline), and the unconditioned lists filtered to the query's category
(oracle-ish: they read the labels the triples are made from). One process, --threads 1 equivalent.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from recembed.data import catalog
from recembed.data.interactions import Interactions
from recembed.data.splits import make_split
from recembed.models import model_class
from recembed.models.content.queryue import item_queries
from recembed.options import FitOptions
from recembed.tasks.query_aware import add_departments, evaluate_queries, query_triples

SETTINGS = {
    # item text: title + plot summary (genres are NOT in the item text); queries: the genre names
    "ml-100k-text": {"query_column": "genres", "query_template": "{} movies", "text_columns": "title,summary",
                     "ease_l2": 500.0},
    # item text: title + category path + brand (the text of the release); queries: the department names
    "scientific": {"query_column": "department", "query_template": "{}", "text_columns": "text", "ease_l2": 250.0},
}


def run(name: str, data_root: str, seed: int, examples: int, extra: dict | None = None) -> dict:
    torch.set_num_threads(1)
    s = SETTINGS[name]
    ds = catalog.load(name, root=data_root)
    if name == "scientific":
        add_departments(ds)
    split = make_split(ds, catalog.entry(name).split, seed=seed)
    params = {**{k: s[k] for k in ("query_column", "query_template", "text_columns")}, **(extra or {})}
    opts = FitOptions(seed=seed, show_progress=False, threads=1)
    t0 = time.perf_counter()
    model = model_class("queryue")(**params).fit(split.train, options=opts, valid=split.valid,
                                                 item_table=ds.item_table)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ease = model_class("ease")(l2=s["ease_l2"]).fit(split.train)
    ease_s = time.perf_counter() - t0
    texts, iq = item_queries(ds.item_table, s["query_column"], s["query_template"])
    known = Interactions.concat([split.train, split.valid]).csr("binary")
    triples = query_triples(split.test, known, iq, texts)
    t0 = time.perf_counter()
    metrics = evaluate_queries(model, triples, iq, ks=(10,), baselines={"ease": ease})
    eval_s = time.perf_counter() - t0
    valid_rows = query_triples(split.valid, split.train.csr("binary"), iq, texts)  # for choosing variants
    valid = evaluate_queries(model, valid_rows, iq, ks=(10,), text=False) if len(valid_rows) else {}
    out = {"dataset": name, "split": split.spec, "rows": len(triples), "targets": int(triples.target.nnz),
           "queries": len(texts), "settings": params, "ease_l2": s["ease_l2"], "fit_seconds": round(fit_s, 1),
           "ease_fit_seconds": round(ease_s, 1), "eval_seconds": round(eval_s, 1),
           "epochs": len(model.history_), "best_epoch": model.train_result_.best_epoch,
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "metrics": metrics,
           "valid_metrics": {k: valid[k] for k in ("query", "no_query") if k in valid}}
    if examples:
        out["examples"] = show_examples(model, ds, split, triples, examples, seed)
    return out


def show_examples(model, ds, split, triples, n: int, seed: int) -> list[dict]:  # noqa: ANN001
    """A few (user, query) rows: the user's recent titles, the top 5 with and without the query."""
    titles = ds.item_titles()
    name = (lambda i: str(titles[i])) if titles is not None else (lambda i: str(ds.items.ids[i]))
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(triples), size=min(n, len(triples)), replace=False)
    out = []
    for r in rows:  # a handful of examples
        u, q = int(triples.users[r]), triples.texts[triples.qid[r]]
        recent = [name(i) for i in model.recent_[u][::-1] if i >= 0][:5]
        with_q, _ = model.recommend(u, k=5, query=q)
        without, _ = model.recommend(u, k=5)
        out.append({"user": str(ds.users.ids[u]), "recent": recent, "query": q,
                    "targets": [name(i) for i in triples.target[r].indices],
                    "with_query": [name(i) for i in with_q], "without_query": [name(i) for i in without]})
    return out


def table(results: dict) -> str:
    lines = ["| dataset | method | recall@10 | ndcg@10 |", "|---|---|---|---|"]
    for name, res in results.items():
        for method, m in res["metrics"].items():
            lines.append(f"| {name} | {method} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--only", choices=sorted(SETTINGS), default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", type=int, default=3)
    ap.add_argument("--params", default="{}", help='QueryUE settings as JSON, e.g. \'{"epochs": 30}\'')
    ap.add_argument("--tag", default="", help="suffix of the result keys (a variant's settings)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("query_aware.json")))
    args = ap.parse_args()
    results = {}
    path = Path(args.out)
    if path.exists():
        results = json.loads(path.read_text())
    for name in [args.only] if args.only else list(SETTINGS):
        t0 = time.perf_counter()
        key = name + (f" {args.tag}" if args.tag else "")
        results[key] = run(name, args.data_root, args.seed, args.examples, json.loads(args.params))
        results[key]["wall_seconds"] = round(time.perf_counter() - t0, 1)
        path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        print(json.dumps({k: v for k, v in results[key].items() if k != "examples"}, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
