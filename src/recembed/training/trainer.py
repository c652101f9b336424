"""THE training loop, written once for every trainable model.

The loop owns: ``zero_grad`` / ``backward`` / ``step``, gradient clipping, the progress bar (loss,
throughput, last validation metric), early stopping on a validation metric, checkpoints (every N
epochs, at the end, and on interrupt), exact resume, per-epoch history. A *task* owns the loss,
negative sampling and batch building (see :mod:`recembed.training.tasks`).

Determinism: every epoch draws from generators seeded by ``(seed, epoch)`` (NumPy for sampling,
torch for dropout / noise), so a run resumed at epoch ``e`` continues exactly as an uninterrupted
one would, given the model and optimizer state the checkpoint restores.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

from ..config import check, config_to_dict, saved_values
from ..errors import ConfigError, DataError, did_you_mean
from ..options import FitOptions
from .checkpoint import load_checkpoint, save_checkpoint
from .device import autocast, check_precision, move_tensors, resolve_device, to_device
from .distributed import TaskStep, broadcast_decision, init_distributed, shard_batch, wrap


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the loop; model configs extend this class."""

    epochs: int = 300
    """Maximum number of epochs."""
    batch_size: int = 2048
    """Training examples per step (an upper bound when ``min_steps`` is set)."""
    min_steps: int = 0
    """Data-size-aware batches: an epoch takes at least this many optimizer steps, the batch shrinking to
    ``ceil(examples / min_steps)`` on data too small for ``batch_size`` to give that many (0: ``batch_size``
    as set). The batch used is recorded in ``config.json`` under ``auto_resolved``."""
    learning_rate: float = 1e-3
    """Adam / SGD step size."""
    weight_decay: float = 0.0
    """Optimizer L2 weight decay."""
    optimizer: Literal["adam", "sgd", "sparse_adam"] = "adam"
    """Optimizer. ``sparse_adam``: ``torch.optim.SparseAdam`` for modules whose tables take sparse gradients
    (the out-of-core MF, ``recembed fit bpr --stream``): a step touches only the looked-up rows."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """Step size per epoch: constant, or cosine-annealed from ``learning_rate`` to 0 over ``epochs`` (set
    from the epoch number, so a resumed run follows the same schedule)."""
    patience: int = 10
    """Stop after this many evaluations without improvement of ``valid_metric`` (0: never stop early)."""
    valid_metric: str = "ndcg@10"
    """Validation metric for early stopping and model selection."""
    valid_candidates: Literal["auto", "all", "cold"] = "auto"
    """Items ranked in validation: ``all``; ``cold`` = only the validation items unseen in training (the
    ``test_cold`` protocol); ``auto`` = ``cold`` when every validation positive is such an item (a
    cold-items split, where the mixed ranking can sit at 0 and select nothing), else ``all``."""
    eval_every: int = 1
    """Evaluate on validation every N epochs."""
    valid_sample: int = 0
    """Validate on this many validation users drawn once at random from the run's seed (0: all of them). For
    models whose scoring is expensive (beam decoding); the reported valid / test metrics use every user."""
    grad_clip: float = 0.0
    """Clip the gradient norm to this value (0: no clipping)."""
    checkpoint_every: int = 0
    """Write a checkpoint every N epochs when a checkpoint directory is set (0: at the end only)."""
    time_budget_s: float = 0.0
    """Stop before an epoch that would end past this many seconds of training + validation (0: no budget)."""
    select_best: bool = True
    """Restore the weights of the best validation epoch at the end (False: keep the last epoch's weights;
    validation then only monitors, e.g. a test curve on splits without a validation set)."""

    def __post_init__(self) -> None:
        check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.min_steps >= 0, "min_steps", f"must be >= 0, got {self.min_steps}")
        check(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.patience >= 0, "patience", f"must be >= 0, got {self.patience}")
        check(self.eval_every >= 1, "eval_every", f"must be >= 1, got {self.eval_every}")
        check(self.valid_sample >= 0, "valid_sample", f"must be >= 0, got {self.valid_sample}")
        check(self.time_budget_s >= 0, "time_budget_s", f"must be >= 0, got {self.time_budget_s}")
        self._check_valid_metric()

    def _check_valid_metric(self) -> None:
        """Ranking metrics (``NAME@K``); the CTR rankers' config checks its own (``auc``, ``gauc``)."""
        _check_valid_metric(self.valid_metric)

    def batch_for(self, examples: int) -> int:
        """The batch size for an epoch of ``examples`` training examples under ``min_steps``."""
        if self.min_steps <= 0 or examples <= 0:
            return self.batch_size
        return max(1, min(self.batch_size, -(-examples // self.min_steps)))


def _check_valid_metric(value: str) -> None:
    """``valid_metric`` is ``NAME@K`` with NAME one of the evaluation's metrics and K a positive integer."""
    from ..evaluation.metrics import METRICS

    known = ", ".join(f"{m}@K" for m in METRICS)
    name, sep, k = str(value).partition("@")
    check(bool(sep), "valid_metric", f"expected NAME@K (one of {known}), got {value!r}")
    check(name in METRICS, "valid_metric",
          f"unknown metric {name!r}{did_you_mean(name, METRICS)} in {value!r}; known: {known}")
    check(k.isdigit() and int(k) >= 1, "valid_metric", f"K must be a positive integer, got {k!r} in {value!r}")


#: config keys that may change between a checkpoint and the run resuming it
RESUMABLE_CHANGES = {"epochs", "patience", "checkpoint_every", "eval_every", "time_budget_s"}


class Task(Protocol):
    """Loss + negative sampling + batch building for one model family."""

    def num_batches(self) -> int: ...

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Any]: ...

    def loss(self, module: nn.Module, batch: Any, epoch: int) -> torch.Tensor: ...


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    stopped_by_budget: bool = False
    seconds: float = 0.0
    seconds_to_best: float | None = None
    resumed_at: int | None = None
    """The checkpoint's epoch when the fit resumed from one (None: trained from scratch)."""


def seed_everything(seed: int, epoch: int = -1) -> np.random.Generator:
    """Seed torch for ``(seed, epoch)`` and return the NumPy generator of that epoch."""
    torch.manual_seed((seed * 1_000_003 + epoch + 1) % (2**63 - 1))
    return np.random.default_rng([seed, epoch + 1])


class Trainer:
    """Runs a :class:`Task` on a module. ``validate`` returns the validation metric (higher is better), or a
    dict of metrics that holds ``config.valid_metric`` (all of them go into the history)."""

    def __init__(self, config: TrainConfig, options: FitOptions | None = None) -> None:
        self.config = config
        self.options = options or FitOptions()

    def _optimizer(self, module: nn.Module | list[nn.Parameter]) -> torch.optim.Optimizer:
        params = [p for p in (module.parameters() if isinstance(module, nn.Module) else module) if p.requires_grad]
        if self.config.optimizer == "sparse_adam":
            if self.config.weight_decay:
                raise ConfigError("weight_decay: SparseAdam has none; use reg_weight (L2 on the looked-up rows)")
            return torch.optim.SparseAdam(params, lr=self.config.learning_rate)
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay)
        # the fused kernel: one pass over each parameter per step, ~1.8x faster than foreach on a CPU
        fused = all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params)
        return torch.optim.Adam(params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay,
                                fused=fused or None)

    def _fingerprint(self) -> dict[str, Any]:
        return {k: v for k, v in config_to_dict(self.config).items() if k not in RESUMABLE_CHANGES}

    def fit(self, module: nn.Module, task: Task,
            validate: Callable[[], float | dict[str, float]] | None = None) -> TrainResult:
        cfg, opts = self.config, self.options
        if opts.threads:
            torch.set_num_threads(opts.threads)
        device = resolve_device(opts.device)
        precision = check_precision(opts.precision)
        ctx = init_distributed(device) if opts.distributed else None
        if ctx is not None:
            device = ctx.device
        main = ctx is None or ctx.rank == 0  # validates, checkpoints, reports
        module.to(device)
        move_tensors(task, device)
        optimizer = self._optimizer(module)
        result = TrainResult()
        best_state: dict[str, torch.Tensor] | None = None
        bad_evals, start_epoch, elapsed_before = 0, 0, 0.0
        if opts.checkpoint_dir and opts.resume:
            ckpt = load_checkpoint(opts.checkpoint_dir)
            if ckpt is not None:
                start_epoch, bad_evals, elapsed_before, best_state = self._restore(ckpt, module, optimizer, result)
                result.resumed_at = start_epoch
                left = f"continuing with epoch {start_epoch + 1} of {cfg.epochs}" if start_epoch < cfg.epochs \
                    else f"no epoch left to run (epochs={cfg.epochs})"
                if main:
                    print(f"resumed at epoch {start_epoch} from {ckpt['path']}: {left}", file=sys.stderr)
        step, sharded = TaskStep(module, task), None
        if opts.shard:  # TorchRec: the tables sharded across the ranks, their optimizer fused into the backward
            from ..scale.sharding import ShardedTraining

            sharded = ShardedTraining(step, ctx, opts.shard, cfg, opts)
            runner, optimizer = sharded.runner, self._optimizer(sharded.dense_parameters())
        else:
            runner = wrap(step, ctx) if ctx is not None else step
        t_start = time.perf_counter() - elapsed_before
        progress = _Progress(enabled=opts.show_progress and main, total_batches=task.num_batches())
        epoch = start_epoch - 1
        try:
            with progress:
                for epoch in range(start_epoch, cfg.epochs):
                    t0 = time.perf_counter()
                    rng = seed_everything(opts.seed, epoch)
                    if ctx is not None and ctx.rank:  # dropout / noise masks of a rank's own rows
                        torch.manual_seed((opts.seed * 1_000_003 + epoch + 1 + 7919 * ctx.rank) % (2**63 - 1))
                    if cfg.lr_schedule == "cosine":
                        for group in optimizer.param_groups:
                            group["lr"] = cfg.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
                    module.train()
                    total, count = 0.0, 0
                    progress.start_epoch(epoch, cfg.epochs)
                    for batch in task.batches(epoch, rng):
                        optimizer.zero_grad(set_to_none=True)
                        batch, weight = to_device(batch, device), 1.0
                        if ctx is not None:
                            batch, weight = shard_batch(batch, ctx.rank, ctx.world)
                        with autocast(device, precision):
                            loss = runner(batch, epoch, weight)
                        if not torch.isfinite(loss):
                            raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}; "
                                                     "lower learning_rate or enable grad_clip")
                        loss.backward()
                        if cfg.grad_clip > 0:
                            nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
                        optimizer.step()
                        total += float(loss.detach())
                        count += 1
                        progress.advance(total / count)
                    record: dict[str, Any] = {"epoch": epoch + 1, "loss": total / max(count, 1),
                                              "train_seconds": time.perf_counter() - t0}
                    stop = False
                    if sharded is not None and validate is not None and (epoch + 1) % cfg.eval_every == 0:
                        sharded.gather()  # every rank takes part: the shards into rank 0's module
                    if validate is not None and (epoch + 1) % cfg.eval_every == 0 and main:
                        module.eval()
                        with torch.no_grad():
                            values = validate()
                        if not isinstance(values, dict):
                            values = {cfg.valid_metric: values}
                        record.update({f"valid_{k}": float(v) for k, v in values.items()})
                        metric = float(values[cfg.valid_metric])
                        if result.best_metric is None or metric > result.best_metric:
                            result.best_metric, result.best_epoch, bad_evals = metric, epoch + 1, 0
                            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                            result.seconds_to_best = time.perf_counter() - t_start
                        else:
                            bad_evals += 1
                        stop = cfg.patience > 0 and bad_evals >= cfg.patience
                        progress.set_metric(cfg.valid_metric, metric)
                    record["elapsed_seconds"] = time.perf_counter() - t_start
                    result.history.append(record)
                    if opts.epoch_callback is not None and main:  # e.g. tuning: report, and raise to prune
                        opts.epoch_callback(record)
                    epoch_seconds = time.perf_counter() - t0
                    if not stop and cfg.time_budget_s and epoch + 1 < cfg.epochs and \
                            record["elapsed_seconds"] + epoch_seconds > cfg.time_budget_s:
                        result.stopped_by_budget = stop = True
                    if ctx is not None:  # rank 0 decides for every rank
                        stop_flag, budget_flag = broadcast_decision(ctx, [float(stop), float(result.stopped_by_budget)])
                        stop, result.stopped_by_budget = bool(stop_flag), bool(budget_flag)
                    if opts.checkpoint_dir and cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0 \
                            and main:
                        self._save(module, optimizer, best_state, result, epoch + 1, bad_evals, t_start)
                    if stop:
                        result.stopped_early = not result.stopped_by_budget
                        break
        except KeyboardInterrupt:
            if opts.checkpoint_dir and result.history and main:
                self._save(module, optimizer, best_state, result, result.history[-1]["epoch"], bad_evals, t_start)
            raise
        if sharded is not None:
            sharded.gather()
        if opts.checkpoint_dir and result.history and main:
            self._save(module, optimizer, best_state, result, result.history[-1]["epoch"], bad_evals, t_start)
        if best_state is not None and cfg.select_best:
            module.load_state_dict(best_state)
        if device.type != "cpu":  # export, scoring and saving read the weights on the host
            module.to("cpu")
        result.seconds = time.perf_counter() - t_start
        return result

    # -- checkpoints --------------------------------------------------------------------------------
    def _save(self, module: nn.Module, optimizer: torch.optim.Optimizer, best: dict | None, result: TrainResult,
              epoch: int, bad_evals: int, t_start: float) -> None:
        save_checkpoint(self.options.checkpoint_dir, model=module.state_dict(), optimizer=optimizer.state_dict(),
                        best=best, meta={
                            "epoch": epoch, "bad_evals": bad_evals, "history": result.history,
                            "best_epoch": result.best_epoch, "best_metric": result.best_metric,
                            "seconds_to_best": result.seconds_to_best,
                            "elapsed_seconds": time.perf_counter() - t_start,
                            "config": self._fingerprint(), "seed": self.options.seed,
                        })

    def _restore(self, ckpt: dict[str, Any], module: nn.Module, optimizer: torch.optim.Optimizer,
                 result: TrainResult) -> tuple[int, int, float, dict | None]:
        meta, path = ckpt["meta"], ckpt["path"]
        saved, now = meta.get("config", {}), self._fingerprint()
        # a key added to the config after the checkpoint was written is compatible at the value it implies (its
        # default, or its FORMER_DEFAULTS entry where the default has changed since)
        implied = {f.name: f.default for f in fields(self.config)} | saved_values(type(self.config), saved)
        saved = {**{k: v for k, v in now.items() if k not in saved and v == implied.get(k)}, **saved}
        if saved != now or meta.get("seed") != self.options.seed:
            changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise DataError(f"checkpoint was written with a different configuration or seed (differs in "
                            f"{changed or ['seed']}); remove it or use a fresh checkpoint directory", path=path)
        try:
            module.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise DataError(f"checkpoint does not fit this model ({str(exc).splitlines()[0]})", path=path) from None
        result.history = list(meta["history"])
        result.best_epoch, result.best_metric = meta["best_epoch"], meta["best_metric"]
        result.seconds_to_best = meta.get("seconds_to_best")
        return int(meta["epoch"]), int(meta["bad_evals"]), float(meta.get("elapsed_seconds", 0.0)), ckpt["best"]


class _Progress:
    """A rich progress bar: epoch, batches, running loss, throughput, last validation metric."""

    def __init__(self, enabled: bool, total_batches: int) -> None:
        self.enabled = enabled
        self.total = total_batches
        self._metric = ""
        self._bar = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("epoch", total=self.total, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start_epoch(self, epoch: int, epochs: int) -> None:
        if self._bar is not None:
            self._t0 = time.perf_counter()
            self._bar.reset(self._task, total=self.total, description=f"epoch {epoch + 1}/{epochs}")

    def advance(self, loss: float) -> None:
        if self._bar is not None:
            done = self._bar.tasks[0].completed + 1
            rate = done / max(time.perf_counter() - self._t0, 1e-9)
            info = f"loss {loss:.4f}  {rate:.0f} batch/s" + (f"  {self._metric}" if self._metric else "")
            self._bar.update(self._task, advance=1, info=info)

    def set_metric(self, name: str, value: float) -> None:
        self._metric = f"valid {name} {value:.4f}" if not math.isnan(value) else ""
