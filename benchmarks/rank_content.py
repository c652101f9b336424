"""[Rank] do content vectors and semantic IDs, as CTR features, beat the ID-only twin?

Each comparison fits two rankers with default settings on the same rows and split, differing only in the fields,
and compares their test AUC with a paired bootstrap over users (``recembed.ranking.metrics.paired_bootstrap_auc``:
both models scored on the same resampled users' rows). Besides all test rows, the rows whose item has no training
row (cold items) are compared on their own where there are any -- where content should matter most.

* ``ml-100k-ctr-mm`` (384-d item text vectors of ml-100k-text + the previous 20 items) vs ``ml-100k-ctr-seq``
  (the same without the text), deepfm and din;
* ``tiktok-mm`` (given split; interactions as clicks, 4 uniform non-clicks each) with its 128-d image and audio
  vectors vs without them, deepfm;
* ``amazon-seq-din`` with LETTER's semantic-ID prefixes of the item (``sid_features``, 2 levels) vs without, deepfm.

    python benchmarks/rank_content.py --data-root ../shared/data [--only tiktok,ml100k,sid] [--seeds 2020,2021]

Results: ``benchmarks/rank_content.json`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def fit_predict(model: str, data, seed: int) -> tuple[np.ndarray, dict]:  # noqa: ANN001
    from recembed.models.registry import model_class
    from recembed.options import FitOptions

    m = model_class(model)()
    t = time.perf_counter()
    m.fit(data.train, schema=data.schema(), valid=data.valid, options=FitOptions(seed=seed, show_progress=False,
                                                                                 threads=1))
    fit_s = time.perf_counter() - t
    return m.predict(data.test), {"fit_s": round(fit_s, 1), "epochs": len(m.train_result_.history),
                                  "best_epoch": m.train_result_.best_epoch}


def without(data, kinds: tuple[str, ...] = (), names: tuple[str, ...] = ()):  # noqa: ANN001, ANN201
    out = copy.copy(data)
    out.fields = [f for f in data.fields if f.kind not in kinds and f.name not in names]
    return out


def cold_rows(data, by_clicks: bool) -> np.ndarray:  # noqa: ANN001
    """Test rows whose item has no training row (impression data) / no training click (interactions with sampled
    non-clicks, where any item can be drawn as a non-click)."""
    rows = data.train.labels == 1 if by_clicks else slice(None)
    seen = set(np.asarray(data.train.columns["item_id"])[rows].tolist())
    return np.array([i not in seen for i in np.asarray(data.test.columns["item_id"]).tolist()])


def compare(label: str, model: str, with_content, id_only, seeds: list[int], n_boot: int,  # noqa: ANN001
            cold_by_clicks: bool = False) -> dict:
    from recembed.ranking.metrics import paired_bootstrap_auc

    test = with_content.test
    cold = cold_rows(with_content, cold_by_clicks)
    row = {"comparison": label, "model": model, "rows": len(test), "cold_item_rows": int(cold.sum()),
           "fields_with": [f.name for f in with_content.fields], "fields_without": [f.name for f in id_only.fields],
           "seeds": []}
    for seed in seeds:
        pa, ia = fit_predict(model, with_content, seed)
        pb, ib = fit_predict(model, id_only, seed)
        res = {"seed": seed, "with": ia, "without": ib,
               "all": paired_bootstrap_auc(test.users, test.labels, pa, pb, n_boot=n_boot, seed=seed)}
        if cold.sum() >= 50 and 0 < test.labels[cold].sum() < cold.sum():
            res["cold"] = paired_bootstrap_auc(test.users[cold], test.labels[cold], pa[cold], pb[cold],
                                               n_boot=n_boot, seed=seed)
        row["seeds"].append(res)
        a = res["all"]
        print(f"{label} {model} seed {seed}: {a['auc_a']:.4f} vs {a['auc_b']:.4f} ({a['diff']:+.4f} "
              f"[{a['ci_low']:+.4f}, {a['ci_high']:+.4f}])" + (f"; cold items {res['cold']['diff']:+.4f} "
                                                               f"[{res['cold']['ci_low']:+.4f}, "
                                                               f"{res['cold']['ci_high']:+.4f}]"
                                                               if "cold" in res else ""), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--only", default="ml100k,tiktok,sid")
    ap.add_argument("--seeds", default="2020")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--out", default="benchmarks/rank_content.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from recembed.data import catalog
    from recembed.data.splits import make_split
    from recembed.ranking.datasets import load_ctr
    from recembed.ranking.implicit import ctr_from_split

    seeds = [int(s) for s in args.seeds.split(",")]
    only = set(args.only.split(","))
    rows, t0 = [], time.perf_counter()
    if "ml100k" in only:
        mm, seq = load_ctr("ml-100k-ctr-mm", args.data_root), load_ctr("ml-100k-ctr-seq", args.data_root)
        for model in ("deepfm", "din"):
            rows.append(compare("ml-100k-ctr-mm vs -seq (text vectors)", model, mm, seq, seeds, args.n_boot))
    if "tiktok" in only:
        ds, default = catalog.load_any("tiktok-mm", args.data_root)
        data = ctr_from_split(ds, make_split(ds, default, seed=2020), negatives=4, seed=2020)
        rows.append(compare("tiktok-mm: image + audio vectors vs none", "deepfm", data, without(data, ("vector",)),
                            seeds, args.n_boot, cold_by_clicks=True))
    if "sid" in only:
        from recembed.ranking.features import add_semantic_id_fields, load_item_codes

        din = load_ctr("amazon-seq-din", args.data_root)
        path = str(Path(args.data_root) / "amazon-sid" / "Beauty.letter.index.json")
        codes, item_ids = load_item_codes(path, din, id_offset=-1)
        with_sid = add_semantic_id_fields(din, codes, item_ids, ngram="prefix", levels=2)
        rows.append(compare("amazon-seq-din + LETTER semantic-ID prefixes vs none", "deepfm", with_sid, din, seeds,
                            args.n_boot, cold_by_clicks=True))
    out = {"rows": rows, "seconds": round(time.perf_counter() - t0, 1),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    (ROOT / args.out).write_text(json.dumps(out, indent=1, default=float))
    print("\n| comparison | model | seed | with / without (test AUC) | difference [95% CI over users] | cold-item rows:"
          " difference [95% CI] |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        for s in r["seeds"]:
            a = s["all"]
            cold = s.get("cold")
            c = (f"{cold['diff']:+.4f} [{cold['ci_low']:+.4f}, {cold['ci_high']:+.4f}] ({r['cold_item_rows']:,}"
                 " rows)") if cold else "—"
            print(f"| {r['comparison']} | {r['model']} | {s['seed']} | {a['auc_a']:.4f} / {a['auc_b']:.4f} | "
                  f"{a['diff']:+.4f} [{a['ci_low']:+.4f}, {a['ci_high']:+.4f}] | {c} |")


if __name__ == "__main__":
    main()
