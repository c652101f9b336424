"""``recembed tune MODEL --data D [--split S] --trials N [--time-budget S] [--space FILE.toml] --out DIR``.

Hyperparameter search on Optuna (see docs/tuning.md): the model's declared search space (``--show-space``), the
validation metric as objective (test never looked at while searching), pruning on the trainer's per-epoch
validation, a resumable study in ``DIR/study.journal``, ``--jobs`` processes on one study. Writes
``DIR/trials.parquet``, ``DIR/best_config.json``, ``DIR/{history,importances,parallel}.png`` and ``DIR/best/`` (the
best parameters re-fitted: a run directory as ``recembed fit`` writes it, test evaluated there, once).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table as RichTable

from .common import POSITIVE_INT, THREADS_HELP, _parse_sets, console, parse_ks


def _show_space(spec: Any) -> None:
    from ..tuning import space as spaces
    from ..tuning.objectives import model_setup

    cls, space, fixed, metric, direction = model_setup(spec)
    table = RichTable(title=f"{spec.model}: search space ({direction} valid {metric})")
    for col in ("field", "searched over", "default", "doc"):
        table.add_column(col)
    for row in spaces.describe(cls.Config, space):
        table.add_row(*row)
    console.print(table)
    console.print("fixed: " + (", ".join(f"{k}={spaces.encode(v)}" for k, v in fixed.items()) or "-"))


def _spawn_workers(spec: Any, count: int, seconds_left: float | None) -> list[Any]:
    import multiprocessing

    from ..tuning.objectives import worker_main

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch / BLAS thread state
    procs = [ctx.Process(target=worker_main, args=(spec, i, seconds_left), daemon=True) for i in range(1, count + 1)]
    for p in procs:
        p.start()
    return procs


def _best_summary(problem: Any, best: Any, metrics: dict[str, Any]) -> RichTable:
    if problem.ranker:
        from ..ranking.runs import HEADLINE
    else:
        from ..runs import HEADLINE
    names = tuple(dict.fromkeys([problem.metric, *HEADLINE]))
    table = RichTable(title=f"best trial {best.number} re-fitted ({problem.spec.model}) -> best/")
    table.add_column("part")
    for n in names:
        table.add_column(n, justify="right")
    table.add_row("search (valid)", *(f"{best.value:.4f}" if n == problem.metric else "-" for n in names))
    for part in ("valid", "test"):
        summary = metrics.get(part) or {}
        table.add_row(part, *(f"{summary[n]:.4f}" if isinstance(summary.get(n), float) else "-" for n in names))
    return table


def run_tune(spec: Any, *, no_progress: bool) -> None:
    from ..config import config_to_dict
    from ..errors import DataError
    from ..io import read_json, write_json
    from ..tuning import plots, report
    from ..tuning import space as spaces
    from ..tuning import study as studies
    from ..tuning.objectives import TRIAL_ERRORS, Problem, model_setup

    wall = time.monotonic()
    out = Path(spec.out_dir)
    _, space, fixed, metric, direction = model_setup(spec)  # bad flags / space before the data
    if spec.sampler == "grid" and spaces.grid_size(space) > spec.trials:
        console.print(f"[yellow]warning:[/] --sampler grid: the grid has {spaces.grid_size(space)} points, "
                      f"--trials {spec.trials} runs only that many of them")
    with console.status(f"loading {spec.data}"):
        problem = Problem(spec)
    console.print(f"[bold]{problem.description}[/]  tuning {spec.model} on valid {metric} ({direction})")
    pruner_name = spec.pruner if problem.trainable else "none"
    if not problem.trainable and spec.pruner != "none":
        console.print(f"{spec.model} is fitted in closed form (no epochs): trials are not pruned")
    meta = {"model": spec.model, "metric": metric, "direction": direction, "space": spaces.to_dict(space),
            "fixed": {k: spaces.encode(v) for k, v in fixed.items()}, "data": spec.data,
            "split": getattr(getattr(problem, "split", None), "spec", None), "sampler": spec.sampler,
            "pruner": pruner_name, "seed": spec.seed}
    resumed = studies.exists(out)
    study = studies.open_study(out, direction=direction,
                               sampler=studies.make_sampler(spec.sampler, spec.seed, space, spec.trials),
                               pruner=studies.make_pruner(pruner_name, spec.trials), meta=meta)
    if not resumed and spec.sampler != "grid":  # trial 0: the model's defaults (where they are in the space)
        start = spaces.default_point(problem.cls.Config if hasattr(problem.cls, "Config") else problem.cls, space)
        if start:
            study.enqueue_trial(start)
    if resumed:
        redo = studies.recover_interrupted(study)
        if study.user_attrs.get("space") != meta["space"] or study.user_attrs.get("fixed") != meta["fixed"]:
            console.print("[yellow]warning:[/] the search space or fixed values differ from the stored study's; "
                          "earlier trials are kept as they were")
        console.print(f"resuming {out}: {len(studies.finished(study))} finished trials kept"
                      + (f", {redo} interrupted to run again" if redo else "")
                      + f", {studies.seconds_spent(study):.0f}s of search spent")
    left, seconds_left = studies.remaining(study, spec.trials, spec.time_budget)
    deadline = None if seconds_left is None else time.monotonic() + seconds_left
    problem.deadline = deadline
    clock = studies.SearchClock(study)
    if left and (seconds_left is None or seconds_left > 0):
        procs = _spawn_workers(spec, min(spec.jobs, left) - 1, seconds_left) if spec.jobs > 1 and left > 1 else []
        done = len(studies.finished(study))
        with report.Progress(console, spec.trials, done, seconds_left, enabled=not no_progress) as bar:
            def on_trial(st: Any, trial: Any) -> None:
                clock.save()
                best = ""
                try:
                    best = f"best {st.best_value:.4f} (trial {st.best_trial.number})"
                except ValueError:
                    pass
                bar.update(len(studies.finished(st)), report.trial_line(trial, metric), best)

            try:
                studies.optimize(study, problem.objective, n_trials=spec.trials, deadline=deadline,
                                 on_trial=on_trial, catch=TRIAL_ERRORS)
                for p in procs:
                    p.join()
            except KeyboardInterrupt:
                for p in procs:
                    p.terminate()
                clock.save()
                bar.__exit__(None, None, None)
                console.print(f"[yellow]interrupted[/]: {len(studies.finished(study))} finished trials are kept in "
                              f"{out}/{studies.JOURNAL}; run the same command again to resume")
                sys.exit(130)
            finally:
                clock.save()
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            console.print(f"[yellow]warning:[/] {len(failed)} worker process(es) exited with code(s) {failed}")
    else:
        console.print(f"nothing left to search: {len(studies.finished(study))} finished trials of --trials "
                      f"{spec.trials}" + (f", {studies.seconds_spent(study):.0f}s of --time-budget "
                                          f"{spec.time_budget:g}s spent" if spec.time_budget else ""))
    trials = study.get_trials(deepcopy=False)
    names = list(dict.fromkeys([*space, *(n for t in trials for n in t.params)]))
    report.write_trials(out / "trials.parquet", trials, names)
    title = f"{spec.model} on {spec.data}"
    written = plots.write_plots(study, space, out, metric, direction == "maximize", title, seed=spec.seed)
    console.print(report.best_table(trials, metric, direction == "maximize", names))
    try:
        best = study.best_trial
    except ValueError:
        raise DataError(f"no trial completed ({len(trials)} ran; see {out}/trials.parquet); nothing to re-fit",
                        path=out) from None
    previous = read_json(out / "best_config.json") if (out / "best_config.json").is_file() else {}
    if previous.get("best_trial") == best.number and (out / "best" / "metrics.json").is_file():
        console.print(f"best/ already holds trial {best.number} re-fitted")
        metrics = read_json(out / "best" / "metrics.json")
    else:
        console.print(f"re-fitting trial {best.number} on the full split -> {out}/best")
        metrics = problem.refit(best.params, out / "best", show_progress=not no_progress)
    values = problem.values(best.params)
    summary = {part: {k: v for k, v in (metrics.get(part) or {}).items() if isinstance(v, int | float)}
               for part in ("valid", "test")}
    counts: dict[str, int] = {}
    for t in trials:
        counts[report.state_name(t)] = counts.get(report.state_name(t), 0) + 1
    write_json(out / "best_config.json", {
        "model": spec.model, "metric": metric, "direction": direction, "best_trial": best.number,
        "search_valid": best.value, "params": best.params, "fixed": {k: spaces.encode(v) for k, v in fixed.items()},
        "config": config_to_dict(problem.cls(**values).config), "best_run": "best",
        "fit_command": report.fit_command(spec.model, spec.data, spec.data_root, spec.split, values, spec.seed,
                                          str(out / "best")),
        "refit": summary, "trials": counts, "search_seconds": round(studies.seconds_spent(study), 3),
        "sampler": spec.sampler, "pruner": pruner_name, "seed": spec.seed, "plots": written})
    console.print(_best_summary(problem, best, metrics))
    console.print(f"{len(trials)} trials ({', '.join(f'{n} {s}' for s, n in counts.items())}), search "
                  f"{studies.seconds_spent(study):.1f}s, wall {time.monotonic() - wall:.1f}s  -> {out}/best_config.json"
                  f", trials.parquet, {', '.join(written) or 'no plots'}")


def register(cli) -> None:  # noqa: ANN001
    @cli.command()
    @click.argument("model")
    @click.option("--data", default=None, help="Catalog name, an interactions file or folder, or a CTR dataset "
                  "(rankers). Required unless --show-space.")
    @click.option("--data-root", type=click.Path(), default=None,
                  help="Folder of the datasets (else $RECEMBED_DATA_ROOT).")
    @click.option("--split", "split_spec", default=None, help="As for `recembed fit` (needs a validation part).")
    @click.option("--set", "sets", multiple=True, help="Fix a hyperparameter key=value (repeatable; removed from "
                  "the search). epochs: the model's default capped at 100 unless set.")
    @click.option("--space", "space_file", default=None, metavar="FILE.toml",
                  help="Amend (or with inherit = false replace) the model's declared search space.")
    @click.option("--metric", default=None, help="Objective on validation: NAME@K for retrieval models (default: "
                  "the model's valid_metric), auc | gauc | logloss for rankers (default auc).")
    @click.option("--trials", type=POSITIVE_INT, default=20, show_default=True,
                  help="Finished trials the study should hold (a resumed study counts its earlier ones).")
    @click.option("--time-budget", type=click.FloatRange(min=0), default=0.0, show_default=True,
                  help="Seconds of search (all sessions of the study together); no trial trains past it; 0: none.")
    @click.option("--sampler", type=click.Choice(["tpe", "random", "grid"]), default="tpe", show_default=True)
    @click.option("--pruner", type=click.Choice(["median", "hyperband", "none"]), default="median",
                  show_default=True, help="Stops bad trials early on the per-epoch validation metric.")
    @click.option("--jobs", type=POSITIVE_INT, default=1, show_default=True,
                  help="Processes running trials of the study at once (each loads the data).")
    @click.option("--seed", type=click.IntRange(min=0), default=2020, show_default=True,
                  help="Seed of every fit and of the sampler.")
    @click.option("--ks", default="5,10,20,50", show_default=True, callback=parse_ks,
                  help="Cut-offs K for the best run's metrics.")
    @click.option("--threads", type=POSITIVE_INT, default=None, help=THREADS_HELP)
    @click.option("--no-progress", is_flag=True, help="Hide the progress bar (trial lines are still printed).")
    @click.option("--show-space", is_flag=True, help="Print the search space (with --space / --set) and exit.")
    @click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
                  help="Study folder (resumed when it holds one). Required unless --show-space.")
    def tune(model: str, data: str | None, data_root: str | None, split_spec: str | None, sets: tuple[str, ...],
             space_file: str | None, metric: str | None, trials: int, time_budget: float, sampler: str, pruner: str,
             jobs: int, seed: int, ks: tuple[int, ...], threads: int | None, no_progress: bool, show_space: bool,
             out_dir: str | None) -> None:
        """Search MODEL's hyperparameters on the validation metric; re-fit the best into OUT/best."""
        from ..tuning.objectives import TuneSpec

        if threads:
            import torch

            torch.set_num_threads(threads)
        spec = TuneSpec(model=model, data=data or "", out_dir=out_dir or "", data_root=data_root, split=split_spec,
                        sets=_parse_sets(sets), space_file=space_file, metric=metric, seed=seed, threads=threads,
                        ks=ks, sampler=sampler, pruner=pruner, trials=trials, time_budget=time_budget, jobs=jobs)
        if show_space:
            return _show_space(spec)
        for flag, value in (("--data", data), ("--out", out_dir)):
            if not value:
                raise click.UsageError(f"Missing option '{flag}' (needed unless --show-space).")
        if split_spec:
            from ..data.splits import check_split_spec

            check_split_spec(split_spec)
        run_tune(spec, no_progress=no_progress)
