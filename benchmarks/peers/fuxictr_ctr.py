"""FuxiCTR 2.3.10 as the CTR peer: DeepFM / DCNv2 / AutoInt / DIN on recembed's exact CTR splits.

Runs in its own venv (torch 2.13.0 CPU + fuxictr 2.3.10, see benchmarks/peers/README.md) and never imports
recembed. Inputs:

* ``--splits``: the folder written by ``benchmarks/export_ctr_splits.py`` (recembed's ``CTRData.write_csv``):
  ``<dataset>/{train,valid,test}.csv`` (``label`` + every field, token lists joined by ``^``) and
  ``<dataset>/fields.json`` (recembed's field kinds, ``min_count``, ``max_len``, ``vocab_from``, the token-list
  widths and vocabulary sizes it fits on the training part, the part sizes);
* ``--model-zoo``: FuxiCTR's ``model_zoo/`` (GitHub reczoo/FuxiCTR; the models are not in the wheel).

FuxiCTR's feature config is derived from ``fields.json``: ``categorical`` -> categorical (``min_categr_count`` =
recembed's ``min_count``); ``tags`` -> sequence, ``splitter: ^``, ``max_len`` = recembed's fitted width, padding
and truncation ``post`` (recembed keeps a tag list's first tokens), FuxiCTR's default mean pooling;
``sequence`` -> sequence, ``^``, ``max_len``, padding / truncation ``pre`` (the most recent tokens, as recembed),
``share_embedding: <vocab_from>`` (one vocabulary and embedding table with the target field). Every column is
read as a string (``dtype: str``). A ``meta`` column ``group_id`` (a copy of ``user_id``) gives FuxiCTR's gAUC
(``group_id: group_id``). FuxiCTR fits its vocabularies on train.csv only, as recembed does; the script checks
that the vocabulary sizes and the row counts / click rates it loaded equal recembed's (``checks`` in the JSON).

Models run with ``<Model>_default`` from ``model_zoo/<Model>/config/model_config.yaml`` (plus its ``Base``
section); what had to be set is listed per run under ``changed``: ``dataset_id`` / ``data_root`` /
``model_root`` (paths), ``verbose: 0``, ``metrics: [logloss, AUC, gAUC]`` + ``group_id`` (gAUC; the per-epoch
validation still computes only the monitor's AUC and logloss), and for DIN ``din_target_field`` /
``din_sequence_field`` (the template names Taobao's columns) plus ``feature_encoder: null`` on the behaviour
sequences (so DIN's attention sees the unpooled sequence). ``--set key=value`` (YAML values) overrides further
settings, e.g. ``--set embedding_dim=16 batch_size=1024 hidden_units=[64,64,64]`` for a run matched to
recembed's DeepFM; such runs get ``--tag`` in their key.

Each (dataset, model) trains in its own subprocess (own peak RSS, own ``import src``), with
``torch.set_num_threads(--threads)`` and Ray initialised with ``num_cpus=--threads`` (FuxiCTR 2.3.10 reads and
transforms data through Ray Data). ``--time-cap-seconds`` stops a fit after the epoch whose end passes the cap
(the best checkpoint so far is tested; ``capped: true``). Per epoch the JSON records ``train_s`` (the training
batches; ``step_s`` of it inside FuxiCTR's ``train_step``, the rest is waiting for the data loader),
``valid_s``, the validation AUC / logloss, and whether it was the best. Test predictions are written to
``<work-dir>/preds/<key>.npz`` (test.csv's row order, with each row's label and user to check it) for
cross-checking the metrics with recembed's (``--predict-only`` re-writes them from the saved best checkpoints).

    /tmp/fuxictr-venv/bin/python benchmarks/peers/fuxictr_ctr.py --splits /tmp/ctr-splits \\
        --model-zoo /tmp/fuxictr-src/model_zoo --runs ml-100k-ctr:DeepFM,DCNv2,AutoInt \\
        amazon-seq-din:DeepFM,DIN --threads 1 --out benchmarks/peers/fuxictr_results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

MODEL_DIRS = {"DeepFM": "DeepFM/DeepFM_torch"}  # others: model_zoo/<Model>
#: DIN's target / behaviour-sequence fields per dataset (FuxiCTR's template names Taobao's columns)
DIN_FIELDS = {"amazon-seq-din": ([("item_id", "cate")], [("hist_items", "hist_cates")])}


def feature_cols(manifest: dict) -> list[dict]:
    """FuxiCTR ``feature_cols`` from recembed's ``fields.json`` (see the module docstring)."""
    by = {f["name"]: f for f in manifest["fields"]}
    cols = []
    for f in manifest["fields"]:
        name, kind = f["name"], f["kind"]
        if kind == "categorical":
            col = {"name": name, "active": True, "dtype": "str", "type": "categorical",
                   "min_categr_count": f["min_count"]}
        elif kind in ("tags", "sequence"):
            recent = kind == "sequence"
            col = {"name": name, "active": True, "dtype": "str", "type": "sequence", "splitter": "^",
                   "max_len": manifest["lengths"][name], "padding": "pre" if recent else "post",
                   "min_categr_count": by[f["vocab_from"]]["min_count"] if f["vocab_from"] else f["min_count"]}
        else:
            raise SystemExit(f"field {name!r}: kind {kind!r} has no FuxiCTR mapping here")
        if f["vocab_from"]:
            col["share_embedding"] = f["vocab_from"]
        cols.append(col)
    cols.append({"name": "group_id", "active": True, "dtype": "str", "type": "meta",
                 "preprocess": "copy_from(user_id)"})
    return cols


