"""Time RecBole 1.2.1's full-ranking evaluation on MovieLens-100K with a fixed, given split.

Peer measurement for recembed's evaluator; run it with the separate peers venv (see README.md in this
folder), never with the project's own environment:

    /tmp/peers-venv/bin/python benchmarks/peers/recbole_eval_timing.py \
        --out benchmarks/peers/recbole_ml100k_eval.json

Setup
-----
* Data: the random 80/10/10 per-user split in /work/shared/data/ml-100k/splits/random-80-10-10/
  ({train,valid,test}.tsv, header ``user_id<TAB>item_id``, external MovieLens ids). The script writes
  RecBole benchmark files ``ml-100k-split.{train,valid,test}.inter`` (header ``user_id:token<TAB>item_id:token``)
  into a temporary directory (default /tmp/recbole-data) and sets ``benchmark_filename: [train, valid, test]``,
  so RecBole trains, validates and tests on exactly those sets (no RS re-split, no filtering). After loading,
  the (user, item) pairs of each RecBole split are mapped back to external ids and compared with the files;
  the script aborts if they differ.
* Protocol (as in /work/shared/benchmarks/PEERS.md): ``eval_args.mode: full`` (all 1,682 items ranked),
  metrics Recall, MRR, NDCG, Hit, Precision at topk [10, 20], valid_metric NDCG@10, seed 2020, all users with
  a test item (943). Validation masks train items; test masks train + valid items (RecBole's samplers).
* Models: Pop, ItemKNN, EASE with RecBole's default hyper-parameters (ItemKNN k=100, shrink=0; EASE
  reg_weight=250), and BPR with ``epochs: 1`` (embedding size 64) to time evaluation of an embedding model.
  Pop runs, as in PEERS.md, with ``train_neg_sample_args: None``; "Pop-count-fixed" is the same with
  ``Pop.calculate_loss`` replaced by an ``index_add_`` count (RecBole's ``item_cnt[item, :] += 1`` counts an
  item at most once per 2048-row batch).
  Each is fitted with ``trainer.fit(train, valid, saved=False)`` (fit seconds include RecBole's own
  validation pass), then ``trainer.evaluate(test_data, load_best_model=False, show_progress=False)`` is run
  ``--repeats`` times (default 5); the median and all repeats are reported. RecBole's default
  ``eval_batch_size: 4096`` means 4096 // 1683 = 2 users per evaluation batch on ML-100K; with
  ``--big-batch`` the same evaluation is also timed with one batch holding all users, to separate
  per-batch overhead from the scoring/ranking work.
* Timings are wall clock (``time.perf_counter``) in a single process, CPU only, ``torch`` threads left at
  their default.

Metrics: EASE reproduces PEERS.md exactly; ItemKNN and Pop differ in the 4th decimal (Pop as shipped more,
0.0675 vs 0.0600 NDCG@10) only because RecBole's internal item ids (which break score ties) follow first
appearance in the benchmark files, not in the raw ml-100k.inter; see README.md.

Runtime compatibility monkeypatches (RecBole 1.2.1 on numpy 2 / pandas 3 / scipy >= 1.12 / torch >= 2.6);
RecBole's source is not modified:
1. numpy 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_``; RecBole's ``Config`` assigns
   ``np.float = np.float_`` etc. and its metrics use ``np.float``. The removed aliases are restored before
   importing RecBole.
2. torch >= 2.6 defaults ``torch.load(weights_only=True)``, which refuses RecBole's checkpoints (they pickle
   the config). ``torch.load`` is wrapped to default to ``weights_only=False`` (only used if a checkpoint is
   reloaded; this script evaluates with ``load_best_model=False``).
3. pandas 3 (copy-on-write) turns ``feat[field].fillna(..., inplace=True)`` in ``Dataset._fill_nan`` into a
   no-op; ``_fill_nan`` is replaced by an equivalent that assigns the filled column back.
4. scipy >= 1.12 removed ``dok_matrix._update`` (used by RecBole's graph models, e.g. LightGCN); it is
   re-added as ``self._dict.update(...)``. Not needed by the models timed here; kept so the harness can be
   extended.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

# ---------------------------------------------------------------- monkeypatches (before importing RecBole)
import numpy as np

for _alias, _target in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
    if not hasattr(np, _alias):
        setattr(np, _alias, _target)

import scipy.sparse as _sp
import torch

_torch_load = torch.load


def _torch_load_compat(*args, **kwargs):
    kwargs.setdefault("weights_only", False)
    return _torch_load(*args, **kwargs)


torch.load = _torch_load_compat

if not hasattr(_sp.dok_matrix, "_update"):

    def _dok_update(self, data):
        self._dict.update(data)

    _sp.dok_matrix._update = _dok_update

from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.dataloader.general_dataloader import FullSortEvalDataLoader
from recbole.data.dataset import Dataset as _RBDataset
from recbole.utils import FeatureType, get_model, get_trainer, init_seed


def _fill_nan_compat(self):
    """Copy of Dataset._fill_nan that assigns instead of relying on in-place fillna."""
    for feat_name in self.feat_name_list:
        feat = getattr(self, feat_name)
        for field in feat:
            ftype = self.field2type[field]
            if ftype == FeatureType.TOKEN:
                feat[field] = feat[field].fillna(value=0)
            elif ftype == FeatureType.FLOAT:
                feat[field] = feat[field].fillna(value=feat[field].mean())
            else:
                dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                feat[field] = feat[field].apply(
                    lambda x, dtype=dtype: np.array([], dtype=dtype) if isinstance(x, float) else x
                )


_RBDataset._fill_nan = _fill_nan_compat

# ---------------------------------------------------------------- harness

SPLIT_DIR = Path("/work/shared/data/ml-100k/splits/random-80-10-10")
DATASET = "ml-100k-split"
PARTS = ("train", "valid", "test")
# name -> (RecBole model, config overrides). PEERS.md ran Pop without training negative sampling
# (``train_neg_sample_args: None``); with RecBole's default (1 uniform negative per positive, label 0) Pop's
# calculate_loss also counts the sampled negatives, which changes its (tie-dominated) ranking.
MODELS = {
    "Pop": ("Pop", {"train_neg_sample_args": None}),
    "Pop-count-fixed": ("Pop", {"train_neg_sample_args": None}),
    "ItemKNN": ("ItemKNN", {}),
    "EASE": ("EASE", {}),
    "BPR": ("BPR", {"epochs": 1}),
}


def _pop_calculate_loss_fixed(self, interaction):
    """Pop.calculate_loss with index_add_, so repeated items in one batch are all counted."""
    item = interaction[self.ITEM_ID]
    self.item_cnt.index_add_(0, item, torch.ones_like(item).unsqueeze(1))
    self.max_cnt = torch.max(self.item_cnt, dim=0)[0]
    return torch.nn.Parameter(torch.zeros(1)).to(self.device)


def read_pairs(path: Path) -> list[tuple[str, str]]:
    with path.open() as fh:
        header = fh.readline().rstrip("\n").split("\t")
        if header != ["user_id", "item_id"]:
            raise ValueError(f"unexpected header in {path}: {header}")
        return [tuple(line.rstrip("\n").split("\t")) for line in fh if line.strip()]


def write_benchmark_files(data_root: Path) -> dict[str, set[tuple[str, str]]]:
    out_dir = data_root / DATASET
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = {}
    for part in PARTS:
        pairs = read_pairs(SPLIT_DIR / f"{part}.tsv")
        expected[part] = set(pairs)
        with (out_dir / f"{DATASET}.{part}.inter").open("w") as fh:
            fh.write("user_id:token\titem_id:token\n")
            for u, i in pairs:
                fh.write(f"{u}\t{i}\n")
    return expected


def loaded_pairs(dataset) -> set[tuple[str, str]]:
    uids = dataset.inter_feat[dataset.uid_field].numpy()
    iids = dataset.inter_feat[dataset.iid_field].numpy()
    users = dataset.id2token(dataset.uid_field, uids)
    items = dataset.id2token(dataset.iid_field, iids)
    return set(zip(users.tolist(), items.tolist()))


def pairs_digest(pairs: set[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for u, i in sorted(pairs):
        h.update(f"{u}\t{i}\n".encode())
    return h.hexdigest()[:16]


def time_evaluate(trainer, data, repeats: int) -> tuple[list[float], dict]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = trainer.evaluate(data, load_best_model=False, show_progress=False)
        times.append(time.perf_counter() - t0)
    return times, dict(result)


def run_model(name: str, args, work_dir: Path, expected) -> dict:
    rb_model, extra = MODELS[name]
    config_dict = {
        "data_path": str(args.data_root),
        "benchmark_filename": list(PARTS),
        "load_col": {"inter": ["user_id", "item_id"]},
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"],
        "topk": [10, 20],
        "valid_metric": "NDCG@10",
        "seed": 2020,
        "reproducibility": True,
        "use_gpu": False,
        "device": "cpu",
        "show_progress": False,
        "checkpoint_dir": str(work_dir / "saved"),
        "state": "WARNING",
    }
    config_dict.update(extra)
    config = Config(model=rb_model, dataset=DATASET, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    logging.getLogger().setLevel(logging.WARNING)

    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    for part, loader in zip(PARTS, (train_data, valid_data, test_data)):
        got = loaded_pairs(loader._dataset)
        if got != expected[part]:
            raise SystemExit(
                f"{name}: RecBole's {part} set differs from the split file "
                f"({len(got)} vs {len(expected[part])} pairs, {len(got ^ expected[part])} differ)"
            )

    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    if name == "Pop-count-fixed":
        model.calculate_loss = _pop_calculate_loss_fixed.__get__(model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    t0 = time.perf_counter()
    # saved=False: no checkpoint; the model after the last epoch is evaluated.
    _, best_valid = trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    fit_s = time.perf_counter() - t0

    times, test_result = time_evaluate(trainer, test_data, args.repeats)
    n_users = len(test_data.uid_list)
    rec = {
        "model": name,
        "recbole_model": rb_model,
        "config_overrides": extra,
        "metrics": {k: test_result[k] for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10")},
        "all_test_metrics": test_result,
        "valid_metrics": dict(best_valid) if best_valid else None,
        "fit_seconds": fit_s,
        "eval_seconds_median": statistics.median(times),
        "eval_seconds": times,
        "n_eval_users": n_users,
        "n_items_ranked": test_data._dataset.item_num - 1,
        "eval_batch_size": config["eval_batch_size"],
        "eval_users_per_batch": test_data.step,
        "eval_batches": len(test_data),
    }

    if args.big_batch:
        # Same evaluation, one batch holding every test user (isolates per-batch overhead).
        config["eval_batch_size"] = n_users * test_data._dataset.item_num
        big = FullSortEvalDataLoader(config, test_data._dataset, test_data._sampler, shuffle=False)
        big_times, big_result = time_evaluate(trainer, big, args.repeats)
        if {k: big_result[k] for k in rec["metrics"]} != rec["metrics"]:
            print(f"warning: {name} one-batch metrics differ: {big_result}", file=sys.stderr)
        rec["one_batch_eval_seconds_median"] = statistics.median(big_times)
        rec["one_batch_eval_seconds"] = big_times
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON output path")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data-root", type=Path, default=Path("/tmp/recbole-data"))
    ap.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/tmp/recbole-work"),
        help="cwd while running (RecBole writes log_tensorboard/ and saved/ relative to it)",
    )
    ap.add_argument(
        "--no-big-batch",
        dest="big_batch",
        action="store_false",
        help="skip the extra one-batch evaluation timing",
    )
    args = ap.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config also parses --key=value command-line arguments
    args.out = args.out.resolve()
    args.data_root = args.data_root.resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.work_dir)

    expected = write_benchmark_files(args.data_root)
    results = []
    for name in args.models:
        rec = run_model(name, args, args.work_dir, expected)
        m = rec["metrics"]
        line = (
            f"{name:15s} R@10 {m['recall@10']:.4f} R@20 {m['recall@20']:.4f} N@10 {m['ndcg@10']:.4f} "
            f"N@20 {m['ndcg@20']:.4f} MRR@10 {m['mrr@10']:.4f} | fit {rec['fit_seconds']:.2f}s | "
            f"eval median {rec['eval_seconds_median']:.3f}s over {rec['n_eval_users']} users"
        )
        if "one_batch_eval_seconds_median" in rec:
            line += f" (one batch: {rec['one_batch_eval_seconds_median']:.3f}s)"
        print(line, flush=True)
        results.append(rec)

    payload = {
        "library": "RecBole",
        "versions": {
            "recbole": __import__("recbole").__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pandas": __import__("pandas").__version__,
            "scipy": __import__("scipy").__version__,
            "python": sys.version.split()[0],
        },
        "dataset": "ml-100k",
        "split": str(SPLIT_DIR),
        "split_sha256_16": {p: pairs_digest(s) for p, s in expected.items()},
        "protocol": "full ranking over all items; valid masks train, test masks train+valid; seed 2020",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "repeats": args.repeats,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
