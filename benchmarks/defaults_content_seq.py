"""[Polish] Defaults of the content, sequential and generative models: each model fitted with no ``--set``
(its default configuration) on the protocol where this repo records its figure, against a bar.

The bar (issue #20, item 4): RecBole 1.2.1's default figure for the same model where PEERS.md has one, else
95% of the best figure benchmarks/RESULTS.md records for the model on that protocol (same metric). Content
models: ml-100k-text (MMRec ``x_label`` split; the recorded figures are test NDCG@20, so the bar is on N@20;
N@10 is reported too). Sequential models: ml-100k leave-one-out by time (PEERS.md's protocol), UniSRec on
scientific (the given split, where RESULTS.md records it). TIGER: amazon-seq (the only protocol with a
recorded figure) — hours of CPU, so it runs only with ``--with-tiger``.

    python benchmarks/defaults_content_seq.py --data-root ../shared/data            # every row but TIGER
    python benchmarks/defaults_content_seq.py --models alpharec,sasrec              # a subset
    python benchmarks/defaults_content_seq.py --table-only                          # re-read RUN_DIR/metrics.json

Each row is one ``recembed fit MODEL`` process (``--threads 1 --no-progress --ks 10,20``, data options only,
no ``--set``) writing ``benchmarks/out/runs/defaults-cs-MODEL``; a row whose RUN_DIR/metrics.json exists is
re-read, not re-run, unless ``--rerun``. The markdown table goes to stdout and ``--table``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from foundation import ROOT, run_cli

TEXT = ["--text-columns", "title,genres,summary"]  # ml-100k-text: MiniLM text of title + genres + summary
ML100K_TEXT = "ml-100k-text (x_label split)"
LOO = "ml-100k, leave-one-out by time"
# model, data, split, data options, protocol, metric of the bar, best recorded (figure, where), RecBole default
ROWS = [
    ("vbpr", "ml-100k-text", None, TEXT, ML100K_TEXT, "ndcg@20", (0.3121, "[Content] ml-100k-text, defaults"), None),
    ("freedom", "ml-100k-text", None, TEXT, ML100K_TEXT, "ndcg@20",
     (0.3482, "[Content] ml-100k-text, dropout 0.3"), None),
    ("mgcn", "ml-100k-text", None, TEXT, ML100K_TEXT, "ndcg@20", (0.3495, "[Content] ml-100k-text, MMRec defaults"),
     None),
    ("bm3", "ml-100k-text", None, TEXT, ML100K_TEXT, "ndcg@20", (0.2417, "[Content] ml-100k-text, MMRec defaults"),
     None),
    ("alpharec", "ml-100k-text", None, TEXT, ML100K_TEXT, "ndcg@20", (0.3319, "[Content] ml-100k-text, defaults"),
     None),
    ("cease", "ml-100k-text", None, TEXT, ML100K_TEXT, "ndcg@20",
     (0.3681, "[Content] ml-100k-text, λ 500, α² 20"), None),
    ("mmultvae", "ml-100k-text", None, TEXT, ML100K_TEXT, "ndcg@20",
     (0.3442, "[Content] ml-100k-text, defaults, patience 30"), None),
    ("sasrec", "ml-100k", "loo", [], LOO, "ndcg@10",
     (0.1161, "[Sequential] ml-100k loo, 300-s budget, patience 0"), (0.0408, "PEERS.md, 4 epochs in 8 min")),
    ("gru4rec", "ml-100k", "loo", [], LOO, "ndcg@10", None, (0.0328, "PEERS.md, 7 epochs in 8 min")),
    ("bert4rec", "ml-100k", "loo", [], LOO, "ndcg@10", None, (0.0230, "PEERS.md, 3 epochs in 8 min")),
    ("unisrec", "scientific", "given", [], "scientific (given leave-one-out)", "ndcg@10",
     (0.0777, "[Sequential] scientific, text only, features=text_feat"), None),
    ("tiger", "amazon-seq", None, [], "amazon-seq (leave-one-out)", "ndcg@10",
     (0.0420, "[Generative] LETTER codes, 4 + 4 blocks, bidirectional, dropout 0.1, cosine over 34"), None),
]
EXPENSIVE = {"tiger"}  # hours on 2 CPU cores: only with --with-tiger


def bar_of(tuned: tuple | None, peer: tuple | None) -> float | None:
    """RecBole's default figure where there is one, else 95% of the best recorded figure."""
    if peer is not None:
        return peer[0]
    return None if tuned is None else round(0.95 * tuned[0], 4)


