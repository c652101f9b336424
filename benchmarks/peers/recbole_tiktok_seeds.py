"""RecBole 1.2.1's LightGCN on tiktok-mm's given split over several seeds: the seed spread of the ID-only peer bar.

Peer measurement for the [Content] goal (our best multimodal model vs the best ID-only model on tiktok-mm's test
NDCG@20). PEERS.md has one RecBole LightGCN run (seed 2020: N@20 0.0436); our own models vary by +-0.003 with the
seed, so the bar is measured the same way. Run with the peers venv (README.md in this folder):

    /tmp/peers-venv/bin/python benchmarks/peers/recbole_tiktok_seeds.py --seeds 2020 1 2 3 4 \
        --out benchmarks/peers/recbole_tiktok_lightgcn_seeds.json

Setup: /work/shared/data/tiktok-mm/{train,valid,test}.tsv written verbatim as RecBole benchmark files (loaded
pairs checked against the files), full ranking over all items (validation masks training items, test masks
training and validation items), PEERS.md's protocol: validation NDCG@10 every epoch, ``stopping_step`` 10, at
most 300 epochs, embedding size 64, otherwise RecBole's LightGCN defaults (2 layers, reg 1e-5, Adam lr 1e-3,
batch 2048); the best-validation checkpoint is tested. ``init_seed(seed)`` before loading and before building
the model, as ``run_recbole``. Imports ``recbole_eval_timing`` first for its four runtime compatibility patches.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPLIT_DIR = Path("/work/shared/data/tiktok-mm")
DATASET = "tiktok-split"
PARTS = ("train", "valid", "test")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[2020])
    ap.add_argument("--model", default="LightGCN")
    ap.add_argument("--data-root", type=Path, default=Path("/tmp/recbole-tiktok"))
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/recbole-tiktok-work"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    ev = importlib.import_module("recbole_eval_timing")  # applies the compatibility patches first
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    out_dir = args.data_root / DATASET
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = {}
    for part in PARTS:
        pairs = ev.read_pairs(SPLIT_DIR / f"{part}.tsv")
        expected[part] = set(pairs)
        with (out_dir / f"{DATASET}.{part}.inter").open("w") as fh:
            fh.write("user_id:token\titem_id:token\n")
            fh.writelines(f"{u}\t{i}\n" for u, i in pairs)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.work_dir)
    runs = []
    for seed in args.seeds:
        config = Config(model=args.model, dataset=DATASET, config_dict={
            "data_path": str(args.data_root), "benchmark_filename": list(PARTS),
            "load_col": {"inter": ["user_id", "item_id"]},
            "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
            "metrics": ["Recall", "NDCG"], "topk": [10, 20], "valid_metric": "NDCG@10",
            "eval_step": 1, "stopping_step": 10, "epochs": 300, "seed": seed, "reproducibility": True,
            "use_gpu": False, "device": "cpu", "show_progress": False, "embedding_size": 64,
            "checkpoint_dir": str(args.work_dir / f"saved-{seed}"), "state": "WARNING"})
        init_seed(seed, True)
        logging.getLogger().setLevel(logging.WARNING)
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        for part, loader in zip(PARTS, (train_data, valid_data, test_data)):
            if ev.loaded_pairs(loader._dataset) != expected[part]:
                raise SystemExit(f"RecBole's {part} set differs from {SPLIT_DIR / (part + '.tsv')}")
        init_seed(seed, True)
        model = get_model(config["model"])(config, train_data._dataset).to("cpu")
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        t0 = time.perf_counter()
        best_valid, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        fit_s = time.perf_counter() - t0
        test = dict(trainer.evaluate(test_data, load_best_model=True, show_progress=False))
        row = {"seed": seed, "best_valid_ndcg@10": float(best_valid), "fit_seconds": round(fit_s, 1),
               "test": {k: float(v) for k, v in test.items()}}
        runs.append(row)
        print(json.dumps(row), flush=True)
    n20 = [r["test"]["ndcg@20"] for r in runs]
    mean = sum(n20) / len(n20)
    sd = (sum((x - mean) ** 2 for x in n20) / max(1, len(n20) - 1)) ** 0.5
    args.out.write_text(json.dumps({"model": args.model, "dataset": "tiktok-mm (given split)", "runs": runs,
                                    "ndcg@20_mean": mean, "ndcg@20_sd": sd}, indent=2) + "\n")
    print(f"{args.model} test NDCG@20 over seeds {args.seeds}: mean {mean:.4f} sd {sd:.4f}")


if __name__ == "__main__":
    main()
