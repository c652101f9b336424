"""The models/ layout: one model per file, in its family's subpackage; the CLI has no import circle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recembed.models.registry import MODELS, RANKERS, SESSION_MODELS

FAMILIES = {"cf", "content", "sequential", "generative", "ranking", "session"}
TOP_LEVEL = {"ensemble"}  # combines members of any family
MODELS_DIR = Path(__file__).resolve().parents[1] / "src" / "recembed" / "models"


@pytest.mark.parametrize("name", sorted({**MODELS, **RANKERS, **SESSION_MODELS}))
def test_every_model_lives_in_its_family_folder(name: str) -> None:
    module = {**MODELS, **RANKERS, **SESSION_MODELS}[name].partition(":")[0].split(".")
    assert module[:2] == ["recembed", "models"]
    if name in TOP_LEVEL:
        assert len(module) == 3
    else:
        assert len(module) == 4 and module[2] in FAMILIES, name


def test_no_flat_model_files_left_and_files_stay_small() -> None:
    flat = {p.stem for p in MODELS_DIR.glob("*.py")}
    assert flat <= {"__init__", "base", "trainable", "registry", "ensemble", "_memory"}, flat
    for path in MODELS_DIR.rglob("*.py"):
        assert len(path.read_text().splitlines()) < 400, path


@pytest.mark.parametrize("module", ["recembed.cli.serve_cmds", "recembed.cli.semantic_cmds", "recembed.cli.common",
                                    "recembed.cli.run_cmds", "recembed.cli.checks",
                                    "recembed.cli.session_cmds"])
def test_cli_modules_import_on_their_own(module: str) -> None:
    """Each command module imports first in a fresh interpreter (no main <-> command-module circle)."""
    code = f"import {module}, sys; assert 'recembed.cli.main' not in sys.modules, 'imports main'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_short_help_flag() -> None:
    from click.testing import CliRunner

    from recembed.cli.main import cli

    for args in (["-h"], ["fit", "-h"], ["index", "-h"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0 and "Usage:" in result.output, (args, result.output)
