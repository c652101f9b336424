"""Run the HTTP service: one uvicorn process, or several workers that each own a ``SO_REUSEPORT`` socket.

uvicorn's own ``--workers`` shares one listening socket between the processes; the first to wake accepts a burst
of new connections, so keep-alive clients (a load balancer, a benchmark's 32 connections) end up mostly on one
worker (29 of 32 in our load test) while the other idles. Here each worker binds its own socket to the same
address with ``SO_REUSEPORT`` and the kernel spreads connections over them by hashing the client address and
port. A worker listens only once its bundle is loaded (uvicorn calls ``listen`` after the app's start-up), so no
connection waits on a worker that is still loading. Linux, BSD and macOS have ``SO_REUSEPORT``; elsewhere this
falls back to uvicorn's workers. Sockets in one reuse-port group must belong to the same user.

``SIGHUP`` to the main process is forwarded to every worker, which reloads its bundle (:mod:`.reload`); workers
die with the main process (Linux).

The app comes from :func:`recembed.serve.app.app_from_env` (configuration in ``RECEMBED_SERVE_*``, inherited by
the workers).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import time
from typing import Any

APP = "recembed.serve.app:app_from_env"


def _bound_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    return sock


def _die_with_parent() -> None:
    """Linux: this worker gets SIGTERM when the main process dies (a ``kill -9`` of ``recembed serve`` must not
    leave workers holding the port, nor talking to a store the main process held)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    _die_with_parent()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the app's start-up installs its reload handler
    sock = _bound_socket(host, port)  # not listening yet: asyncio's create_server listens after start-up
    uvicorn.Server(uvicorn.Config(APP, factory=True, host=host, port=port, **options)).run(sockets=[sock])


def run(host: str, port: int, workers: int = 1, **options: Any) -> None:
    """Serve :data:`APP` on ``host:port`` with ``workers`` processes; ``options`` go to ``uvicorn.Config``
    (``log_level``, ``access_log``, ...). Returns when the server stops (Ctrl-C / SIGTERM)."""
    import uvicorn

    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, **options)
        return
    _bound_socket(host, port).close()  # the address is free (or fail here, before any worker starts)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(host, port, options), name=f"recembed-serve-{i}")
             for i in range(workers)]
    stopping = False

    def stop(signum: int, frame: Any) -> None:  # noqa: ARG001
        nonlocal stopping
        stopping = True

    def forward(signum: int, frame: Any) -> None:  # noqa: ARG001 - SIGHUP: every worker reloads its bundle
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGHUP)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, forward)
    try:
        for p in procs:
            p.start()
        while not stopping and all(p.is_alive() for p in procs):
            time.sleep(0.2)
    finally:
        for p in procs:  # graceful first (uvicorn finishes the requests in flight), then kill
            if p.is_alive() and p.pid is not None:
                p.terminate()
        deadline = time.monotonic() + 30
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [p for p in procs if p.exitcode not in (0, -signal.SIGTERM)]
    if not stopping and failed:
        sys.exit(f"recembed serve: worker {failed[0].name} exited with code {failed[0].exitcode}")
