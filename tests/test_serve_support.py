"""Shared set-up of the serving tests: small fitted runs / bundles (built once per test process) and a real
``recembed serve`` server process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import httpx
from click.testing import CliRunner

from recembed.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "test-key-123"


@lru_cache(maxsize=1)
def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="recembed-serve-tests-"))


@lru_cache(maxsize=8)
def fitted_run(model: str) -> Path:
    """A run directory of ``model`` fitted on synthetic:tiny (AlphaRec with a TF-IDF text encoder on titles)."""
    out = workdir() / f"run-{model}"
    args = ["fit", model, "--data", "synthetic:tiny", "--out", str(out), "--no-progress"]
    if model == "alpharec":
        args += ["--set", "epochs=3", "--set", "embedding_dim=32", "--set", "num_negatives=64", "--set",
                 "learning_rate=0.01", "--text-columns", "title", "--encoder", "tfidf"]
    elif model in ("bpr", "sasrec"):
        args += ["--set", "epochs=2"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return out


@lru_cache(maxsize=8)
def bundle_of(model: str, index: str | None = None) -> Path:
    """The bundle of :func:`fitted_run` (written by the CLI)."""
    out = workdir() / f"bundle-{model}-{index or 'none'}"
    args = ["bundle", str(fitted_run(model)), "--out", str(out)] + (["--index", index] if index else [])
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``recembed serve PATH`` in a child process (``with Server(path) as url: ...``)."""

    def __init__(self, path: Path, *extra: str, api_key: str | None = API_KEY, timeout: float = 90.0) -> None:
        self.path, self.extra, self.api_key, self.timeout = path, extra, api_key, timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = workdir() / f"server-{self.port}.log"

    def __enter__(self) -> str:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("RECEMBED_API_KEY", None)
        if self.api_key is not None:
            env["RECEMBED_API_KEY"] = self.api_key
        cmd = [sys.executable, "-m", "recembed.cli", "serve", str(self.path), "--port", str(self.port),
               *self.extra]
        self.proc = subprocess.Popen(cmd, env=env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"server did not answer /health within {self.timeout}s:\n{self.log.read_text()}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
