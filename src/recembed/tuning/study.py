"""An Optuna study kept in ``DIR/study.journal``: open or resume it, choose the sampler and pruner, run trials
until ``--trials`` are finished or ``--time-budget`` is spent.

Resuming: a trial counts as finished when it completed, was pruned or failed on its own; one that was running when
its process was interrupted (Ctrl-C: marked at once; killed: still RUNNING in the journal, marked when the study is
reopened) is not counted, so it is drawn again. The search time spent so far is kept in the study
(``search_seconds``), so a resumed run continues with what is left of ``--time-budget``. Several processes may run
trials of one study at once (``--jobs``): the journal file is Optuna's multi-process-safe storage; each process's
sampler gets its own seed (``seed + worker``). Do not point two ``recembed tune`` commands at one DIR at once:
the second would take the first one's running trials for interrupted ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..errors import ConfigError
from . import space as spaces

STUDY_NAME = "recembed"
JOURNAL = "study.journal"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
#: the first epoch at which a pruner may stop a trial
WARMUP_EPOCHS = 5
#: study attributes a resumed study must agree on (others, e.g. the space, may change with a warning)
PINNED = ("model", "metric", "direction")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_sampler(name: str, seed: int, space: dict[str, spaces.Param], n_trials: int) -> optuna.samplers.BaseSampler:
    """``tpe`` (random for the first third of the trials, at least 2 and at most 10), ``random`` or ``grid``
    (:func:`recembed.tuning.space.grid`: choices, small integer ranges in full, else low / middle / high)."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, n_trials // 3)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(spaces.grid(space), seed=seed)
    raise ConfigError(f"--sampler: expected one of {list(SAMPLERS)}, got {name!r}")


def make_pruner(name: str, n_trials: int) -> optuna.pruners.BasePruner:
    """``median``: stop a trial whose validation metric is below the median of earlier trials at the same epoch,
    from epoch :data:`WARMUP_EPOCHS` on, once a few trials completed (a third of ``n_trials``, 2 to 5: a slow
    learning rate is not judged on its first epochs nor against a single trial); ``hyperband``: successive halving
    over epochs (each bracket's first rung at :data:`WARMUP_EPOCHS` epochs, growing threefold); ``none``."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(2, min(5, n_trials // 3)),
                                           n_warmup_steps=WARMUP_EPOCHS)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=WARMUP_EPOCHS, max_resource="auto", reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner: expected one of {list(PRUNERS)}, got {name!r}")


def storage(directory: str | Path) -> optuna.storages.JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(directory / JOURNAL)))


def exists(directory: str | Path) -> bool:
    return (Path(directory) / JOURNAL).is_file()


def open_study(directory: str | Path, *, direction: str, sampler: optuna.samplers.BaseSampler,
               pruner: optuna.pruners.BasePruner, meta: dict[str, Any] | None = None) -> optuna.Study:
    """Create the study in ``directory`` or load the one there. ``meta`` (model, metric, direction, space, ...) is
    stored on creation; a stored study of another model / metric / direction is a ConfigError naming ``--out``."""
    resumed = exists(directory)
    study = optuna.create_study(storage=storage(directory), study_name=STUDY_NAME, direction=direction,
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    meta = meta or {}
    if resumed:
        stored = study.user_attrs
        for key in PINNED:
            if key in meta and key in stored and stored[key] != meta[key]:
                raise ConfigError(f"--out {directory}: holds a study with {key} {stored[key]!r}, not {meta[key]!r}; "
                                  "use another --out folder (or the same settings to resume it)")
    else:
        for key, value in meta.items():
            study.set_user_attr(key, value)
    return study


def is_finished(trial: FrozenTrial) -> bool:
    """Completed, pruned, or failed by itself (not interrupted): what counts towards ``--trials``."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get("interrupted")


def finished(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if is_finished(t)]


def recover_interrupted(study: optuna.Study) -> int:
    """Mark trials left RUNNING by a killed process as interrupted failures (they are drawn again); their count."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return len(stale)


def seconds_spent(study: optuna.Study) -> float:
    return float(study.user_attrs.get("search_seconds", 0.0))


def remaining(study: optuna.Study, n_trials: int, time_budget: float) -> tuple[int, float | None]:
    """``(trials left, seconds left or None without a budget)``."""
    left = max(0, n_trials - len(finished(study)))
    if not time_budget:
        return left, None
    return left, max(0.0, time_budget - seconds_spent(study))


def optimize(study: optuna.Study, objective: Callable[[optuna.Trial], float], *, n_trials: int,
             deadline: float | None, on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
             catch: tuple[type[Exception], ...] = ()) -> None:
    """Run trials of ``study`` in this process until ``n_trials`` are finished in the study (all processes
    together) or ``deadline`` (``time.monotonic()``) has passed: no trial starts after it."""

    def stop_when_done(study: optuna.Study, trial: FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(study, trial)
        if len(finished(study)) >= n_trials or (deadline is not None and time.monotonic() >= deadline):
            study.stop()

    left = n_trials - len(finished(study))
    if left <= 0 or (deadline is not None and time.monotonic() >= deadline):
        return
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    study.optimize(objective, n_trials=left, timeout=timeout, callbacks=[stop_when_done], catch=catch)


class SearchClock:
    """Adds this session's search time to the study's ``search_seconds`` (call :meth:`save` after each trial and
    at the end; it is idempotent)."""

    def __init__(self, study: optuna.Study) -> None:
        self.study, self.before, self.start = study, seconds_spent(study), time.monotonic()

    def elapsed(self) -> float:
        return self.before + time.monotonic() - self.start

    def save(self) -> None:
        self.study.set_user_attr("search_seconds", round(self.elapsed(), 3))