def table(results: dict) -> str:
    head = ("| model | dataset / protocol | default N@10 (test) | default, bar metric | tuned (best recorded, where) "
            "| peer default (RecBole) | bar | met? | epochs (best) | fit s | peak RSS MiB | batch used |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, _data, _split, _opts, protocol, metric, tuned, peer in ROWS:
        r = results.get(model)
        bar = bar_of(tuned, peer)
        if not r or r.get("error") or not r.get("test"):
            why = (r or {}).get("error", "not run")
            lines.append(f"| {model} | {protocol} | {why} | | {_fig(tuned)} | {_fig(peer)} | {bar} ({metric}) | "
                         "not measured | | | | |")
            continue
        test, tr = r["test"], r.get("training", {})
        value = test.get(metric)
        met = "—" if bar is None or value is None else ("yes" if value >= bar else
                                                       f"no ({100 * (value / bar - 1):+.1f}%)")
        batch = r.get("auto_resolved", {}).get("batch_size", "config")
        lines.append(f"| {model} | {protocol} | {test.get('ndcg@10', float('nan')):.4f} | {metric} "
                     f"{value:.4f} | {_fig(tuned)} | {_fig(peer)} | {bar} | {met} | {tr.get('epochs_run', '—')} "
                     f"({tr.get('best_epoch', '—')}) | {r.get('fit_seconds', '—')} | {r.get('peak_rss_mb', '—')} "
                     f"| {batch} |")
    return "\n".join(lines)


def _fig(x: tuple | None) -> str:
    return "—" if x is None else f"{x[0]:.4f} ({x[1]})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--runs", default=str(ROOT / "benchmarks" / "out" / "runs"))
    ap.add_argument("--models", default=None, help="Comma-separated subset of the rows' models.")
    ap.add_argument("--with-tiger", action="store_true", help="Also fit TIGER on amazon-seq (hours on 2 cores).")
    ap.add_argument("--rerun", action="store_true", help="Fit again even where RUN_DIR/metrics.json exists.")
    ap.add_argument("--table-only", action="store_true", help="Only re-read the runs and print the table.")
    ap.add_argument("--table", default=str(ROOT / "benchmarks" / "out" / "defaults_content_seq.md"))
    args = ap.parse_args()
    wanted = set(args.models.split(",")) if args.models else None
    results: dict = {}
    for model, data, split, opts, _protocol, _metric, _tuned, _peer in ROWS:
        if wanted and model not in wanted:
            continue
        out = Path(args.runs) / f"defaults-cs-{model}"
        done = (out / "metrics.json").exists() and not args.rerun
        if done or args.table_only or (model in EXPENSIVE and not args.with_tiger):
            if (out / "metrics.json").exists():
                results[model] = {**json.loads((out / "metrics.json").read_text()), **_config(out)}
            continue
        results[model] = {**run_cli(model, data, split, out, args.data_root, [], ["--threads", "1", *opts]),
                          **_config(out)}
        r = results[model]
        print(model, r.get("error", ""), {k: round(v, 4) for k, v in r.get("test", {}).items()
                                          if k in ("ndcg@10", "ndcg@20")}, "epochs",
              r.get("training", {}).get("epochs_run"), "best", r.get("training", {}).get("best_epoch"),
              "fit s", r.get("fit_seconds"), file=sys.stderr, flush=True)
    md = table(results)
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    Path(args.table).write_text(md + "\n")
    print(md)


def _config(out: Path) -> dict:
    """The run's ``auto_resolved`` values (config.json), e.g. the batch ``min_steps`` chose."""
    path = out / "config.json"
    return {"auto_resolved": json.loads(path.read_text()).get("auto_resolved", {})} if path.exists() else {}


if __name__ == "__main__":
    main()
