"""[Generative] benchmarks: TIGER-style generative retrieval and semantic-ID features on Beauty (amazon-seq,
leave-one-out, full ranking, seen items masked). Every fit is its own `recembed fit` process, `--threads 2`.

    python benchmarks/generative.py                       # every run below
    python benchmarks/generative.py --match letter        # the runs whose key contains this text
    python benchmarks/generative.py --sid-dir runs/sid    # where `benchmarks/semantic_ids.py` saved its codes
    python benchmarks/generative.py --plot docs/img/generative_beauty.png   # validation curves of the runs

Semantic IDs: LETTER's Beauty codes (amazon-sid, 4 levels x 256, keys = S3-Rec ids - 1), codes made here by
`benchmarks/semantic_ids.py` (residual k-means / RQ-VAE on attribute and CF vectors), and random codes of the
same shape (the TIGER paper's ablation). Results are merged into --out (JSON, one key per run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from foundation import ROOT, merge_results, run_cli

# 64-d (the paper: 128) so that a 2-core CPU gets tens of epochs in the budget
TIGER = ["valid_sample=4096", "embedding_dim=64", "patience=5", "dropout=0.2", "time_budget_s=1800"]
TIGER_DROP4 = ["valid_sample=4096", "embedding_dim=64", "patience=8", "dropout=0.4", "time_budget_s=2100"]


def runs(data_root: str, sid_dir: Path) -> list[tuple[str, str, list[str]]]:
    letter = str(Path(data_root) / "amazon-sid" / "Beauty.letter.index.json")
    out = [
        ("tiger/letter", "tiger", [f"semantic_ids={letter}", "id_offset=-1", *TIGER]),
        ("tiger/random-3x256", "tiger", ["semantic_ids=random", "levels=3", "codebook=256", *TIGER]),
    ]
    if (sid_dir / "cf-rqvae" / "semantic_ids.json").exists():  # from benchmarks/semantic_ids.py --cf-run ...
        out.append(("tiger/cf-rqvae", "tiger", [f"semantic_ids={sid_dir / 'cf-rqvae'}", *TIGER]))
        out.append(("tiger/cf-rqvae/dropout0.4", "tiger", [f"semantic_ids={sid_dir / 'cf-rqvae'}", *TIGER_DROP4]))
        out.append(("tiger/cf-rqvae/alone", "tiger", [f"semantic_ids={sid_dir / 'cf-rqvae'}", *TIGER[:-1],
                                                       "patience=10", "time_budget_s=1500"]))
        out.append(("tiger/cf-rqvae/128d", "tiger", [f"semantic_ids={sid_dir / 'cf-rqvae'}", *TIGER[:-1],
                                                      "embedding_dim=128", "patience=10", "time_budget_s=1000"]))
        # the paper's encoder input (one token per code), otherwise as tiger/cf-rqvae: equal-epoch comparison
        out.append(("tiger/cf-rqvae/code-tokens", "tiger", [f"semantic_ids={sid_dir / 'cf-rqvae'}", *TIGER[:-1],
                                                             "encoder_tokens=code", "patience=0",
                                                             "time_budget_s=2400"]))
        # 128-d with a cosine learning-rate schedule over 50 epochs, no early stop (best validation epoch kept)
        out.append(("tiger/cf-rqvae/128d-cosine", "tiger", [f"semantic_ids={sid_dir / 'cf-rqvae'}", TIGER[0],
                                                             "embedding_dim=128", "dropout=0.2", "patience=0",
                                                             "lr_schedule=cosine", "epochs=50",
                                                             "time_budget_s=3900"]))
        # the paper's depth and width (4 + 4 blocks, 128-d), cosine over 80 epochs (about 2.5 h on one core; the
        # RESULTS row ran with --checkpoint-dir and --resume across two sessions)
        out.append(("tiger/cf-rqvae/4x4-cosine", "tiger", [f"semantic_ids={sid_dir / 'cf-rqvae'}", TIGER[0],
                                                            "embedding_dim=128", "num_layers=4", "decoder_layers=4",
                                                            "dropout=0.2", "patience=0", "lr_schedule=cosine",
                                                            "epochs=80"]))
    # LETTER's codes (text + CF) at the paper's depth and width, otherwise as tiger/cf-rqvae/4x4-cosine
    out.append(("tiger/letter/4x4-cosine", "tiger", [f"semantic_ids={letter}", "id_offset=-1", TIGER[0],
                                                      "embedding_dim=128", "num_layers=4", "decoder_layers=4",
                                                      "dropout=0.2", "patience=0", "lr_schedule=cosine", "epochs=80"]))
    # the same with the paper's encoder: bidirectional over the history, one example per (prefix, next item), so
    # batch_size counts targets (as the paper's 256) and an epoch has ~5.5x the optimizer steps; cosine over 26 (the
    # RESULTS row began on a 60-epoch schedule, shortened by --resume with epochs=32, then 26)
    bi = [TIGER[0], "embedding_dim=128", "num_layers=4", "decoder_layers=4", "patience=0", "encoder=bidirectional",
          "lr_schedule=cosine"]
    lt = [f"semantic_ids={letter}", "id_offset=-1"]
    out.append(("tiger/letter/4x4-bidirectional", "tiger", [*lt, *bi, "dropout=0.2", "epochs=26"]))
    # the paper's dropout (0.1) on a 34-epoch schedule (the best row), and no dropout on a 12-epoch one (it overfits
    # after ~8 epochs at the full rate: RESULTS.md)
    out.append(("tiger/letter/4x4-bidirectional-e34-dropout0.1", "tiger", [*lt, *bi, "dropout=0.1", "epochs=34"]))
    out.append(("tiger/letter/4x4-bidirectional-e12-dropout0", "tiger", [*lt, *bi, "dropout=0.0", "epochs=12"]))
    # its ablation: random codes of LETTER's shape (4 x 256 + a collision level), otherwise identical
    out.append(("tiger/random-4x256/4x4-bidirectional-e12-dropout0", "tiger", [
        "semantic_ids=random", "levels=4", "codebook=256", *bi, "dropout=0.0", "epochs=12"]))
    # (tiger/letter/4x4-cosine continued to 160 epochs: RESULTS.md has the --resume command of that row)
    sasrec = ["dropout=0.5", "patience=10", "time_budget_s=1200"]
    out += [
        ("sasrec/ids", "sasrec", sasrec),
        ("sasrec/letter+ids", "sasrec", [f"semantic_ids={letter}", "id_offset=-1", *sasrec]),
        ("sasrec/letter-only", "sasrec", [f"semantic_ids={letter}", "id_offset=-1", "sid_use_id=false", *sasrec]),
    ]
    if (sid_dir / "cf-rqvae" / "semantic_ids.json").exists():
        out.append(("sasrec/cf-rqvae+ids", "sasrec", [f"semantic_ids={sid_dir / 'cf-rqvae'}", *sasrec]))
    # TIGER's encoder was causal by default until 2026-11-27: the rows recorded then say so explicitly
    for _, model, sets in out:
        if model == "tiger" and not any(s.startswith("encoder=") for s in sets):
            sets.append("encoder=causal")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--sid-dir", default=str(ROOT / "runs" / "sid"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "generative.json"))
    ap.add_argument("--match", default=None, help="Only the runs whose key contains this text.")
    ap.add_argument("--threads", default="2", help="torch threads per fit (the recorded rows: 1, run side by side).")
    ap.add_argument("--plot", default=None, help="Only plot the validation curves of the existing runs to this PNG.")
    args = ap.parse_args()
    runs_dir = Path(args.out).parent / "runs"
    if args.plot:
        plot(runs_dir, args.data_root, Path(args.sid_dir), Path(args.plot))
        return
    for key, model, sets in runs(args.data_root, Path(args.sid_dir)):
        if args.match and args.match not in key:
            continue
        r = run_cli(model, "amazon-seq", None, runs_dir / ("beauty-" + key.replace("/", "-")), args.data_root, sets,
                    ["--threads", args.threads, "--ks", "5,10,20"])
        pick = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
        tr = r.get("training", {})
        print(key, r.get("error", ""), {k: round(v, 4) for k, v in r.get("test", {}).items() if k in pick},
              "fit", r.get("fit_seconds"), "eval", r.get("eval_seconds"), "epochs", tr.get("epochs_run"),
              "best", tr.get("best_epoch"), "rss", r.get("peak_rss_mb"), flush=True)
        merge_results(args.out, {f"beauty/{key}": r})


def plot(runs_dir: Path, data_root: str, sid_dir: Path, out: Path) -> None:
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, _, _ in runs(data_root, sid_dir):
        path = runs_dir / ("beauty-" + key.replace("/", "-")) / "history.json"
        if not path.exists():
            continue
        hist = [h for h in json.loads(path.read_text()) if "valid_ndcg@10" in h]
        ax.plot([h["epoch"] for h in hist], [h["valid_ndcg@10"] for h in hist], marker=".", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10 (tiger: 4,096 sampled users)")
    ax.set_title("Beauty (amazon-seq), leave-one-out: generative vs ID models")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print("->", out)


if __name__ == "__main__":
    main()
