"""A newcomer's mistakes on every command, through the real CLI (``python -m recembed.cli``, its own error
handling): exit code 2, a message naming the flag / field / file, never a traceback. docs/bad-input.md lists these
cases; the Python side (``recommend(k=0)``, ``valid_metric`` at config time) and a real ``--resume`` follow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import recembed
from recembed.errors import ConfigError
from recembed.testing.fixtures import planted_split

SRC = Path(recembed.__file__).resolve().parents[1]


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "300", "RECEMBED_DATA_ROOT": str(cwd / "no-data")}
    return subprocess.run([sys.executable, "-m", "recembed.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def flat(res: subprocess.CompletedProcess) -> str:
    return " ".join((res.stdout + res.stderr).split())


# One subprocess runs every case: it imports the CLI (and torch) once, then forks a child per case that calls the
# real entry point ``recembed.cli.main:main`` (its error handling, its exit code) with stdout / stderr on files; an
# exception escaping main() prints its traceback and exits 1, as the interpreter would.
DRIVER = r"""
import json, os, sys, traceback
import recembed.cli.main as cli_main
import recembed.runs, torch  # noqa: F401 - imported once, before the forks
results = []
for i, args in enumerate(json.load(sys.stdin)):
    out, err = f".case-{i}.out", f".case-{i}.err"
    pid = os.fork()
    if pid == 0:
        code = 1
        with open(out, "w") as fo, open(err, "w") as fe:
            os.dup2(fo.fileno(), 1)
            os.dup2(fe.fileno(), 2)
            sys.argv = ["recembed", *args]
            try:
                cli_main.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    with open(out) as fo, open(err) as fe:
        results.append({"rc": os.waitstatus_to_exitcode(status), "stdout": fo.read(), "stderr": fe.read()})
print(json.dumps(results))
"""


def run_cases(cases: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "300", "RECEMBED_DATA_ROOT": str(cwd / "no-data")}
    res = subprocess.run([sys.executable, "-c", DRIVER], cwd=cwd, env=env, input=json.dumps(cases),
                         capture_output=True, text=True, timeout=900, check=False)
    assert res.returncode == 0, res.stderr
    return [subprocess.CompletedProcess(args, r["rc"], r["stdout"], r["stderr"])
            for args, r in zip(cases, json.loads(res.stdout.splitlines()[-1]))]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One tiny fitted ``ease`` run and one ``bpr`` run with a checkpoint, plus broken copies of a run."""
    d = tmp_path_factory.mktemp("bad-cli")
    for args in (["fit", "ease", "--data", "synthetic:tiny", "--out", "ease", "--no-progress"],
                 ["fit", "bpr", "--data", "synthetic:tiny", "--out", "bpr", "--no-progress", "--threads", "1",
                  "--set", "epochs=2", "--set", "embedding_dim=8", "--checkpoint-dir", "ck"]):
        res = run_cli(args, d)
        assert res.returncode == 0, flat(res)
    (d / "notarun").mkdir()
    (d / "emptyck").mkdir()
    shutil.copytree(d / "ease", d / "badcfg")
    (d / "badcfg" / "config.json").write_text("{bad", encoding="utf-8")
    shutil.copytree(d / "ease", d / "listcfg")
    (d / "listcfg" / "config.json").write_text("[]", encoding="utf-8")
    shutil.copytree(d / "ease", d / "badparquet")
    (d / "badparquet" / "users.parquet").write_bytes(b"junk")
    shutil.copytree(d / "ease", d / "nosplit")
    (d / "nosplit" / "split.parquet").unlink()
    (d / "notime.csv").write_text("user_id,item_id\n" + "".join(f"u{u},i{(u + k) % 9}\n" for u in range(9)
                                                                  for k in range(4)), encoding="utf-8")
    for name, text in DATA_FILES.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text, encoding="utf-8")
    return d


