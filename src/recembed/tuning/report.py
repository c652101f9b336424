"""What ``recembed tune`` writes and shows: ``trials.parquet``, ``best_config.json``, the terminal table of the best
trials, and the progress bar (trials finished of ``--trials``, time left of ``--time-budget``, ETA)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table as RichTable

from ..io import atomic_write

STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
          TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}


def state_name(trial: FrozenTrial) -> str:
    name = STATES.get(trial.state, str(trial.state))
    return "interrupted" if name == "failed" and trial.user_attrs.get("interrupted") else name


def trial_rows(trials: list[FrozenTrial], param_names: list[str]) -> dict[str, list[Any]]:
    """One row per trial: number, state, value, epochs, seconds, pruned_at, started, then ``param_<field>``."""
    cols: dict[str, list[Any]] = {k: [] for k in ("number", "state", "value", "epochs", "seconds", "pruned_at",
                                                  "stopped_by_budget", "started")}
    for name in param_names:
        cols[f"param_{name}"] = []
    for t in trials:
        cols["number"].append(t.number)
        cols["state"].append(state_name(t))
        cols["value"].append(None if t.value is None or math.isnan(t.value) else float(t.value))
        cols["epochs"].append(t.user_attrs.get("epochs"))
        cols["seconds"].append(t.user_attrs.get("seconds", t.duration.total_seconds() if t.duration else None))
        cols["pruned_at"].append(t.last_step if t.state == TrialState.PRUNED else None)
        cols["stopped_by_budget"].append(t.user_attrs.get("stopped_by_budget"))
        cols["started"].append(t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None)
        for name in param_names:
            cols[f"param_{name}"].append(t.params.get(name))
    return cols


def write_trials(path: Path, trials: list[FrozenTrial], param_names: list[str]) -> None:
    table = pa.table(trial_rows(trials, param_names))
    atomic_write(path, lambda p: pq.write_table(table, p))


def fit_command(model: str, data: str, data_root: str | None, split: str | None, values: dict[str, Any],
                seed: int, out: str) -> str:
    """The ``recembed fit`` line that reproduces ``best/``."""
    from .space import encode

    parts = ["recembed fit", model, "--data", data]
    if data_root:
        parts += ["--data-root", data_root]
    if split:
        parts += ["--split", split]
    parts += [f"--set {k}={encode(v)}" for k, v in values.items()]
    return " ".join([*parts, "--seed", str(seed), "--out", out])


def best_table(trials: list[FrozenTrial], metric: str, maximize: bool, param_names: list[str],
               top: int = 10) -> RichTable:
    """The best ``top`` completed trials (then a line per state count)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and not math.isnan(t.value)]
    done.sort(key=lambda t: t.value, reverse=maximize)
    counts: dict[str, int] = {}
    for t in trials:
        counts[state_name(t)] = counts.get(state_name(t), 0) + 1
    caption = ", ".join(f"{n} {s}" for s, n in counts.items())
    table = RichTable(title=f"best trials by valid {metric}", caption=caption)
    for col in ("trial", f"valid {metric}", "epochs", "seconds", *param_names):
        table.add_column(col, justify="right" if col != "trial" else "left")
    for t in done[:top]:
        table.add_row(str(t.number), f"{t.value:.4f}", str(t.user_attrs.get("epochs", "-")),
                      f"{t.user_attrs.get('seconds', 0):.1f}", *(_fmt(t.params.get(p)) for p in param_names))
    return table


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def trial_line(trial: FrozenTrial, metric: str) -> str:
    """One line per finished trial (printed above the progress bar)."""
    params = " ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    state = state_name(trial)
    took = f"{trial.user_attrs.get('epochs', 0)} epochs, {trial.user_attrs.get('seconds', 0):.1f}s"
    if trial.state == TrialState.COMPLETE:
        what = f"valid {metric} {trial.value:.4f}"
    elif trial.state == TrialState.PRUNED:
        what = f"[yellow]pruned at epoch {trial.last_step}[/]"
    else:
        what = f"[red]{state}[/]"
    return f"trial {trial.number}: {what} ({took})  {params}"


class Progress:
    """Trials finished of ``total`` with elapsed time and ETA (rich); with a time budget, the ETA is the sooner of
    the trials' pace and the budget left. ``enabled=False``: nothing is drawn."""

    def __init__(self, console: Any, total: int, done: int, budget_left: float | None, enabled: bool) -> None:
        self.console, self.total, self.done0, self.budget_left = console, total, done, budget_left
        self.enabled, self._bar, self._t0 = enabled, None, time.monotonic()

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("[bold]tuning"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                                     TextColumn("{task.fields[best]}"), console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("tune", total=self.total, completed=self.done0, eta=self._eta(self.done0),
                                            best="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def _eta(self, done: int) -> str:
        elapsed = time.monotonic() - self._t0
        left = self.total - done
        pace = elapsed / (done - self.done0) * left if done > self.done0 else None
        budget = None if self.budget_left is None else max(0.0, self.budget_left - elapsed)
        eta = min(x for x in (pace, budget) if x is not None) if (pace, budget) != (None, None) else None
        return "ETA -" if eta is None else f"ETA {int(eta) // 60}:{int(eta) % 60:02d}"

    def update(self, done: int, line: str, best: str) -> None:
        self.console.print(line)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, eta=self._eta(done), best=best)
