"""A run: fit one model on one split, evaluate it, and write everything to a run directory.

Run directory layout::

    RUN_DIR/
      metrics.json           test / valid metrics, slices, split hash, timings, peak memory; test_cold =
                             test ranked among the cold items only (items in test, none in training),
                             with its ``users`` and ``candidate_items``; omitted, with a
                             ``test_cold_omitted`` note, when fewer than MIN_COLD_USERS users have them
      config.json            model name + config, data, split spec, seed, versions
      model/                 model.json + model.safetensors
      users.parquet          user vocabulary (index order)
      items.parquet          item vocabulary (+ title when the item table has one)
      split.parquet          the split as (part, user_idx, item_idx[, timestamp]): re-scoring needs no data
                             root; timestamps (when the data has them) order histories by time
      (metrics.json ``matryoshka``: ``{"8": {"test": ..., "valid": ...}, ...}`` for a model fitted with
      ``matryoshka_dims``: each trained prefix width and the full width, see recembed.compact.matryoshka)
      per_user_test.parquet  per-user test metrics and top-K lists (for slices / significance)
      history.json, training_curve.png   per-epoch loss / validation metric (trainable models)
"""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from . import __version__
from .config import config_to_dict
from .data.dataset import Dataset
from .data.interactions import Interactions
from .data.splits import PARTS, Split
from .data.vocab import Vocabulary
from .errors import ConfigError, DataError
from .evaluation.ranking import DEFAULT_KS, EvalResult, evaluate
from .io import atomic_write, read_json, write_json
from .models.base import Recommender
from .models.registry import model_class
from .options import FitOptions

COLD_USER_POLICIES = ("skip", "include")
HEADLINE = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr@10", "hit@10")
#: ``test_cold`` is reported only when at least this many test users have a cold item (fewer: noise)
MIN_COLD_USERS = 20


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class RunResult:
    model: Recommender
    split: Split
    metrics: dict[str, Any]
    test: EvalResult | None
    valid: EvalResult | None


def evaluate_split(model: Recommender, split: Split, part: str, *, ks=DEFAULT_KS, show_progress: bool = False,
                   candidates: np.ndarray | None = None, cold_users: str = "skip") -> EvalResult | None:
    """Full-ranking evaluation on ``part`` ("valid" or "test"); ``None`` if that part is empty.

    Validation masks training items; test masks training and validation items (and sequential models read
    the validation events as part of the history, see ``scorer_after``). ``candidates`` (a boolean
    item mask) restricts the ranking to those items, and the held-out positives to those among them
    (cold-item ranking: only items unseen in training compete). ``cold_users``: ``"skip"`` (default) leaves out
    users with no training events (:func:`cold_users_count` counts them), ``"include"`` ranks them too.
    """
    if cold_users not in COLD_USER_POLICIES:
        raise ConfigError(f"cold_users must be one of {COLD_USER_POLICIES}, got {cold_users!r}")
    target = getattr(split, part).csr()
    scorer = model.score
    if part == "test" and len(split.valid) and hasattr(model, "scorer_after"):
        scorer = model.scorer_after(split.valid)  # sequential models: the history goes on through validation
    if candidates is not None:
        keep = np.asarray(candidates, dtype=bool)
        target = target.multiply(sp.csr_matrix(keep.astype(np.float32)[None, :])).tocsr()
        target.eliminate_zeros()
        penalty = np.where(keep, 0.0, -np.inf).astype(np.float32)

        def scorer(users: np.ndarray, base=scorer) -> np.ndarray:  # noqa: ANN001
            return np.asarray(base(users), dtype=np.float32) + penalty

    users = np.flatnonzero(np.diff(target.indptr) > 0)
    if cold_users == "skip":
        users = users[split.train.user_counts()[users] > 0]
    if len(users) == 0:
        return None
    exclude = split.train.csr() if part == "valid" else (split.train.csr() + split.valid.csr()).tocsr()
    popularity = np.diff(split.train.csr().tocsc().indptr) / max(1, split.train.num_users)
    return evaluate(scorer, target, exclude, ks=ks, item_popularity=popularity, users=users,
                    show_progress=show_progress, description=f"scoring {part}")


def cold_users_count(split: Split) -> dict[str, int]:
    """Users with validation (test) events but no training events, per part."""
    no_train = split.train.user_counts() == 0
    return {p: int((no_train & (getattr(split, p).user_counts() > 0)).sum()) for p in ("valid", "test")}