def load_params(zoo: Path, model: str) -> dict:
    import yaml

    with open(zoo / MODEL_DIRS.get(model, model) / "config" / "model_config.yaml") as fh:
        cfg = yaml.safe_load(fh)
    return {**cfg.get("Base", {}), **cfg[f"{model}_default"]}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_cpu_seconds() -> float:
    """CPU seconds used machine-wide (from /proc/stat), to compare with our own and so flag contention."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:]
    busy = sum(int(x) for i, x in enumerate(parts) if i not in (3, 4))  # minus idle, iowait
    return busy / os.sysconf("SC_CLK_TCK")


def save_predictions(model, feature_map, params: dict, args: argparse.Namespace) -> dict:  # noqa: ANN001
    """Test predictions in test.csv's row order: ``<work-dir>/preds/<key>.npz`` (``pred``, ``label``, ``user``).

    FuxiCTR's own evaluation pairs each prediction with its batch's labels and group ids, so its metrics do
    not depend on row order, but Ray Data does not keep the file's order unless asked
    (``preserve_order``): this pass asks, and stores each row's label and raw user id so that the reader can
    check the alignment."""
    import pickle

    import numpy as np
    import ray
    import torch
    from fuxictr.pytorch.dataloaders import RankDataLoader

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    gen = RankDataLoader(feature_map, stage="test", **{**params, "shuffle": False})
    with open(os.path.join(feature_map.data_dir, "feature_processor.pkl"), "rb") as fh:
        vocab = pickle.load(fh).processor_dict["group_id::tokenizer"].vocab
    raw = {i: u for u, i in vocab.items()}
    preds, labels, users = [], [], []
    model.eval()
    with torch.no_grad():
        for batch in gen:
            preds.append(model.forward(batch)["y_pred"].cpu().numpy().reshape(-1))
            labels.append(model.get_labels(batch).cpu().numpy().reshape(-1))
            users.append(model.get_group_id(batch).numpy().reshape(-1))
    path = args.work_dir / "preds" / f"{args.key}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, pred=np.concatenate(preds).astype(np.float64), label=np.concatenate(labels),
             user=np.asarray([raw[int(i)] for i in np.concatenate(users)], dtype=object).astype(str))
    return {"file": str(path), "rows": int(sum(len(p) for p in preds))}


# ------------------------------------------------------------------------------------------------------------
# one (dataset, model) run, in a child process
# ------------------------------------------------------------------------------------------------------------
def run_one(args: argparse.Namespace) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    t_import = time.perf_counter()
    import logging

    import numpy as np
    import ray
    import torch
    import yaml

    torch.set_num_threads(args.threads)
    ray.init(num_cpus=args.threads, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
             ignore_reinit_error=True)
    import fuxictr
    from fuxictr.features import FeatureMap
    from fuxictr.preprocess import FeatureProcessor, build_dataset
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from fuxictr.pytorch.torch_utils import seed_everything

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(message)s")
    for name in ("ray", "ray.data"):  # Ray Data logs every dataset execution at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    model_dir = args.model_zoo / MODEL_DIRS.get(args.model, args.model)
    sys.path.insert(0, str(model_dir))
    import src  # the model zoo's package for this model

    import_s = time.perf_counter() - t_import

    dataset = args.dataset
    split_dir = args.splits / dataset
    manifest = json.loads((split_dir / "fields.json").read_text())
    params = load_params(args.model_zoo, args.model)
    defaults = dict(params)
    dataset_id = dataset.replace("-", "_")
    data_root = args.work_dir / "data"
    params.update({
        "dataset_id": dataset_id, "data_root": str(data_root), "data_format": "csv",
        "train_data": str(split_dir / "train.csv"), "valid_data": str(split_dir / "valid.csv"),
        "test_data": str(split_dir / "test.csv"), "min_categr_count": 1,
        "feature_cols": feature_cols(manifest), "label_col": {"name": "label", "dtype": "float"},
        "model_root": str(args.work_dir / "checkpoints" / args.key), "verbose": 0,
        "metrics": ["logloss", "AUC", "gAUC"], "group_id": "group_id", "gpu": -1,
    })
    if args.model == "DIN":
        target, seq = DIN_FIELDS[dataset]
        params["din_target_field"], params["din_sequence_field"] = target, seq
        params["feature_specs"] = [{"name": [f for t in seq for f in t], "feature_encoder": None}]
    for item in args.set or []:
        k, v = item.split("=", 1)
        params[k] = yaml.safe_load(v)
    changed = {k: params[k] for k in params if k not in ("feature_cols", "label_col")
               and (k not in defaults or defaults[k] != params[k])}

    # ---- CSV -> FuxiCTR's parquet (once per dataset; FuxiCTR skips it when feature_map.json exists) --------
    t = time.perf_counter()
    encoder = FeatureProcessor(**params)
    params["train_data"], params["valid_data"], params["test_data"] = build_dataset(encoder, **params)
    build_s = time.perf_counter() - t
    params["data_format"] = "parquet"
    feature_map = FeatureMap(dataset_id, os.path.join(params["data_root"], dataset_id))
    feature_map.load(os.path.join(feature_map.data_dir, "feature_map.json"), params)
    vocab_sizes = {n: s["vocab_size"] - 2 for n, s in feature_map.features.items()
                   if s["type"] in ("categorical", "sequence") and "share_embedding" not in s}
    max_lens = {n: s["max_len"] for n, s in feature_map.features.items() if s["type"] == "sequence"}

    # ---- model ---------------------------------------------------------------------------------------------
    seed_everything(seed=params["seed"])
    model = getattr(src, params["model"])(feature_map, **params)
    os.makedirs(model.model_dir, exist_ok=True)  # FuxiCTR's run_expid.py leaves this to the caller
    n_params = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    if args.predict_only:  # the best checkpoint of an earlier run of this key, test predictions only
        model.load_weights(model.checkpoint)
        return {"predictions": save_predictions(model, feature_map, params, args)}
    train_gen, valid_gen = RankDataLoader(feature_map, stage="train", **params)

    timeline: list[dict] = []
    state = {"step_s": 0.0, "valid": None, "valid_s": 0.0}
    fit_start = [0.0]
    capped = [False]
    orig_step, orig_eval, orig_epoch, orig_evaluate = model.train_step, model.eval_step, model.train_epoch, \
        model.evaluate

    def train_step(batch):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        out = orig_step(batch)
        state["step_s"] += time.perf_counter() - t0
        return out

    def evaluate(gen, metrics=None):  # noqa: ANN001, ANN202
        logs = orig_evaluate(gen, metrics=metrics)
        state["valid"] = {k: float(v) for k, v in logs.items()}
        return logs

    def eval_step():  # noqa: ANN202
        t0 = time.perf_counter()
        best_before = model._best_metric
        orig_eval()
        state["valid_s"] += time.perf_counter() - t0
        state["improved"] = model._best_metric != best_before

    def train_epoch(gen):  # noqa: ANN001, ANN202
        state.update(step_s=0.0, valid_s=0.0, valid=None, improved=False)
        cpu0 = machine_cpu_seconds()
        own0 = time.process_time() + sum(os.times()[2:4])
        t0 = time.perf_counter()
        orig_epoch(gen)
        wall = time.perf_counter() - t0
        busy = machine_cpu_seconds() - cpu0
        own = time.process_time() + sum(os.times()[2:4]) - own0
        elapsed = time.perf_counter() - fit_start[0]
        rec = {"epoch": model._epoch_index + 1, "train_s": round(wall - state["valid_s"], 3),
               "step_s": round(state["step_s"], 3), "valid_s": round(state["valid_s"], 3),
               "elapsed_s": round(elapsed, 2), "lr": model.optimizer.param_groups[0]["lr"],
               "is_best": bool(state["improved"]), "machine_cpu_s": round(busy, 1), "own_cpu_s": round(own, 1)}
        if state["valid"]:
            rec.update({f"valid_{k}": round(v, 6) for k, v in state["valid"].items()})
        timeline.append(rec)
        if args.verbose:
            print(f"[{args.key}] {json.dumps(rec)}", flush=True)
        if args.time_cap_seconds and elapsed > args.time_cap_seconds and not model._stop_training:
            capped[0] = True
            model._stop_training = True

    model.train_step, model.eval_step, model.train_epoch, model.evaluate = train_step, eval_step, train_epoch, \
        evaluate
    fit_start[0] = time.perf_counter()
    model.fit(train_gen, validation_data=valid_gen, **params)
    fit_s = time.perf_counter() - fit_start[0]
    model.evaluate = orig_evaluate

    t = time.perf_counter()
    valid = {k: float(v) for k, v in model.evaluate(valid_gen).items()}
    test_gen = RankDataLoader(feature_map, stage="test", **params)
    test = {k: float(v) for k, v in model.evaluate(test_gen).items()}
    eval_s = time.perf_counter() - t
    predictions = save_predictions(model, feature_map, params, args)

    labels = np.asarray(test_gen.dataset.select_columns(["label"]).to_pandas()["label"], dtype=np.float64)
    n_epochs = len(timeline)
    checks = {
        "rows": {p: manifest["sizes"][p] for p in ("train", "valid", "test")},
        "rows_fuxictr": {"train": train_gen.num_samples, "valid": valid_gen.num_samples,
                         "test": test_gen.num_samples},
        "test_click_rate": float(labels.mean()), "test_click_rate_recembed": manifest["click_rate"]["test"],
        "vocab_sizes_fuxictr": vocab_sizes, "vocab_sizes_recembed": manifest["vocab_sizes"],
        "max_len_fuxictr": max_lens, "max_len_recembed": manifest["lengths"],
    }
    checks["rows_equal"] = checks["rows"] == checks["rows_fuxictr"]
    checks["vocab_equal"] = vocab_sizes == manifest["vocab_sizes"]
    checks["max_len_equal"] = max_lens == manifest["lengths"]
    best = max((r for r in timeline if r["is_best"]), key=lambda r: r["epoch"], default=None)
    return {
        "dataset": dataset, "model": args.model, "tag": args.tag,
        "test": {"AUC": test.get("AUC"), "logloss": test.get("logloss"), "gAUC": test.get("gAUC")},
        "valid": {"AUC": valid.get("AUC"), "logloss": valid.get("logloss"), "gAUC": valid.get("gAUC")},
        "epochs": n_epochs, "best_epoch": best["epoch"] if best else None, "capped": capped[0],
        "stopped_early": bool(model._stop_training and not capped[0]),
        "seconds_per_epoch": round(sum(r["train_s"] for r in timeline) / max(n_epochs, 1), 3),
        "seconds_per_epoch_with_valid": round(sum(r["train_s"] + r["valid_s"] for r in timeline)
                                              / max(n_epochs, 1), 3),
        "step_seconds_per_epoch": round(sum(r["step_s"] for r in timeline) / max(n_epochs, 1), 3),
        "steps_per_epoch": len(train_gen), "fit_s": round(fit_s, 2), "test_eval_s": round(eval_s, 2),
        "build_dataset_s": round(build_s, 2), "import_s": round(import_s, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1), "parameters": n_params,
        "params": {k: v for k, v in params.items() if k not in ("feature_cols", "label_col")},
        "feature_cols": params["feature_cols"], "changed": changed, "predictions": predictions, "timeline": timeline, "checks": checks,
        "torch_threads": torch.get_num_threads(), "fuxictr": fuxictr.__version__, "torch": torch.__version__,
        "python": platform.python_version(),
    }


# ------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--splits", type=Path, default=Path("/tmp/ctr-splits"))
    ap.add_argument("--model-zoo", type=Path, default=Path("/tmp/fuxictr-src/model_zoo"))
    ap.add_argument("--runs", nargs="+", default=["ml-100k-ctr:DeepFM,DCNv2,AutoInt", "amazon-seq-din:DeepFM,DIN"],
                    help="DATASET:MODEL,MODEL,...")
    ap.add_argument("--set", nargs="*", default=[], help="key=value (YAML) overrides of every run's params")
    ap.add_argument("--tag", default="", help="suffix of the result keys (runs with --set)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-cap-seconds", type=float, default=900.0)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/fuxictr-work"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/peers/fuxictr_results.json"))
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--predict-only", action="store_true",
                    help="re-save the test predictions of earlier runs from their best checkpoints")
    ap.add_argument("--child", nargs=2, metavar=("DATASET", "MODEL"), help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    args.splits = args.splits.resolve()
    args.model_zoo = args.model_zoo.resolve()

    if args.child:
        args.dataset, args.model = args.child
        args.key = f"{args.dataset}/{args.model}" + (f"@{args.tag}" if args.tag else "")
        args.key = args.key.replace("/", "__")
        result = run_one(args)
        args.child_out.write_text(json.dumps(result, indent=2, default=str))
        return

    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for spec in args.runs:
        dataset, models = spec.split(":")
        for model in models.split(","):
            key = f"{dataset}/{model}" + (f"@{args.tag}" if args.tag else "")
            child_out = args.work_dir / "results" / (key.replace("/", "__") + ".json")
            child_out.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, os.path.abspath(__file__), "--child", dataset, model, "--child-out",
                   str(child_out), "--splits", str(args.splits), "--model-zoo", str(args.model_zoo),
                   "--threads", str(args.threads), "--time-cap-seconds", str(args.time_cap_seconds),
                   "--work-dir", str(args.work_dir), "--tag", args.tag,
                   *(["--set", *args.set] if args.set else []), *(["--verbose"] if args.verbose else []),
                   *(["--predict-only"] if args.predict_only else [])]
            print(f"== {key}", flush=True)
            t = time.perf_counter()
            rc = subprocess.call(cmd, env=env, cwd=str(args.work_dir))
            wall = time.perf_counter() - t
            if rc != 0:
                print(f"{key}: failed (exit {rc})", flush=True)
                continue
            r = json.loads(child_out.read_text())
            if args.predict_only:
                results[key]["predictions"] = r["predictions"]
                args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
                print(f"{key}: {r['predictions']}", flush=True)
                continue
            r["wall_s"] = round(wall, 2)
            results[key] = r
            args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
            print(f"{key}: test AUC {r['test']['AUC']:.4f} logloss {r['test']['logloss']:.4f} "
                  f"gAUC {r['test']['gAUC']:.4f}, {r['epochs']} epochs, {r['seconds_per_epoch']:.2f} s/epoch, "
                  f"wall {wall:.0f} s", flush=True)


if __name__ == "__main__":
    main()
