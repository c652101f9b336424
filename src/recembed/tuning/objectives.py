"""What one trial does, and the re-fit of the best: :class:`Problem` loads the data once and fits a model per trial.

A trial fits on the training part and is scored on the validation part only: retrieval models see a copy of the
split whose test part is empty (and only ``evaluate_split(..., "valid")`` is called), rankers fit on ``train`` and
are scored on ``valid``. Trainable models (the shared trainer) report their validation metric after every epoch
through ``FitOptions.epoch_callback``, which prunes the trial when the study's pruner says so; closed-form models
(EASE, ItemKNN, ...) have no epochs and are never pruned. The best parameters are then re-fitted on the full split
by the same function as ``recembed fit`` (``fit_and_evaluate`` / ``fit_and_evaluate_ranker``): test is looked at
once, there.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from .. import runs
from ..errors import ConfigError
from ..options import FitOptions
from . import space as spaces

#: epochs per trial when ``--set epochs=...`` is not given: the model's default, capped at this
EPOCH_CAP = 100
RANKER_METRICS = {"auc": "maximize", "gauc": "maximize", "logloss": "minimize"}


@dataclass(frozen=True)
class TuneSpec:
    """Everything a process needs to rebuild the problem (picklable: ``--jobs`` workers get a copy)."""

    model: str
    data: str
    out_dir: str
    data_root: str | None = None
    split: str | None = None
    sets: dict[str, str] = field(default_factory=dict)
    space_file: str | None = None
    metric: str | None = None
    seed: int = 2020
    threads: int | None = None
    ks: tuple[int, ...] = (5, 10, 20, 50)
    sampler: str = "tpe"
    pruner: str = "median"
    trials: int = 20
    time_budget: float = 0.0
    jobs: int = 1
    cold_users: str = "skip"


def model_setup(spec: TuneSpec) -> tuple[type, dict[str, spaces.Param], dict[str, Any], str, str]:
    """``(model class, space, fixed values, metric, direction)``; no data read (bad flags fail fast)."""
    from ..models.registry import is_ranker, model_class
    from ..models.trainable import TrainableRecommender

    cls = model_class(spec.model)
    config_cls = getattr(cls, "Config", None)
    if config_cls is None:
        raise ConfigError(f"{spec.model} has no hyperparameters to tune")
    space, fixed = spaces.resolve(config_cls, spec.model, dict(spec.sets), spec.space_file)
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    trainable = is_ranker(spec.model) or issubclass(cls, TrainableRecommender)
    if is_ranker(spec.model):
        metric = spec.metric or str(fixed.get("valid_metric", "auc"))
        if metric not in RANKER_METRICS:
            raise ConfigError(f"--metric: a CTR ranker is tuned on one of {list(RANKER_METRICS)}, got {metric!r}")
        direction = RANKER_METRICS[metric]
        if metric != "logloss":
            fixed.setdefault("valid_metric", metric)  # early stopping on the objective (logloss: on AUC)
    else:
        from ..training.trainer import _check_valid_metric

        metric = spec.metric or str(fixed.get("valid_metric", defaults.get("valid_metric", "ndcg@10")))
        try:
            _check_valid_metric(metric)
        except ConfigError as exc:
            raise ConfigError(f"--metric: {str(exc).removeprefix('valid_metric: ')}") from None
        direction = "maximize"
        if "valid_metric" in defaults:
            if str(fixed.get("valid_metric", metric)) != metric:
                raise ConfigError(f"--metric {metric} differs from --set valid_metric={fixed['valid_metric']}: the "
                                  "trainer early-stops on the objective, so drop one of them")
            fixed["valid_metric"] = metric
    if trainable and "epochs" not in fixed:
        fixed["epochs"] = min(int(defaults["epochs"]), EPOCH_CAP)
    cls(**fixed)  # the fixed values together (each searched value was checked with them)
    return cls, space, fixed, metric, direction


class Problem:
    """The data of one study, loaded once, and the trial objective over it."""

    def __init__(self, spec: TuneSpec) -> None:
        from ..models.registry import is_ranker
        from ..models.trainable import TrainableRecommender

        self.spec = spec
        self.cls, self.space, self.fixed, self.metric, self.direction = model_setup(spec)
        self.ranker = is_ranker(spec.model)
        self.trainable = self.ranker or issubclass(self.cls, TrainableRecommender)
        self.deadline: float | None = None  # time.monotonic() past which a trial's training stops (the budget)
        if self.ranker:
            self._load_ctr()
        else:
            self._load_interactions()

    # -- data ---------------------------------------------------------------------------------------------------
    def _load_ctr(self) -> None:
        from ..ranking.datasets import CTR_DATASETS, is_ctr_dataset, load_ctr

        if not is_ctr_dataset(self.spec.data):
            raise ConfigError(f"--data: tune {self.spec.model} takes a CTR dataset ({', '.join(sorted(CTR_DATASETS))})"
                              f"; got {self.spec.data!r}")
        if self.spec.split:
            raise ConfigError(f"--split: {self.spec.data} is a CTR dataset with its own split; drop --split")
        self.ctr = load_ctr(self.spec.data, self.spec.data_root)
        self.description = f"{self.ctr.name} {self.ctr.sizes()}"

    def _load_interactions(self) -> None:
        from ..cli.data_opts import load_data
        from ..data.interactions import Interactions
        from ..data.splits import make_split
        from ..ranking.datasets import is_ctr_dataset

        if is_ctr_dataset(self.spec.data):
            raise ConfigError(f"--data: {self.spec.data} is a CTR dataset, for the rankers; {self.spec.model} is a "
                              "retrieval model")
        self.dataset, default_split = load_data(self.spec.data, self.spec.data_root)
        self.split = make_split(self.dataset, self.spec.split or default_split, seed=self.spec.seed)
        if not len(self.split.valid):
            raise ConfigError(f"--split: {self.split.spec} has no validation part, and the search is scored on "
                              "validation only (test is never looked at while searching)")
        empty = Interactions.empty(len(self.split.users), len(self.split.items))
        self.search_split = dataclasses.replace(self.split, test=empty)  # trials cannot read test
        self.description = f"{self.dataset}  split {self.split.spec} {self.split.sizes()}"

    # -- one trial ----------------------------------------------------------------------------------------------
    def values(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self.fixed, **params}

    def objective(self, trial: optuna.Trial) -> float:
        params = spaces.suggest(trial, self.space)
        values = self.values(params)
        if self.trainable and "time_budget_s" not in self.fixed and self.deadline is not None:
            values["time_budget_s"] = max(1.0, self.deadline - time.monotonic())  # no trial runs past the budget
        start, epochs = time.perf_counter(), [0]
        key = f"valid_{self.metric}"

        def on_epoch(record: dict[str, Any]) -> None:
            epochs[0] = int(record["epoch"])
            if key in record:
                trial.report(float(record[key]), epochs[0])
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epochs[0]}")

        options = FitOptions(seed=self.spec.seed, threads=self.spec.threads, show_progress=False,
                             epoch_callback=on_epoch if self.trainable else None)
        try:
            model, value = self._fit_valid(values, options)
            trial.set_user_attr("stopped_by_budget", bool(getattr(getattr(model, "train_result_", None),
                                                                  "stopped_by_budget", False)))
            return value
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        finally:
            trial.set_user_attr("epochs", epochs[0])
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))

    def _fit_valid(self, values: dict[str, Any], options: FitOptions) -> tuple[Any, float]:
        model = self.cls(**values)
        if self.ranker:
            model.fit(self.ctr.train, schema=self.ctr.schema(), valid=self.ctr.valid, options=options)
            return model, float(model.evaluate(self.ctr.valid)[self.metric])
        split = self.search_split
        model.fit(split.train, options=options, valid=split.valid, item_table=self.dataset.item_table,
                  items=self.dataset.items)
        k = int(self.metric.split("@")[1])
        result = runs.evaluate_split(model, split, "valid", ks=(k,), cold_users=self.spec.cold_users)
        return model, float("nan") if result is None else float(result.summary[self.metric])

    # -- the best, re-fitted ------------------------------------------------------------------------------------
    def refit(self, params: dict[str, Any], out_dir: str | Path, *, show_progress: bool) -> dict[str, Any]:
        """Fit ``params`` on the full split exactly as ``recembed fit`` does and write the run to ``out_dir``
        (replaced when there); its metrics.json."""
        out = Path(out_dir)
        if out.exists():
            shutil.rmtree(out)
        options = FitOptions(seed=self.spec.seed, threads=self.spec.threads, show_progress=show_progress)
        values = self.values(params)
        spec = {"data": self.spec.data, "data_root": self.spec.data_root}
        if self.ranker:
            from ..ranking.runs import fit_and_evaluate_ranker

            return fit_and_evaluate_ranker(self.spec.model, self.ctr, params=values, options=options, out_dir=out,
                                           data_spec=spec).metrics
        spec.update({"features": [], "text_columns": None, "encoder": None})
        return runs.fit_and_evaluate(self.spec.model, self.dataset, self.split, params=values, options=options,
                                     out_dir=out, ks=self.spec.ks, data_spec=spec,
                                     cold_users=self.spec.cold_users).metrics


#: trial errors that fail that trial and let the search go on (a NaN loss; a combination a config refuses)
TRIAL_ERRORS: tuple[type[Exception], ...] = (FloatingPointError, ConfigError)


def worker_main(spec: TuneSpec, index: int, seconds_left: float | None) -> None:
    """A ``--jobs`` worker process: load the data, join the study, run trials until the study has enough or the
    time is up (the sampler seeded with ``seed + index``)."""
    import torch

    from . import study as studies

    if spec.threads:
        torch.set_num_threads(spec.threads)
    problem = Problem(spec)
    deadline = None if seconds_left is None else time.monotonic() + seconds_left
    problem.deadline = deadline
    study = studies.open_study(spec.out_dir, direction=problem.direction,
                               sampler=studies.make_sampler(spec.sampler, spec.seed + index, problem.space,
                                                            spec.trials),
                               pruner=studies.make_pruner(spec.pruner, spec.trials))
    studies.optimize(study, problem.objective, n_trials=spec.trials, deadline=deadline, catch=TRIAL_ERRORS)