def cold_test_items(split: Split) -> np.ndarray:
    """Boolean item mask: items with test interactions but none in training (cold at test time)."""
    return (split.train.item_counts() == 0) & (split.test.item_counts() > 0)


def cold_section(result: EvalResult | None, cold: np.ndarray) -> dict[str, Any]:
    """The metrics.json entry of the cold-items test ranking: ``{"test_cold": {...metrics, "users",
    "candidate_items"}}``, or ``{"test_cold_omitted": reason}`` when it rests on fewer than
    :data:`MIN_COLD_USERS` users (or none), ``{}`` when the test has no cold item."""
    if not cold.any():
        return {}
    users = int(result.summary.get("users", len(result.users))) if result is not None else 0
    if users < MIN_COLD_USERS:
        return {"test_cold_omitted": f"rests on {users} users (< {MIN_COLD_USERS}) and "
                                     f"{int(cold.sum())} candidate items"}
    return {"test_cold": {**result.summary, "users": users, "candidate_items": int(cold.sum())}}


def slices(result: EvalResult, split: Split) -> dict[str, dict[str, float]]:
    """Metric slices: long-tail and cold (unseen in training) items, and user activity terciles."""
    out: dict[str, dict[str, float]] = {}
    item_counts = split.train.item_counts()
    n_head = max(1, int(round(0.2 * len(item_counts))))
    head = np.zeros(len(item_counts), dtype=bool)
    head[np.argsort(-item_counts, kind="stable")[:n_head]] = True
    out["long_tail_items"] = result.slice_items(~head)
    cold = item_counts == 0
    if cold.any():
        out["cold_items"] = result.slice_items(cold)
    activity = split.train.user_counts()[result.users]
    if len(activity) >= 3:
        edges = np.quantile(activity, [1 / 3, 2 / 3])
        groups = {"users_low_activity": activity <= edges[0],
                  "users_mid_activity": (activity > edges[0]) & (activity <= edges[1]),
                  "users_high_activity": activity > edges[1]}
        for name, mask in groups.items():
            stats = {m: v for m, v in result.slice_users(mask).items() if m.startswith(("recall", "ndcg"))}
            stats["users"] = int(mask.sum())
            out[name] = stats
    return out


def fit_and_evaluate(
    model_name: str,
    dataset: Dataset,
    split: Split,
    *,
    params: dict[str, Any] | None = None,
    options: FitOptions | None = None,
    out_dir: str | Path | None = None,
    ks=DEFAULT_KS,
    data_spec: dict[str, Any] | None = None,
    monitor_test: bool = False,
    cold_users: str = "skip",
) -> RunResult:
    """Fit ``model_name`` on ``split.train``, evaluate on valid and test, write ``out_dir``.

    ``monitor_test``: for splits without a validation set (gowalla's), a trainable model reports test
    metrics per epoch in its history and curve. It is refused unless the model keeps its last weights
    (``select_best=false``): choosing an epoch on test would leak it into the reported result.
    ``cold_users``: how users with no training events are evaluated (see :func:`evaluate_split`).
    """
    options = options or FitOptions()
    cls = model_class(model_name)
    model = cls(**(params or {}))
    watch = split.valid
    if monitor_test:
        if getattr(model.config, "select_best", None) is not False:
            raise ConfigError("monitor_test: only for trainable models with select_best=false (choosing an "
                              "epoch on the test set would leak it into the result)")
        if len(split.valid):
            raise ConfigError("monitor_test: the split has a validation set; select on it instead")
        watch = split.test
    t0 = time.perf_counter()
    model.fit(split.train, options=options, valid=watch, item_table=dataset.item_table, items=dataset.items)
    fit_seconds = time.perf_counter() - t0
    if options.distributed and os.environ.get("RANK", "0") != "0":  # rank 0 evaluates and writes the run
        return RunResult(model, split, {"fit_seconds": round(fit_seconds, 3)}, None, None)
    config = {"model": model_name, "params": config_to_dict(model.config), "seed": options.seed,
              "data": data_spec or {"name": dataset.name}, "split": split.spec, "ks": list(ks),
              "cold_users": cold_users}
    if options.device != "cpu" or options.precision != "fp32" or options.distributed:
        config["environment"] = {"device": options.device, "precision": options.precision,
                                 "world_size": int(os.environ.get("WORLD_SIZE", "1")) if options.distributed else 1}
        if options.shard:
            config["environment"]["shard"] = options.shard
    report = {k: dataset.extras[k] for k in ("duplicates",) if k in dataset.extras}
    return evaluate_run(model, split, dataset_name=dataset.name, titles=dataset.item_titles(), ks=ks,
                        fit_seconds=fit_seconds, out_dir=out_dir, config=config, show_progress=options.show_progress,
                        history_metrics_on="test (monitor only)" if monitor_test else "valid",
                        cold_users=cold_users, data_report=report)


