"""The shared progress bar (recembed.progress): shown on a terminal when the work outlasts the delay, never in
pipes / logs, never with --no-progress; used by bundle, export and index build."""

from __future__ import annotations

import io
import time

import pytest
from click.testing import CliRunner
from rich.console import Console
from test_serve_support import bundle_of, fitted_run

from recembed import progress
from recembed.cli import serve_cmds
from recembed.cli.main import cli
from recembed.progress import ProgressBar


def _terminal() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=120), buf


def test_a_bar_shows_on_a_terminal_once_the_delay_has_passed() -> None:
    console, buf = _terminal()
    with ProgressBar("bundle", total=3, delay=0.05, console=console) as bar:
        bar.step("model")
        time.sleep(0.4)  # no update meanwhile: the bar still appears (a timer starts it)
        bar.step("index (hnsw)")
    assert bar.shown and "bundle: index (hnsw)" in buf.getvalue()


def test_quick_work_and_non_terminals_print_nothing() -> None:
    console, buf = _terminal()
    with ProgressBar("export", total=10, console=console) as bar:  # default delay: 1 s
        bar.update(10, 10)
    assert not bar.shown and buf.getvalue() == ""
    pipe = io.StringIO()
    with ProgressBar("export", total=10, delay=0, console=Console(file=pipe)) as bar:
        bar.advance(5)
    assert not bar.enabled and pipe.getvalue() == ""
    console, buf = _terminal()
    with ProgressBar("export", total=10, delay=0, enabled=False, console=console) as bar:  # --no-progress
        bar.advance(5)
    assert buf.getvalue() == ""


@pytest.mark.parametrize("args", [
    lambda tmp: ["export", str(bundle_of("bpr")), "--k", "5", "--out", str(tmp / "r.parquet")],
    lambda tmp: ["bundle", str(fitted_run("bpr")), "--out", str(tmp / "b")],
    lambda tmp: ["index", "build", str(bundle_of("bpr")), "--kind", "flat", "--queries", "20"],
])
def test_commands_show_a_bar_on_a_terminal_and_hide_it_with_no_progress(tmp_path, monkeypatch, args) -> None:
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0.0)
    for flag, expect_bar in (([], True), (["--no-progress"], False)):
        console, buf = _terminal()
        monkeypatch.setattr(serve_cmds, "_console", lambda console=console: console)
        out = tmp_path / ("bar" if expect_bar else "nobar")
        out.mkdir()
        res = CliRunner().invoke(cli, [*args(out), *flag])
        assert res.exit_code == 0, res.output
        name = args(out)[0] if args(out)[0] != "index" else "index build"
        assert (f"{name}" in buf.getvalue() and "━" in buf.getvalue()) == expect_bar, buf.getvalue()[-500:]
