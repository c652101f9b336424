"""Hot reload: swap in a new verified bundle without failing a request (``POST /admin/reload``, ``SIGHUP``).

The new bundle is loaded and verified (format, checksums; the signature with ``--require-signature``) and its
:class:`~.service.RecService` built in a thread, while the event loop keeps answering with the old service.
Then ``app.state.service`` is replaced in one assignment: handlers compute inline on the event loop and read
the service once per request, so a request runs entirely on the old service or entirely on the new one. A bundle
that fails verification leaves the old service serving (the HTTP call answers 422 naming the problem; a
``SIGHUP`` logs it).

Which bundle: the body's ``{"bundle": DIR}``, else the current path. ``recembed serve`` keeps the current path in
a small pointer file (``RECEMBED_SERVE_BUNDLE_POINTER``, replaced atomically) that every worker reads on
``SIGHUP``; with several workers, ``POST /admin/reload`` reloads the worker that received it, writes the pointer,
and sends ``SIGHUP`` to the main process, which forwards it to every worker. A ``SIGHUP`` that finds the same
bundle (same path, same manifest SHA-256) is a no-op; ``POST /admin/reload`` always rebuilds. With a store, a changed
bundle gets its own collection (bulk-loaded during the reload; see :mod:`.store`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from ..io import atomic_write
from .bundle import MANIFEST, load_bundle
from .service import RecService

log = logging.getLogger("recembed.serve")
POINTER_ENV = "RECEMBED_SERVE_BUNDLE_POINTER"


def manifest_sha(bundle_dir: str | Path) -> str | None:
    try:
        return hashlib.sha256((Path(bundle_dir) / MANIFEST).read_bytes()).hexdigest()
    except OSError:
        return None


def current_bundle(default: str) -> str:
    """The bundle path the pointer file names (``recembed serve`` writes it), else ``default``."""
    pointer = os.environ.get(POINTER_ENV)
    if pointer:
        try:
            text = Path(pointer).read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        if text:
            return text
    return default


def write_pointer(bundle_dir: str) -> None:
    pointer = os.environ.get(POINTER_ENV)
    if pointer:
        atomic_write(pointer, lambda p: Path(p).write_text(str(bundle_dir), encoding="utf-8"))


class Reloader:
    """Builds and swaps services for one app (``app.state.service``); one reload at a time."""

    def __init__(self, app: Any, config: Any, observer: Any) -> None:
        self.app, self.config, self.observer = app, config, observer
        self.lock = asyncio.Lock()
        self.path = current_bundle(config.bundle)
        self.sha = manifest_sha(self.path)
        self.reloads = 0

    def build(self, path: str) -> RecService:
        bundle = load_bundle(path, require_signature=self.config.require_signature)
        service = RecService(bundle, self.config.options)
        service.stage_observer = self.observer
        return service

    async def reload(self, bundle: str | None = None, *, force: bool = True, broadcast: bool = False
                     ) -> dict[str, Any]:
        async with self.lock:
            path = str(bundle) if bundle else current_bundle(self.path)
            sha = manifest_sha(path)
            if not force and path == self.path and sha is not None and sha == self.sha:
                return {"reloaded": False, "bundle": path, "reason": "same bundle (path and manifest unchanged)"}
            t = time.perf_counter()
            service = await asyncio.to_thread(self.build, path)  # the loop keeps serving the old one meanwhile
            old, self.app.state.service = self.app.state.service, service
            previous, self.path, self.sha = self.path, path, manifest_sha(path)
            self.reloads += 1
            if old is not None:
                await asyncio.to_thread(old.close)
            if bundle:
                write_pointer(path)
            signalled = False
            if broadcast and int(os.environ.get("RECEMBED_SERVE_WORKERS", "1")) > 1:
                os.kill(os.getppid(), signal.SIGHUP)  # the main process forwards it to every worker
                signalled = True
            info = service.info()
            return {"reloaded": True, "bundle": path, "previous_bundle": previous, "model": info["model"],
                    "items": info["items"], "bundle_created": info["bundle_created"],
                    "seconds": round(time.perf_counter() - t, 3), "reloads": self.reloads,
                    "workers_signalled": signalled}

    async def on_signal(self) -> None:
        try:
            out = await self.reload(force=False)
            log.warning("SIGHUP: %s", out)
        except Exception as exc:  # noqa: BLE001 - a bad bundle must not stop the server: keep the old one
            log.error("SIGHUP: reload failed, still serving %s: %s", self.path, exc)

    def install(self) -> None:
        """Reload on SIGHUP (this process)."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.on_signal()))
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - not the main thread / Windows
            pass