# Data files of the folder / sequence formats (the own-data CSV / Parquet / item-table / vector cases are in
# tests/test_own_data.py): each a mistake `fit --data` must name with its file and line.
DATA_FILES = {
    "data/ok.csv": "user_id,item_id\nu1,a\nu2,b\nu1,b\nu2,c\n",
    "data/bad.json": '{"u1": ["a", "b"],\n "u2": [1, 2,]}',
    "data/list.json": '[["a", "b"]]',
    "data/dup.txt": "u1 a b c\nu2 b d\n\nu1 e\n",
    "data/nouser.txt": "u1 a b\nu2\n",
    "data/fake.parquet": "user_id,item_id\n1,2\n",
    "data/rb/rb.inter": "user_id:token\titem_id:tok\n1\t10\n",
    "data/rbnan/rbnan.inter": "user_id:token\titem_id:token\trating:float\n1\t10\tnan\n",
    "data/mm/mm.inter": "userID\titemID\tx_label\n0\t0\t0\n0\t1\t7\n",
    "data/sd/train.tsv": "user_id\titem_id\nu1\ta\nu2\tb\n",
    "data/sd/test.tsv": "user_id\titem_id\nu9\ta\n",
    "data/vec.txt": "0.1 0.2\n",
    "data/notencoded/readme.txt": "x",
}
OK = ["fit", "pop", "--data", "data/ok.csv", "--out", "r"]
DATA_CASES = {
    "json-invalid": (["fit", "pop", "--data", "data/bad.json", "--out", "r"],
                     "data/bad.json, line 2: not valid JSON"),
    "json-not-an-object": (["fit", "pop", "--data", "data/list.json", "--out", "r"],
                           "data/list.json: expected a JSON object mapping user ids to lists of item ids"),
    "sequence-user-twice": (["fit", "pop", "--data", "data/dup.txt", "--out", "r"],
                            "data/dup.txt, line 4: user 'u1' has more than one line (first at line 1)"),
    "sequence-user-without-items": (["fit", "pop", "--data", "data/nouser.txt", "--out", "r"],
                                    "data/nouser.txt, line 2: expected at least 2 whitespace-separated values"),
    "parquet-not-parquet": (["fit", "pop", "--data", "data/fake.parquet", "--out", "r"],
                            "data/fake.parquet: not a readable Parquet file"),
    "recbole-bad-header": (["fit", "pop", "--data", "data/rb", "--out", "r"],
                           "data/rb/rb.inter, line 1, field 'item_id:tok': header field 'item_id:tok' is not"),
    "recbole-nan-rating": (["fit", "pop", "--data", "data/rbnan", "--out", "r"],
                           "data/rbnan/rbnan.inter, field 'rating': NaN value (event 0, 0-based)"),
    "mmrec-bad-x-label": (["fit", "pop", "--data", "data/mm", "--out", "r"],
                          "data/mm/mm.inter, line 3, field 'x_label': x_label must be 0, 1 or 2, found 7"),
    "split-dir-unknown-user": ([*OK, "--split", "data/sd"],
                               "data/sd/test.tsv, line 2, field 'user_id': unknown user id 'u9'"),
    "features-unsupported-suffix": ([*OK, "--features", "img=data/vec.txt"],
                                    "data/vec.txt: unsupported vector file type '.txt'; expected .npy or .parquet"),
    "features-file-not-found": ([*OK, "--features", "img=data/nope.npy"], "data/nope.npy: file not found"),
    "features-folder-not-encoded": ([*OK, "--features", "data/notencoded"],
                                    "data/notencoded: expected NAME=PATH or a folder written by `recembed encode`"),
}