def evaluate_run(model: Recommender, split: Split, *, dataset_name: str, titles: np.ndarray | None = None,
                 ks=DEFAULT_KS, fit_seconds: float = 0.0, out_dir: str | Path | None = None,
                 config: dict[str, Any] | None = None, show_progress: bool = False,
                 history_metrics_on: str = "valid", cold_users: str = "skip",
                 data_report: dict[str, Any] | None = None) -> RunResult:
    """Evaluate a fitted ``model`` on valid, test and the cold test items; write ``out_dir`` (a run directory
    :func:`load_run` reads) when given. ``config`` is what ``config.json`` records; ``data_report`` (e.g. the
    duplicate policy and count) is added to the metrics."""
    t1 = time.perf_counter()
    valid = evaluate_split(model, split, "valid", ks=ks, show_progress=show_progress, cold_users=cold_users)
    test = evaluate_split(model, split, "test", ks=ks, show_progress=show_progress, cold_users=cold_users)
    cold = cold_test_items(split) if len(split.test) else np.zeros(0, dtype=bool)
    test_cold = evaluate_split(model, split, "test", ks=ks, candidates=cold,
                               cold_users=cold_users) if cold.any() else None
    eval_seconds = time.perf_counter() - t1
    config = config or {"model": model.name, "params": config_to_dict(model.config), "split": split.spec,
                        "ks": list(ks)}
    metrics: dict[str, Any] = {
        "model": config["model"],
        "dataset": dataset_name,
        "split": split.spec,
        "split_hash": split.content_hash(),
        "split_sizes": split.sizes(),
        "test": test.summary if test else {},
        "valid": valid.summary if valid else {},
        **cold_section(test_cold, cold),
        "fit_seconds": round(fit_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    metrics["cold_users"] = {"policy": cold_users, **cold_users_count(split)}  # users with no training events
    if split.removed_overlap:
        metrics["split_overlap_removed"] = dict(split.removed_overlap)
    metrics.update(data_report or {})
    training = _training_summary(model, history_metrics_on)
    if training is not None:
        metrics["training"] = training
    members = getattr(model, "members_", None)  # an ensemble: each member's training
    if members is not None:
        metrics["members"] = [{"model": m.name, **(_training_summary(m, history_metrics_on) or {})} for m in members]
    if test is not None:
        metrics["test_slices"] = slices(test, split)
    if getattr(model.config, "matryoshka_dims", ()):  # every trained prefix width (and the full one), same protocol
        from .compact.matryoshka import evaluate_prefixes

        metrics["matryoshka"] = evaluate_prefixes(model, split, ks=ks, cold_users=cold_users)
    if out_dir is not None:
        write_run(Path(out_dir), model, dataset_name, titles, split, metrics, test, config=config)
    return RunResult(model, split, metrics, test, valid)


def _training_summary(model: Recommender, history_metrics_on: str) -> dict[str, Any] | None:
    train_result = getattr(model, "train_result_", None)
    if train_result is None:
        return None
    return {
        "epochs_run": len(train_result.history), "best_epoch": train_result.best_epoch,
        "best_valid": train_result.best_metric, "seconds_to_best_epoch": train_result.seconds_to_best,
        "stopped_early": train_result.stopped_early, "stopped_by_budget": train_result.stopped_by_budget,
        "weights": "best validation epoch" if model.config.select_best else "last epoch",
        "history_metrics_on": history_metrics_on,
        "valid_candidates": getattr(model, "valid_candidates_", "all"),
    }


# --------------------------------------------------------------------------------------------
# run directory I/O
# --------------------------------------------------------------------------------------------
def _write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda p: pq.write_table(table, p))


def write_run(out: Path, model: Recommender, dataset_name: str, titles: np.ndarray | None, split: Split,
              metrics: dict[str, Any], test: EvalResult | None, config: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model")
    _write_parquet(out / "users.parquet", pa.table({"id": split.users.arrow}))
    items = {"id": split.items.arrow}
    if titles is not None:
        items["title"] = pa.array([str(t) for t in titles])
    _write_parquet(out / "items.parquet", pa.table(items))
    parts = [(p, getattr(split, p)) for p in PARTS]
    split_cols = {
        "part": pa.array(np.concatenate([np.full(len(x), i, dtype=np.int8) for i, (_, x) in enumerate(parts)])),
        "user_idx": np.concatenate([x.user_idx for _, x in parts]),
        "item_idx": np.concatenate([x.item_idx for _, x in parts]),
    }
    if all(x.timestamp is not None for _, x in parts):  # kept: bundles order each user's history by time
        split_cols["timestamp"] = np.concatenate([x.timestamp for _, x in parts]).astype(np.float64)
    _write_parquet(out / "split.parquet", pa.table(split_cols))
    if test is not None:
        cols: dict[str, Any] = {"user_id": split.users.lookup(test.users).tolist(), "n_pos": test.n_pos}
        cols.update({m: v for m, v in test.per_user.items()})
        cols["topk"] = pa.FixedSizeListArray.from_arrays(pa.array(test.topk.ravel()), test.topk.shape[1])
        _write_parquet(out / "per_user_test.parquet", pa.table(cols))
    history = getattr(model, "history_", None)
    if history:
        from .training.plots import plot_history

        write_json(out / "history.json", history)
        plot_history(history, out / "training_curve.png", title=f"{config['model']} on {dataset_name}",
                     metric_label=f"{metrics.get('training', {}).get('history_metrics_on', 'valid')} metric",
                     selected=getattr(model.config, "valid_metric", None))
    config = {**config, "recembed": __version__, "python": platform.python_version()}
    resolved = getattr(model, "auto_resolved_", None)
    if resolved:
        config["auto_resolved"] = dict(resolved)
    write_json(out / "config.json", config)
    write_json(out / "metrics.json", metrics)  # last: its presence marks a complete run


@dataclass
class LoadedRun:
    directory: Path
    model: Recommender
    users: Vocabulary
    items: Vocabulary
    titles: np.ndarray | None
    split: Split
    config: dict[str, Any]
    metrics: dict[str, Any]


RUN_FILES = ("metrics.json", "config.json", "model/model.json", "model/model.safetensors", "users.parquet",
             "items.parquet", "split.parquet")


def load_run(directory: str | Path) -> LoadedRun:
    """Load what :func:`write_run` wrote (no data root needed). A folder that lacks one of its files or holds an
    unreadable one is a :class:`DataError` naming it (the CLI, bundles and ``tokenize`` all load through here)."""
    directory = Path(directory)
    if not (directory / "metrics.json").exists():
        raise DataError("not a complete run directory (no metrics.json)", path=directory)
    missing = [f for f in RUN_FILES if not (directory / f).exists()]
    if missing:
        raise DataError(f"not a complete run directory: missing {', '.join(missing)} (`recembed fit ... --out "
                        f"{directory}` writes one)", path=directory)
    for name in ("metrics.json", "config.json", "model/model.json"):
        if not isinstance(read_json(directory / name), dict):
            raise DataError("expected a JSON object (as `recembed fit` writes), not a corrupted run file",
                            path=directory / name)
    try:
        return _read_run(directory)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"unreadable run file ({exc})", path=directory) from None


def _read_run(directory: Path) -> LoadedRun:
    model = Recommender.load(directory / "model")
    users = Vocabulary(pq.read_table(directory / "users.parquet").column("id").combine_chunks(), name="user")
    item_table = pq.read_table(directory / "items.parquet")
    items = Vocabulary(item_table.column("id").combine_chunks(), name="item")
    titles = (np.asarray(item_table.column("title").to_pylist(), dtype=object)
              if "title" in item_table.column_names else None)
    st = pq.read_table(directory / "split.parquet")
    part = st.column("part").to_numpy()
    u, i = st.column("user_idx").to_numpy(), st.column("item_idx").to_numpy()
    ts = st.column("timestamp").to_numpy() if "timestamp" in st.column_names else None  # runs before: none
    built = [Interactions(u[part == k], i[part == k], len(users), len(items),
                          timestamp=None if ts is None else ts[part == k]) for k in range(3)]
    config = read_json(directory / "config.json")
    split = Split(*built, users=users, items=items, spec=config.get("split", "given"))
    return LoadedRun(directory, model, users, items, titles, split, config, read_json(directory / "metrics.json"))
