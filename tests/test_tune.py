"""``recembed tune``: a planted optimum is found, pruning stops a trial that cannot win (through the shared trainer's
per-epoch validation), an interrupted study resumes without re-running finished trials, the search never reads the
test part (retrieval and rankers), the outputs (``best/`` as ``recembed fit`` writes it), and bad flags / space
files exit 2 naming the flag or field. All on seeded synthetic data, a few seconds in all."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pyarrow.parquet as pq
import pytest
from test_rankers import run_main

from recembed.options import FitOptions
from recembed.tuning import space as spaces
from recembed.tuning import study as studies
from recembed.tuning.objectives import TRIAL_ERRORS, Problem, TuneSpec

#: a short, fast BPR on the tiny planted catalog (300 users x 200 items): ~0.03 s an epoch
FAST_BPR = ("--set", "min_steps=4", "--set", "batch_size=1024", "--threads", "1", "--no-progress")


def test_planted_objective_optimum_is_found(tmp_path) -> None:
    """The study machinery on an objective whose optimum is known: x = 0.3, k = 2."""
    space = {"x": spaces.Float(0.0, 1.0), "k": spaces.Choice((1, 2, 3)), "lr": spaces.Float(1e-4, 1.0, log=True)}

    def objective(trial) -> float:  # noqa: ANN001
        p = spaces.suggest(trial, space)
        return -((p["x"] - 0.3) ** 2) - (0.5 if p["k"] != 2 else 0.0) - abs(np.log10(p["lr"]) + 2) * 0.01

    study = studies.open_study(tmp_path, direction="maximize", sampler=studies.make_sampler("tpe", 0, space, 40),
                               pruner=studies.make_pruner("none", 40))
    studies.optimize(study, objective, n_trials=40, deadline=None)
    assert len(studies.finished(study)) == 40
    assert study.best_params["k"] == 2 and abs(study.best_params["x"] - 0.3) < 0.1


def test_cli_finds_the_clearly_best_setting_and_writes_a_fit_run(tmp_path) -> None:
    """ItemKNN with k = 1 neighbour against k = 50 (grid over both): 50 is clearly better; best/ is the run
    `recembed fit itemknn --set k=50` writes (same metrics), plus trials.parquet, best_config.json and plots."""
    space_file = tmp_path / "space.toml"
    space_file.write_text("inherit = false\n[k]\nchoices = [1, 50]\n")
    out = tmp_path / "study"
    code, text = run_main(["tune", "itemknn", "--data", "synthetic:tiny", "--space", str(space_file), "--sampler",
                           "grid", "--trials", "5", "--no-progress", "--out", str(out)])
    assert code == 0, text
    assert "tuning itemknn on valid ndcg@10" in text and "re-fitted (itemknn)" in text, text
    best = json.loads((out / "best_config.json").read_text())
    assert best["params"] == {"k": 50} and best["config"]["k"] == 50
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    assert sorted(t["param_k"] for t in trials) == [1, 50] and {t["state"] for t in trials} == {"complete"}
    assert (out / "history.png").stat().st_size > 0 and (out / "parallel.png").is_file()
    code, text = run_main(["fit", "itemknn", "--data", "synthetic:tiny", "--set", "k=50", "--no-progress", "--out",
                           str(tmp_path / "fit")])
    assert code == 0, text
    tuned = json.loads((out / "best" / "metrics.json").read_text())
    fitted = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert tuned["test"] == fitted["test"] and tuned["valid"] == fitted["valid"]
    assert tuned["valid"]["ndcg@10"] == pytest.approx(best["search_valid"])


def test_trainer_calls_the_epoch_callback_and_stops_when_it_raises() -> None:
    from recembed.models.registry import model_class
    from recembed.testing.fixtures import planted_split

    split = planted_split()
    seen: list[dict] = []

    class Stop(Exception):
        pass

    def callback(record: dict) -> None:
        seen.append(record)
        if record["epoch"] == 3:
            raise Stop

    model = model_class("bpr")(epochs=10, min_steps=2, batch_size=2048)
    with pytest.raises(Stop):
        model.fit(split.train, options=FitOptions(seed=0, show_progress=False, threads=1, epoch_callback=callback),
                  valid=split.valid)
    assert [r["epoch"] for r in seen] == [1, 2, 3] and all("valid_ndcg@10" in r for r in seen)


def test_pruning_stops_a_trial_that_cannot_win(tmp_path) -> None:
    """Two trials at a step size that learns, then one at 1e-7 that cannot: the median pruner stops it at the
    first epoch it may; its epochs are recorded."""
    space_file = tmp_path / "space.toml"
    space_file.write_text("inherit = false\n[learning_rate]\nlow = 1e-8\nhigh = 0.1\nlog = true\n")
    spec = TuneSpec(model="bpr", data="synthetic:tiny", out_dir=str(tmp_path / "s"), threads=1, trials=3,
                    space_file=str(space_file), sets={"epochs": "12", "min_steps": "4", "batch_size": "1024",
                                                      "patience": "0", "embedding_dim": "32"})
    problem = Problem(spec)
    study = studies.open_study(tmp_path / "s", direction="maximize",
                               sampler=studies.make_sampler("tpe", 0, problem.space, 3),
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=2,
                                                                  n_warmup_steps=studies.WARMUP_EPOCHS))
    for lr in (3e-2, 2e-2, 1e-7):
        study.enqueue_trial({"learning_rate": lr})
    studies.optimize(study, problem.objective, n_trials=3, deadline=None, catch=TRIAL_ERRORS)
    good, good2, bad = study.get_trials()
    assert good.state == good2.state == optuna.trial.TrialState.COMPLETE and good.user_attrs["epochs"] == 12
    assert bad.state == optuna.trial.TrialState.PRUNED
    assert bad.user_attrs["epochs"] == bad.last_step == studies.WARMUP_EPOCHS < 12
    assert bad.intermediate_values[bad.last_step] < good.intermediate_values[bad.last_step]


def test_interrupted_study_resumes_without_rerunning_finished_trials(tmp_path, monkeypatch) -> None:
    from recembed.tuning import objectives

    fits: list[dict] = []
    real = objectives.Problem._fit_valid
    interrupt_at = {"n": 3}

    def counting(self, values, options):  # noqa: ANN001, ANN202
        fits.append(values)
        if len(fits) == interrupt_at["n"]:
            raise KeyboardInterrupt
        return real(self, values, options)

    monkeypatch.setattr(objectives.Problem, "_fit_valid", counting)
    out = tmp_path / "study"
    args = ["tune", "bpr", "--data", "synthetic:tiny", "--set", "epochs=2", *FAST_BPR, "--pruner", "none",
            "--out", str(out)]
    code, text = run_main([*args, "--trials", "5"])
    assert code == 130 and "run the same command again to resume" in text
    study = studies.open_study(out, direction="maximize", sampler=optuna.samplers.RandomSampler(),
                               pruner=optuna.pruners.NopPruner())
    assert len(studies.finished(study)) == 2
    assert study.get_trials()[2].user_attrs.get("interrupted") is True
    study.ask()  # a trial a killed process left RUNNING: marked interrupted on resume, and drawn again
    first = [t.params for t in studies.finished(study)]
    interrupt_at["n"] = 0
    fits.clear()
    code, text = run_main([*args, "--trials", "5"])
    assert code == 0, text
    assert "2 finished trials kept, 1 interrupted to run again" in text
    assert len(fits) == 3  # only the 3 missing trials were fitted (the re-fit of the best is not a trial)
    study = studies.open_study(out, direction="maximize", sampler=optuna.samplers.RandomSampler(),
                               pruner=optuna.pruners.NopPruner())
    done = studies.finished(study)
    assert len(done) == 5 and [t.params for t in done[:2]] == first
    assert pq.read_table(out / "trials.parquet").num_rows == len(study.get_trials())
    assert (out / "best" / "metrics.json").is_file()
    fits.clear()  # enough trials: nothing is searched again, best/ is kept
    code, text = run_main([*args, "--trials", "5"])
    assert code == 0 and not fits and "nothing left to search" in text and "already holds trial" in text
    study.set_user_attr("search_seconds", 100.0)  # the budget is already spent: no trial starts
    code, text = run_main([*args, "--trials", "9", "--time-budget", "50"])
    assert code == 0 and not fits and "nothing left to search" in text


def test_search_never_reads_the_test_part(tmp_path, monkeypatch) -> None:
    """evaluate_split is called on "valid" only while searching, on an empty test part; test is scored once, by
    the re-fit of the best (fit_and_evaluate)."""
    from recembed import runs

    calls: list[tuple[str, bool, int]] = []
    refit = {"on": False}
    real_eval, real_fit = runs.evaluate_split, runs.fit_and_evaluate

    def evaluate_split(model, split, part, **kw):  # noqa: ANN001, ANN202
        calls.append((part, refit["on"], len(split.test)))
        return real_eval(model, split, part, **kw)

    def fit_and_evaluate(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        refit["on"] = True
        try:
            return real_fit(*a, **kw)
        finally:
            refit["on"] = False

    monkeypatch.setattr(runs, "evaluate_split", evaluate_split)
    monkeypatch.setattr(runs, "fit_and_evaluate", fit_and_evaluate)
    code, text = run_main(["tune", "bpr", "--data", "synthetic:tiny", "--set", "epochs=3", *FAST_BPR, "--trials",
                           "3", "--sampler", "random", "--out", str(tmp_path / "s")])
    assert code == 0, text
    search = [c for c in calls if not c[1]]
    assert len(search) == 3 and all(part == "valid" and n_test == 0 for part, _, n_test in search)
    assert [c[0] for c in calls if c[1]].count("test") >= 1


def test_ranker_search_scores_valid_only(tmp_path, monkeypatch) -> None:
    """A CTR ranker (DeepFM on the planted-cross data, standing in for a CTR dataset) tuned on valid logloss:
    trials never evaluate the test part; best/ is a ranker run."""
    from recembed.models.ranking.base import Ranker
    from recembed.ranking import datasets
    from recembed.testing.fixtures import planted_ctr

    data = planted_ctr()
    monkeypatch.setattr(datasets, "load_ctr", lambda name, root=None: data)
    parts: list[str] = []
    real = Ranker.evaluate

    def evaluate(self, frame):  # noqa: ANN001, ANN202
        parts.append("test" if frame is data.test else "valid" if frame is data.valid else "?")
        return real(self, frame)

    monkeypatch.setattr(Ranker, "evaluate", evaluate)
    space_file = tmp_path / "space.toml"
    space_file.write_text("inherit = false\nhidden_units = [16]\nembedding_dim = 8\n[learning_rate]\nlow = 1e-3\n"
                          "high = 1e-2\nlog = true\n")
    out = tmp_path / "s"
    code, text = run_main(["tune", "deepfm", "--data", "ml-100k-ctr", "--metric", "logloss", "--space",
                           str(space_file), "--set", "epochs=2", "--set", "min_steps=5", "--trials", "2", "--threads",
                           "1", "--no-progress", "--out", str(out)])
    assert code == 0, text
    assert parts[:2] == ["valid", "valid"] and parts[2:] == ["valid", "test"]  # the re-fit: once each
    best = json.loads((out / "best_config.json").read_text())
    assert best["direction"] == "minimize" and best["config"]["hidden_units"] == [16]
    assert json.loads((out / "best" / "config.json").read_text())["kind"] == "ranker"


@pytest.mark.parametrize(("space_text", "args", "expect"), [
    (None, ["--space", "nope.toml"], "--space nope.toml: no such file"),
    ("[learning_rate\n", [], "not valid TOML"),
    ("[learnin_rate]\nlow = 1e-4\nhigh = 1e-2\n", [], "'learnin_rate' is not a field of BPRConfig"),
    ("[learning_rate]\nlow = 1e-2\nhigh = 1e-4\n", [], "learning_rate: low must be below high"),
    ("[reg_weight]\nlow = 0.0\nhigh = 1e-2\nlog = true\n", [], "reg_weight: a log scale needs low > 0"),
    ("[embedding_dim]\nchoices = [0, 32]\n", [], "embedding_dim: the value 0 is not valid"),
    ("[embedding_dim]\nlow = 8.5\nhigh = 64\n", [], "embedding_dim: an integer field"),
    ("[item_bias]\nlow = 0\nhigh = 1\n", [], "item_bias: not a numeric field"),
    ("[learning_rate]\nlo = 1e-4\nhigh = 1e-2\n", [], "learning_rate: unknown key(s) ['lo']"),
    (None, ["--metric", "logloss"], "--metric: expected NAME@K"),
    (None, ["--set", "epochs=0"], "epochs: must be >= 1"),
    (None, ["--trials", "0"], "--trials"),
    (None, ["--sampler", "bayes"], "--sampler"),
    (None, ["--split", "random:0.8,0.3"], "split"),
])
def test_bad_flags_and_space_files_exit_2_naming_them(tmp_path, monkeypatch, space_text, args, expect) -> None:
    monkeypatch.chdir(tmp_path)
    if space_text is not None:
        (tmp_path / "space.toml").write_text(space_text)
        args = [*args, "--space", "space.toml"]
    code, text = run_main(["tune", "bpr", "--data", "synthetic:tiny", "--out", "s", "--no-progress", *args])
    assert code == 2, text
    assert expect in text and "Traceback" not in text
    assert not (tmp_path / "s").exists()  # refused before any study is created


def test_model_without_a_space_and_other_refusals(tmp_path) -> None:
    code, text = run_main(["tune", "gfcf", "--data", "synthetic:tiny", "--out", str(tmp_path / "s")])
    assert code == 2 and "gfcf declares no search space" in text and "--space FILE.toml" in text
    code, text = run_main(["tune", "deepfm", "--data", "synthetic:tiny", "--out", str(tmp_path / "s")])
    assert code == 2 and "--data" in text and "CTR dataset" in text
    code, text = run_main(["tune", "bpr", "--out", str(tmp_path / "s")])
    assert code == 2 and "--data" in text
    code, text = run_main(["tune", "sasrec", "--show-space"])
    assert code == 0 and "max_len" in text and "learning_rate" in text


def test_every_declared_space_is_valid_and_documented() -> None:
    from recembed.models.registry import model_class

    for name in ("bpr", "lightgcn", "multvae", "sasrec", "ease", "itemknn", "deepfm", "dcnv2"):
        config = model_class(name).Config
        space, _ = spaces.resolve(config, name, {})
        spaces.check_space(config, space, {}, name)
        assert spaces.grid(space) and all(row[3] for row in spaces.describe(config, space)), name


def test_a_second_worker_joins_the_study(tmp_path) -> None:
    """What a ``--jobs`` worker process runs (here in this process): it joins the study and adds trials until the
    study holds ``--trials``; the next command finds nothing left to search."""
    from recembed.tuning.objectives import worker_main

    out = tmp_path / "s"
    args = ["tune", "ease", "--data", "synthetic:tiny", "--no-progress", "--out", str(out)]
    code, text = run_main([*args, "--trials", "2"])
    assert code == 0, text
    worker_main(TuneSpec(model="ease", data="synthetic:tiny", out_dir=str(out), trials=4), 1, None)
    study = studies.open_study(out, direction="maximize", sampler=optuna.samplers.RandomSampler(),
                               pruner=optuna.pruners.NopPruner())
    assert len(studies.finished(study)) == 4
    code, text = run_main([*args, "--trials", "4"])
    assert code == 0 and "nothing left to search" in text, text


def test_the_first_trial_is_the_models_defaults(tmp_path) -> None:
    """A search never ends below the defaults it started from: trial 0 runs them (where they lie in the space)."""
    import dataclasses

    from recembed.models.registry import model_class

    out = tmp_path / "study"
    code, text = run_main(["tune", "bpr", "--data", "synthetic:tiny", "--set", "epochs=2", *FAST_BPR, "--pruner",
                           "none", "--trials", "3", "--out", str(out)])
    assert code == 0, text
    config = model_class("bpr").Config
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    space = spaces.declared_space(config)
    point = spaces.default_point(config, space)
    assert point and set(point) <= set(space)
    first = pq.read_table(out / "trials.parquet").to_pylist()[0]
    for name, value in point.items():
        assert first[f"param_{name}"] == pytest.approx(value) and value == pytest.approx(defaults[name])
    # a default outside the searched range is left to the sampler
    narrow = {"learning_rate": spaces.Float(0.5, 0.9), "embedding_dim": spaces.Choice((8, 16))}
    assert spaces.default_point(config, narrow) == {}