TINY = ["--data", "synthetic:tiny", "--out", "r"]
BPR = ["fit", "bpr", *TINY, "--set", "epochs=1"]
CASES = {
    # name: (arguments, message fragment)
    # --- the cut-off: --k on recommend / similar / export (--top-k kept as a hidden alias) ---
    "recommend-k-0": (["recommend", "ease", "--user", "u3", "--k", "0"],
                      "Invalid value for '--k': 0 is not in the range x>=1"),
    "recommend-k-negative": (["recommend", "ease", "--user", "u3", "--k", "-1"], "'--k': -1 is not in the range x>=1"),
    "recommend-history-k-0": (["recommend", "ease", "--history", "i1,i2", "--k", "0"], "'--k': 0 is not in the range"),
    "recommend-k-not-int": (["recommend", "ease", "--user", "u3", "--k", "2.5"], "'--k': '2.5' is not a valid integer"),
    "similar-k-0": (["similar", "ease", "--item", "i1", "--k", "0"], "'--k': 0 is not in the range x>=1"),
    "similar-k-negative": (["similar", "ease", "--item", "i1", "--k", "-3"], "'--k': -3 is not in the range x>=1"),
    "export-k-0": (["export", "ease", "--k", "0", "--out", "x.parquet"], "'--k': 0 is not in the range x>=1"),
    "export-top-k-alias-0": (["export", "ease", "--top-k", "0", "--out", "x.parquet"], "'--k': 0 is not in the range"),
    "export-batch-size-0": (["export", "ease", "--batch-size", "0", "--out", "x.parquet"],
                            "'--batch-size': 0 is not in the range x>=1"),
    "index-queries-0": (["index", "build", "bpr", "--queries", "0"], "'--queries': 0 is not in the range x>=1"),
    "index-k-0": (["index", "build", "bpr", "--k", "0"], "'--k': 0 is not in the range x>=1"),
    # --- valid_metric, checked when the config is built (before any data or training) ---
    "valid-metric-typo": ([*BPR, "--set", "valid_metric=ndgc@10"],
                          "valid_metric: unknown metric 'ndgc' (did you mean 'ndcg'?) in 'ndgc@10'; known: recall@K"),
    "valid-metric-k-0": ([*BPR, "--set", "valid_metric=ndcg@0"], "valid_metric: K must be a positive integer, got '0'"),
    "valid-metric-k-text": ([*BPR, "--set", "valid_metric=ndcg@x"], "valid_metric: K must be a positive integer"),
    "valid-metric-no-k": ([*BPR, "--set", "valid_metric=ndcg"], "valid_metric: expected NAME@K"),
    # --- --resume / --checkpoint-dir ---
    "resume-without-dir": ([*BPR, "--resume"], "--resume needs --checkpoint-dir DIR"),
    "resume-missing-dir": ([*BPR, "--resume", "--checkpoint-dir", "nothere"],
                           "--resume: checkpoint folder nothere does not exist; drop --resume to start fresh"),
    "resume-empty-dir": ([*BPR, "--resume", "--checkpoint-dir", "emptyck"],
                         "--resume: no checkpoint in emptyck (no checkpoint.json); drop --resume to start fresh"),
    "resume-not-trainable": (["fit", "ease", *TINY, "--resume", "--checkpoint-dir", "ck"],
                             "--resume: ease is not trained epoch by epoch, so it has no checkpoints"),
    "checkpoint-dir-not-trainable": (["fit", "ease", *TINY, "--checkpoint-dir", "ck2"],
                                     "--checkpoint-dir: ease is not trained epoch by epoch"),
    # --- --split ---
    "split-zero-train": (["fit", "ease", *TINY, "--split", "random:0,0,1"],
                         "split 'random:0,0,1': the train ratio is 0 (nothing to fit on)"),
    "split-zero-test": (["fit", "ease", *TINY, "--split", "random:1,0,0"],
                        "split 'random:1,0,0': the test ratio is 0 (nothing to evaluate on)"),
    "split-two-ratios-not-1": (["fit", "ease", *TINY, "--split", "random:0.8,0.1"],
                               ("split 'random:0.8,0.1': the ratios sum to 0.9, not 1; expected "
                                "random:TRAIN,VALID,TEST or random:TRAIN,TEST")),
    "split-four-ratios": (["fit", "ease", *TINY, "--split", "temporal:0.7,0.1,0.1,0.1"],
                          "split 'temporal:0.7,0.1,0.1,0.1': 4 ratio(s)"),
    "split-negative": (["fit", "ease", *TINY, "--split", "random:-0.2,0.6,0.6"], "a ratio is negative"),
    "split-not-numbers": (["fit", "ease", *TINY, "--split", "random:a,b,c"],
                          "split 'random:a,b,c': arguments must be numbers, e.g. random:0.8,0.1,0.1"),
    "split-unknown-kind": (["fit", "ease", *TINY, "--split", "randm:0.8,0.1,0.1"],
                           "unknown split 'randm:0.8,0.1,0.1' (did you mean 'random'?)"),
    "split-fraction": (["fit", "ease", *TINY, "--split", "cold-items:2"], "the fraction must be in (0, 1)"),
    "split-missing-dir": (["fit", "ease", *TINY, "--split", "splits/"], "unknown split 'splits/' (no such directory)"),
    "split-given-without-one": (["fit", "ease", *TINY, "--split", "given"], "dataset 'synthetic' defines no split"),
    "split-temporal-without-time": (["fit", "pop", "--data", "notime.csv", "--split", "temporal:0.8,0.1,0.1",
                                     "--out", "r"], "split 'temporal:0.8,0.1,0.1' needs timestamps"),
    # --- fit: model, --set, --data, --ks, --threads ---
    "unknown-model": (["fit", "lightgc", *TINY], "unknown model 'lightgc' (did you mean 'lightgcn'?)"),
    "unknown-set-key": (["fit", "ease", *TINY, "--set", "l3=5"],
                        "unknown key(s) ['l3'] for EASEConfig (did you mean 'l2'?)"),
    "set-wrong-type": (["fit", "ease", *TINY, "--set", "l2=abc"], "l2: expected a number, got 'abc'"),
    "set-out-of-range": ([*BPR, "--set", "epochs=0"], "epochs: must be >= 1, got 0"),
    "set-without-equals": (["fit", "ease", *TINY, "--set", "l2"], "--set: expected key=value, got 'l2'"),
    "missing-data-file": (["fit", "ease", "--data", "missing.csv", "--out", "r"],
                          "'missing.csv': no such file or folder"),
    "unknown-dataset": (["fit", "ease", "--data", "synthetc", "--out", "r"], "'synthetc' (did you mean 'synthetic'?)"),
    "unknown-dataset-variant": (["fit", "ease", "--data", "synthetic:huge", "--out", "r"],
                                "synthetic scale must be tiny, default or large"),
    "ks-not-numbers": (["fit", "ease", *TINY, "--ks", "5,x"], "'--ks': expected positive integers separated by commas"),
    "ks-zero": (["fit", "ease", *TINY, "--ks", "0,10"], "'--ks': expected positive integers"),
    "seed-negative": (["fit", "ease", *TINY, "--seed", "-1"], "'--seed': -1 is not in the range x>=0"),
    "out-is-a-file": (["fit", "ease", "--data", "synthetic:tiny", "--out", "notime.csv"],
                      "'--out': Directory 'notime.csv' is a file"),
    "json-out-under-a-file": (["evaluate", "ease", "--json", "notime.csv/scores.json"], "error: notime.csv: File exists"),
    "threads-0": (["fit", "ease", *TINY, "--threads", "0"], "'--threads': 0 is not in the range x>=1"),
    "text-columns-without-items": (["fit", "pop", "--data", "notime.csv", "--text-columns", "title", "--out", "r"],
                                   "--text-columns title: notime has no item table"),
    "unknown-command": (["fitt"], "No such command 'fitt'"),
    "unknown-option": (["recommend", "ease", "--usr", "u3"], "No such option '--usr'. Did you mean '--user'?"),
    # --- run directories and ids ---
    "unknown-user": (["recommend", "ease", "--user", "nobody"],
                     "1 user id(s) in --user not in the user vocabulary (size 300), e.g. ['nobody']"),
    "unknown-item": (["similar", "ease", "--item", "nothing"], "1 item id(s) in --item not in the item vocabulary"),
    "unknown-history-item": (["recommend", "ease", "--history", "zz1,i1"], "in --history not in the item vocabulary"),
    "user-and-history": (["recommend", "ease", "--user", "u3", "--history", "i1"],
                         "give exactly one of --user and --history"),
    "history-on-a-per-user-model": (["recommend", "bpr", "--history", "i1,i2"],
                                    "--history: BPR cannot score an arbitrary history"),
    "run-dir-missing": (["evaluate", "nowhere"], "Directory 'nowhere' does not exist"),
    "not-a-run": (["evaluate", "notarun"], "notarun: not a complete run directory (no metrics.json)"),
    "run-missing-a-file": (["recommend", "nosplit", "--user", "u3"],
                           "nosplit: not a complete run directory: missing split.parquet"),
    "run-corrupted-config": (["evaluate", "badcfg"], "badcfg/config.json, line 1: not valid JSON"),
    "run-config-not-an-object": (["evaluate", "listcfg"],
                                 "listcfg/config.json: expected a JSON object (as `recembed fit` writes)"),
    "run-corrupted-parquet": (["similar", "badparquet", "--item", "i1"],
                              "badparquet: unreadable run file (Could not open Parquet input source"),
    "evaluate-set-training-key": (["evaluate", "ease", "--set", "l2=5"], "cannot change after ease is fitted"),
    "compare-unknown-metric": (["compare", "ease", "bpr", "--metric", "ndgc@10"],
                               "'ndgc@10' (did you mean 'ndcg@10'?) not in ease"),
    "compare-not-a-run": (["compare", "ease", "notarun"], "notarun/metrics.json: file not found"),
    "ensemble-bad-weights": (["ensemble", "ease", "bpr", "--out", "ens", "--weights", "a,b"],
                             "--weights: expected numbers separated by commas"),
    "ensemble-weight-count": (["ensemble", "ease", "bpr", "--out", "ens", "--weights", "1"],
                              "weights: one weight per member (2), got 1"),
    "ensemble-ks": (["ensemble", "ease", "bpr", "--out", "ens", "--ks", "5,,10"], "'--ks': expected positive"),
    "index-not-embedding": (["index", "build", "ease"], "ease is served by its own scoring: no user/item vectors"),
    "serve-port": (["serve", "ease", "--port", "70000"], "'--port': 70000 is not in the range 0<=x<=65535"),
    "serve-not-a-run": (["serve", "notarun"], "notarun: neither a bundle (manifest.json) nor a run directory"),
    "bundle-run-missing-a-file": (["bundle", "nosplit", "--out", "b"],
                                  "nosplit: not a complete run directory: missing split.parquet"),
    "tokenize-run-missing-a-file": (["tokenize", "--data", "synthetic:tiny", "--vectors", "nosplit", "--out", "t"],
                                    "nosplit: not a complete run directory: missing split.parquet"),
    "encode-batch-size-0": (["encode", "--data", "synthetic:tiny", "--batch-size", "0", "--out", "enc"],
                            "'--batch-size': 0 is not in the range x>=1"),
    "tokenize-levels-0": (["tokenize", "--data", "synthetic:tiny", "--vectors", "bpr", "--levels", "0", "--out", "t"],
                          "'--levels': 0 is not in the range x>=1"),
    "tokenize-unknown-source": (["tokenize", "--data", "synthetic:tiny", "--vectors", "nosuch", "--out", "t"],
                                "vector source 'nosuch' is neither an item-table column"),
    **DATA_CASES,
}


