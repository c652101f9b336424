"""RecBole 1.2.1's hyperparameter search (``run_hyper.py``: ``HyperTuning`` on HyperOpt) on ML-100K, for the
[Tune] side-by-side with ``recembed tune``.

Run with the peers venv (README.md in this folder; plus ``pip install hyperopt``), never the project's own:

    /tmp/peers-venv/bin/python benchmarks/peers/recbole_hyper.py --model BPR --budget 600 \
        --out benchmarks/peers/recbole_hyper_bpr.json

What it runs: the PEERS split (``/work/shared/data/ml-100k/splits/random-80-10-10``) written as RecBole benchmark
files, loaded exactly as ``recbole_eval_timing.py`` does (its runtime monkeypatches applied by importing it);
RecBole's own ``HyperTuning`` with its own trial function (``recbole.quick_start.objective_function``: a full
``run_recbole``-style fit per trial -- data loading, training to early stopping on valid NDCG@10 with
``stopping_step`` 10, at most 300 epochs -- and its test evaluation, which the search does not read) and its
TPE algorithm (``algo="bayes"``). Deviation from ``run_hyper.py``: ``fmin`` is called with ``timeout=--budget``
(``HyperTuning.run`` has no time budget; its ``max_evals`` is set high and its ``early_stop`` of 10 trials
without improvement is kept). The space mirrors recembed's declared BPR space without ``reg_weight`` (RecBole's
BPR has no L2 term; the recembed side runs with ``--set reg_weight=0``): ``learning_rate`` log-uniform on
[1e-4, 1e-2], ``embedding_size`` in {32, 64, 128}. One torch thread. Output: every trial's parameters, best
validation NDCG@10 and the wall second it finished, so the two searches can be plotted as best-so-far against
time (``benchmarks/tune_vs_recbole.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import recbole_eval_timing as base  # noqa: E402  (applies the monkeypatches before RecBole is imported)
import torch  # noqa: E402

if not hasattr(np, "bool8"):  # one more runtime patch: recbole.quick_start imports ray.tune, whose logger needs it
    np.bool8 = np.bool_
import yaml  # noqa: E402
from hyperopt import Trials, fmin  # noqa: E402
from recbole.quick_start import objective_function  # noqa: E402
from recbole.trainer import HyperTuning  # noqa: E402

SPACES = {
    "BPR": f"learning_rate loguniform {math.log(1e-4)},{math.log(1e-2)}\nembedding_size choice [32,64,128]\n",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="BPR", choices=sorted(SPACES))
    ap.add_argument("--budget", type=float, default=600.0, help="seconds of search")
    ap.add_argument("--data-root", type=Path, default=Path("/tmp/recbole-hyper-data"))
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/recbole-hyper-work"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out = args.out.resolve()  # the search runs in --work-dir (RecBole writes there)
    torch.set_num_threads(1)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    base.write_benchmark_files(args.data_root)
    fixed = {
        "model": args.model, "dataset": base.DATASET, "data_path": str(args.data_root),
        "benchmark_filename": list(base.PARTS), "load_col": {"inter": ["user_id", "item_id"]},
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"], "topk": [10, 20], "valid_metric": "NDCG@10",
        "epochs": 300, "stopping_step": 10, "seed": 2020, "reproducibility": True, "use_gpu": False,
        "device": "cpu", "show_progress": False, "checkpoint_dir": str(args.work_dir / "saved"), "state": "WARNING",
    }
    config_file = args.work_dir / "fixed.yaml"
    config_file.write_text(yaml.safe_dump(fixed))
    params_file = args.work_dir / "space.txt"
    params_file.write_text(SPACES[args.model])
    logging.getLogger().setLevel(logging.WARNING)

    rows: list[dict] = []
    t0 = time.perf_counter()

    def objective(config_dict=None, config_file_list=None, saved=True):  # noqa: ANN001, ANN202 - RecBole's signature
        start = time.perf_counter() - t0
        result = objective_function(config_dict=config_dict, config_file_list=config_file_list, saved=saved)
        rows.append({"trial": len(rows), "params": {k: v for k, v in (config_dict or {}).items()},
                     "valid_ndcg@10": float(result["best_valid_score"]), "started_s": round(start, 2),
                     "finished_s": round(time.perf_counter() - t0, 2),
                     "test_ndcg@10": float(result["test_result"]["ndcg@10"])})
        print(f"trial {len(rows) - 1}: valid ndcg@10 {rows[-1]['valid_ndcg@10']:.4f} at "
              f"{rows[-1]['finished_s']:.0f}s {rows[-1]['params']}", flush=True)
        return result

    hp = HyperTuning(objective, algo="bayes", early_stop=10, max_evals=1000, params_file=str(params_file),
                     fixed_config_file_list=[str(config_file)])
    trials = Trials()
    import os

    os.chdir(args.work_dir)  # RecBole writes log_tensorboard/ and saved/ into the working directory
    stopped = "budget"
    try:
        fmin(hp.trial, hp.space, algo=hp.algo, max_evals=hp.max_evals, trials=trials, timeout=args.budget,
             early_stop_fn=hp.early_stop_fn, show_progressbar=False)
        if len(rows) < hp.max_evals and time.perf_counter() - t0 < args.budget:
            stopped = "early_stop (10 trials without improvement)"
    except Exception as exc:  # noqa: BLE001 - record how the search ended
        stopped = f"error: {exc!r}"
    wall = time.perf_counter() - t0
    best = max(rows, key=lambda r: r["valid_ndcg@10"]) if rows else None
    out = {"peer": "RecBole 1.2.1 HyperTuning (hyperopt TPE)", "model": args.model, "budget_s": args.budget,
           "wall_s": round(wall, 1), "stopped_by": stopped, "space": SPACES[args.model], "trials": rows,
           "best": best, "torch_threads": 1}
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps({k: out[k] for k in ("wall_s", "stopped_by", "best")}, indent=2))


if __name__ == "__main__":
    main()
