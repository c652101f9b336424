"""[Compact] MUVERA: recall@100 of FDE retrieval + Chamfer re-rank against the exact Chamfer top-100, and the
speed-up over exact multi-vector scoring, on synthetic multi-vector sets (recembed.compact.muvera.planted_sets:
unit vectors around topic centres; each query copies part of a target document). CRISP-lite rows prune the
documents to C k-means centroids first (recall still against the exact top-100 of the *unpruned* documents).

    python benchmarks/muvera.py [--docs 100000] [--queries 100] [--dim 64] [--out benchmarks/muvera.json]

Timings are for the queries as one batch, one thread: exact = Chamfer of every query with every document (the
top-100 read off); MUVERA = query FDEs + one FAISS IndexFlatIP search over the document FDEs + exact Chamfer of
the candidates. Document FDE encoding and the index build are reported apart (an offline cost).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [  # (k_sim, reps, d_proj, d_final, candidates)
    (4, 10, 8, 0, 500), (4, 10, 8, 0, 1000), (3, 20, 8, 0, 1000), (5, 10, 8, 0, 1000), (4, 20, 16, 2048, 1000),
    (4, 10, 8, 0, 2000),
]


def rss() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--doc-vectors", type=int, default=16)
    ap.add_argument("--query-vectors", type=int, default=16)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--crisp", default="8,4", help="CRISP-lite centroid counts to try (comma-separated; '' none)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "muvera.json"))
    args = ap.parse_args()
    import faiss

    from recembed.compact.muvera import FDEConfig, FDEEncoder, MuveraIndex, chamfer, planted_sets, prune_sets

    faiss.omp_set_num_threads(1)
    k = args.k
    t = time.perf_counter()
    data = planted_sets(args.docs, args.queries, doc_vectors=args.doc_vectors, query_vectors=args.query_vectors,
                        dim=args.dim, seed=0)
    docs, dl, qs, ql = data["docs"], data["doc_lengths"], data["queries"], data["query_lengths"]
    out = {"setup": {"docs": args.docs, "queries": args.queries, "dim": args.dim, "doc_vectors": f"{args.doc_vectors // 2}"
                     f"-{args.doc_vectors} (uniform)", "query_vectors": args.query_vectors, "k": k,
                     "synthetic": "planted_sets(topics=1000, topics_per_doc=3, noise=0.7, seed=0)",
                     "generate_s": round(time.perf_counter() - t, 1)}}
    t = time.perf_counter()
    exact = chamfer(qs, docs, ql, dl, batch=1024)
    exact_s = time.perf_counter() - t
    truth = np.argsort(-exact, axis=1)[:, :k]
    out["exact"] = {"seconds": round(exact_s, 3), "ms_per_query": round(1000 * exact_s / len(qs), 2),
                    "bytes_per_doc": int(4 * args.dim * dl.mean()), "target_at_1": float((truth[:, 0] ==
                                                                                         data["targets"]).mean())}
    print("exact", out["exact"], "rss", rss(), flush=True)
    rows = []

    def run(label: str, index_docs: np.ndarray, index_lens: np.ndarray, cfg: tuple) -> None:
        k_sim, reps, d_proj, d_final, cand = cfg
        enc = FDEEncoder(FDEConfig(dim=args.dim, k_sim=k_sim, reps=reps, d_proj=d_proj, d_final=d_final, seed=0))
        t0 = time.perf_counter()
        index = MuveraIndex(index_docs, enc, index_lens)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        ids, _ = index.search(qs, k, candidates=cand, q_lengths=ql)
        search = time.perf_counter() - t0
        t0 = time.perf_counter()
        fde_ids, _ = index.search(qs, k, q_lengths=ql, rerank=False)
        fde_only = time.perf_counter() - t0
        row = {"docs": label, "k_sim": k_sim, "reps": reps, "d_proj": d_proj, "d_final": d_final,
               "fde_dim": enc.out_dim, "candidates": cand, f"recall@{k}": round(recall(ids, truth), 4),
               f"fde_only_recall@{k}": round(recall(fde_ids, truth), 4), "search_s": round(search, 3),
               "ms_per_query": round(1000 * search / len(qs), 2), "speedup": round(exact_s / search, 1),
               "fde_only_ms_per_query": round(1000 * fde_only / len(qs), 2), "build_s": round(build, 1),
               "fde_bytes_per_doc": index.fde_bytes_per_doc, "peak_rss_mb": rss()}
        rows.append(row)
        print(row, flush=True)
        del index

    for cfg in CONFIGS:
        run("full", docs, dl, cfg)
    for c in [int(x) for x in args.crisp.split(",") if x]:
        t0 = time.perf_counter()
        pruned, plens = prune_sets(docs, c, dl, seed=0)
        prune_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pex = chamfer(qs, pruned, ql, plens, batch=2048)
        pex_s = time.perf_counter() - t0
        rows.append({"docs": f"crisp-lite C={c} (exact Chamfer on centroids)", "candidates": "all",
                     f"recall@{k}": round(recall(np.argsort(-pex, axis=1)[:, :k], truth), 4),
                     "search_s": round(pex_s, 3), "ms_per_query": round(1000 * pex_s / len(qs), 2),
                     "speedup": round(exact_s / pex_s, 1), "build_s": round(prune_s, 1),
                     "vectors_per_doc": float(plens.mean()), "peak_rss_mb": rss()})
        print(rows[-1], flush=True)
        run(f"crisp-lite C={c}", pruned, plens, (4, 10, 8, 0, 1000))
    out["rows"] = rows
    out["goal"] = {"recall_ge_0.9_at_ge_5x": [r for r in rows if r.get(f"recall@{k}", 0) >= 0.9
                                               and r.get("speedup", 0) >= 5]}
    out["peak_rss_mb"] = rss()
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"\nexact Chamfer: {out['exact']['ms_per_query']} ms/query ({args.docs} docs)\n")
    print(f"| documents | k_sim | reps | d_proj | d_final | FDE dims | candidates | recall@{k} | FDE-only recall@{k} "
          "| ms/query | speed-up vs exact | build s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['docs']} | {r.get('k_sim', '—')} | {r.get('reps', '—')} | {r.get('d_proj', '—')} | "
              f"{r.get('d_final', '—')} | {r.get('fde_dim', '—')} | {r['candidates']} | {r[f'recall@{k}']:.4f} | "
              f"{r.get(f'fde_only_recall@{k}', '—')} | {r['ms_per_query']} | {r['speedup']}× | {r['build_s']} |")
    print(f"\ngoal (recall >= 0.9 at >= 5x): {'met' if out['goal']['recall_ge_0.9_at_ge_5x'] else 'not met'}")


if __name__ == "__main__":
    main()