@pytest.fixture(scope="module")
def results(work: Path) -> dict[str, subprocess.CompletedProcess]:
    names = sorted(CASES)
    return dict(zip(names, run_cases([CASES[n][0] for n in names], work)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_a_message(case: str, results, work: Path) -> None:
    _, fragment = CASES[case]
    res = results[case]
    out = flat(res)
    assert res.returncode == 2, f"{case}: rc {res.returncode}\n{out}"
    assert "Traceback" not in res.stderr, res.stderr
    assert fragment in out, f"{case}: {fragment!r} not in {out!r}"
    assert not (work / "r" / "metrics.json").exists()


def test_help_shows_k_and_hides_the_old_spelling(work: Path) -> None:
    for command in ("recommend", "similar", "export"):
        res = run_cli([command, "-h"], work)
        assert res.returncode == 0 and "--k INTEGER RANGE" in res.stdout and "--top-k" not in res.stdout, res.stdout
    res = run_cli(["recommend", "ease", "--user", "u3", "--top-k", "3"], work)  # the old spelling still works
    assert res.returncode == 0 and "top 3 for user u3" in flat(res), flat(res)


def test_a_real_resume_says_where_it_resumed(work: Path) -> None:
    """The bpr run of the fixture wrote a checkpoint at epoch 2; resuming with epochs=3 runs one more epoch."""
    shutil.copytree(work / "ck", work / "ck-resume")
    res = run_cli(["fit", "bpr", "--data", "synthetic:tiny", "--out", "resumed", "--no-progress", "--threads", "1",
                   "--set", "epochs=3", "--set", "embedding_dim=8", "--checkpoint-dir", "ck-resume", "--resume"], work)
    assert res.returncode == 0, flat(res)
    assert "resumed at epoch 2 from ck-resume/checkpoint-2.safetensors: continuing with epoch 3 of 3" in res.stderr
    history = json.loads((work / "resumed" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]


# ------------------------------------------------------------------------------------------------
# the Python side
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ease():
    from recembed.models.registry import model_class

    return model_class("ease")().fit(planted_split().train)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "10"])
def test_recommend_and_similar_refuse_a_k_that_is_not_a_positive_int(ease, k) -> None:
    with pytest.raises(ConfigError, match=r"^k: expected a positive integer \(how many items to return\)"):
        ease.recommend(0, k=k)
    with pytest.raises(ConfigError, match="^k: expected a positive integer"):
        ease.similar_items(0, k=k)
    with pytest.raises(ConfigError, match="^k: expected a positive integer"):
        ease.recommend_history([1, 2], k=k)


def test_recommend_and_similar_accept_numpy_ints(ease) -> None:
    items, _ = ease.recommend(0, k=np.int64(3))
    assert items.shape == (3,)
    assert ease.similar_items(0, k=1)[0].shape == (1,)


@pytest.mark.parametrize("value, fragment", [
    ("ndgc@10", "unknown metric 'ndgc' (did you mean 'ndcg'?)"),
    ("recall@0", "K must be a positive integer, got '0'"),
    ("recall@ten", "K must be a positive integer"),
    ("ndcg", "expected NAME@K"),
])
def test_valid_metric_is_checked_when_the_config_is_built(value: str, fragment: str) -> None:
    from recembed.config import build_config
    from recembed.models.registry import model_class

    with pytest.raises(ConfigError) as info:
        build_config(model_class("bpr").Config, {"valid_metric": value})
    assert str(info.value).startswith("valid_metric: ") and fragment in str(info.value)
    for ok in ("ndcg@10", "recall@20", "map@5", "hit@1"):
        assert build_config(model_class("bpr").Config, {"valid_metric": ok}).valid_metric == ok


def test_docs_list_every_case() -> None:
    """docs/bad-input.md has a row for every case here and in tests/test_own_data.py, with its message."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        import test_own_data
    finally:
        sys.path.remove(str(Path(__file__).parent))
    doc = (Path(__file__).resolve().parents[1] / "docs" / "bad-input.md").read_text(encoding="utf-8")
    assert doc.startswith("# Bad input: what you see\n") and "\n## Command line\n" in doc and "\n## Your data\n" in doc
    cli_part, data_part = doc.split("\n## Your data\n", 1)
    own = {name: fragment for name, (_, _, fragment) in test_own_data.CASES.items()}
    for part, cases in ((cli_part, {n: f for n, (_, f) in CASES.items() if n not in DATA_CASES}),
                        (data_part, {**own, **{n: f for n, (_, f) in DATA_CASES.items()}})):
        for name, fragment in cases.items():
            assert f"`[{name}]`" in part, f"docs/bad-input.md has no row for {name}"
            assert fragment.replace("|", "\\|") in part, f"docs/bad-input.md: {name}'s message {fragment!r}"


def test_warnings_that_are_not_errors(work: Path) -> None:
    """Not mistakes, but surprises said out loud (exit code 0)."""
    res = run_cli(["fit", "pop", "--data", "notime.csv", "--split", "loo", "--out", "loo-run"], work)
    assert res.returncode == 0, flat(res)
    assert "warning: --split loo: the data has no timestamps, so each user's last events are taken in file order" \
        in flat(res)
    res = run_cli(["datasets", "--data-root", "nowhere"], work)
    assert res.returncode == 0 and "warning: the data root nowhere is not a folder" in flat(res), flat(res)
