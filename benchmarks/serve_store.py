"""The 100k-item load test of ``benchmarks/serve_load.py`` with the item index in Milvus (``--store``), next to
the in-process FAISS HNSW index, in one session; plus a hot reload under load.

    python benchmarks/serve_store.py [--items 100000] [--users 20000] [--dim 64] [--duration 30]
                                     [--connections 32] [--workers 2] [--out DIR] [--reuse-bundle]

1. builds (or reuses) the synthetic 100k-item bundle of ``serve_load.py`` (stored HNSW index);
2. ``faiss``: ``recembed serve BUNDLE --index hnsw --workers W``; ``milvus``: ``recembed serve BUNDLE --store
   milvus:OUT/store.db --workers W`` (milvus-lite, embedded in the main process; the workers connect to it).
   The first Milvus start bulk-loads the collection (its time is reported), a second start reuses it (reported);
   ``local``: ``--store ... --store-search local`` (added items in the store, searches in the FAISS index);
3. each: a closed-loop run of ``GET /v1/users/{id}/recommendations?k=10`` for random users (wrk when installed,
   else asyncio + httpx): requests/s, p50 / p99, errors, the load average, and the peak resident memory of the
   server's process tree (sum of ``VmHWM`` over the main process and its workers);
4. reload under load: while a closed loop runs, ``POST /admin/reload`` ``--reloads`` times, alternating between a
   copy of the bundle and the bundle (another path: every worker rebuilds and swaps; same manifest, so the Milvus
   collection is reused); every non-200 answer or socket error is counted.

Every request goes to 127.0.0.1 only. Results: OUT/serve_store.json (default benchmarks/out/).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import (  # noqa: E402 - the load test's own bundle, servers and load generators
    _load_httpx,
    _reusable,
    _tree_cpu_seconds,
    free_port,
    load_wrk,
    stop_server,
    synthetic_bundle,
)

API_KEY = "bench-key"


def _tree(pid: int) -> list[int]:
    out, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat[stat.rfind(")") + 2:].split()[1]) == parent and int(entry) not in out:
                    out.append(int(entry))
                    frontier.append(int(entry))
    return out


def peak_rss_mib(pid: int) -> float:
    """Sum of the peak resident sizes (VmHWM) of a process and its descendants, MiB."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def start(bundle: Path, extra: list[str], workers: int, log: Path) -> tuple[subprocess.Popen, str, float]:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "recembed.cli", "serve", str(bundle), "--port", str(port), "--workers",
           str(workers), "--threads", "1", *extra]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "RECEMBED_API_KEY": API_KEY})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                pids = set()
                while len(pids) < workers and time.monotonic() < deadline:  # every worker up
                    with httpx.Client(timeout=30) as c:
                        pids.add(c.get(url + "/health").json()["pid"])
                return proc, url, round(time.perf_counter() - t, 1)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("server did not start")


def drive(url: str, users: int, duration: int, connections: int, tool: str, seed: int) -> dict[str, Any]:
    if tool == "wrk":
        out = load_wrk(url, users, duration, connections, 1, seed)
        out.pop("raw", None)
        return out
    return asyncio.run(_load_httpx(url, users, duration, connections, seed))


def measure(name: str, bundle: Path, extra: list[str], args: argparse.Namespace, tool: str) -> dict[str, Any]:
    proc, url, started = start(bundle, extra, args.workers, args.out / f"{name}.log")
    try:
        cpu0, load0 = _tree_cpu_seconds(proc.pid), os.getloadavg()
        r = drive(url, args.users, args.duration, args.connections, tool, args.seed)
        cpu = _tree_cpu_seconds(proc.pid) - cpu0
        r.update({"name": name, "start_seconds": started, "loadavg_before": load0, "loadavg_after": os.getloadavg(),
                  "server_cpu_ms_per_request": round(1e3 * cpu / max(1, r["requests"]), 2),
                  "peak_rss_mib": peak_rss_mib(proc.pid),
                  "log_head": (args.out / f"{name}.log").read_text()[:600]})
        if args.reloads and name.startswith(("faiss", "milvus")) and "reuse" not in name:
            r["reload"] = reload_under_load(url, bundle, args, tool)
        return r
    finally:
        stop_server(proc)


def reload_under_load(url: str, bundle: Path, args: argparse.Namespace, tool: str) -> dict[str, Any]:
    """Closed-loop runs of 10 s back to back, from before the first reload until after the last one returns."""
    import httpx

    answers: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    done = threading.Event()

    def load() -> None:
        while not done.is_set():
            runs.append(drive(url, args.users, 10, args.connections, tool, args.seed + len(runs)))

    th = threading.Thread(target=load)
    th.start()
    time.sleep(3)
    other = bundle.with_name(bundle.name + "-copy")  # another path: every worker swaps (SIGHUP forwarded)
    if not other.exists():
        shutil.copytree(bundle, other)
    try:
        with httpx.Client(base_url=url, timeout=900) as c:
            for i in range(args.reloads):
                t = time.perf_counter()
                target = other if i % 2 == 0 else bundle
                r = c.post("/admin/reload", json={"bundle": str(target)}, headers={"X-API-Key": API_KEY})
                answers.append({"status": r.status_code, "seconds": round(time.perf_counter() - t, 2),
                                "workers_signalled": r.json().get("workers_signalled")})
            deadline = time.monotonic() + 900  # the other workers finish their swap (SIGHUP) too
            while time.monotonic() < deadline and args.workers > 1:
                with httpx.Client(base_url=url, timeout=30) as fresh:
                    seen = {fresh.get("/health").json()["reloads"] for _ in range(8)}
                if seen == {args.reloads}:
                    break
                time.sleep(2)
    finally:
        time.sleep(3)
        done.set()
        th.join()
    requests = sum(r["requests"] for r in runs)
    return {"reloads": answers, "load_runs": len(runs), "requests": requests,
            "requests_per_s": round(sum(r["requests_per_s"] for r in runs) / max(1, len(runs)), 1),
            "p99_ms_worst_run": max((r["p99_ms"] for r in runs), default=float("nan")),
            "errors": sum(r["errors"] for r in runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--duration", type=int, default=30, help="Seconds per closed-loop run.")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reloads", type=int, default=2, help="POST /admin/reload calls during a loaded run (0: none).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    ap.add_argument("--reuse-bundle", action="store_true", help="Reuse OUT/bundle-* when it matches the sizes.")
    ap.add_argument("--only", default="faiss,milvus,local", help="Which of faiss, milvus, local to run.")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tool = args.tool if args.tool != "auto" else ("wrk" if shutil.which("wrk") else "httpx")
    bundle = args.out / f"bundle-{args.items}x{args.dim}"
    t = time.perf_counter()
    if not (args.reuse_bundle and _reusable(bundle, args.users, args.items, args.dim)):
        synthetic_bundle(bundle, args.users, args.items, args.dim, 20, args.seed)
    report: dict[str, Any] = {"items": args.items, "users": args.users, "dim": args.dim, "workers": args.workers,
                              "connections": args.connections, "duration_s": args.duration, "tool": tool,
                              "cpus": os.cpu_count(), "bundle_seconds": round(time.perf_counter() - t, 1),
                              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "runs": []}
    store = args.out / "store.db"
    shutil.rmtree(store, ignore_errors=True)
    plan = []
    if "faiss" in args.only:
        plan.append(("faiss-hnsw", ["--index", "hnsw"]))
    if "milvus" in args.only:
        plan += [("milvus", ["--store", f"milvus:{store}"]), ("milvus-reuse", ["--store", f"milvus:{store}"])]
    if "local" in args.only:  # the store holds the added items, searches stay in FAISS
        plan.append(("milvus-local-search", ["--store", f"milvus:{store}", "--store-search", "local"]))
    for name, extra in plan:
        r = measure(name, bundle, extra, args, tool)
        report["runs"].append(r)
        print(f"{name}: {r['requests_per_s']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
              f"{r['errors']} errors, start {r['start_seconds']}s, peak RSS {r['peak_rss_mib']} MiB, "
              f"load {r['loadavg_before'][0]:.1f}->{r['loadavg_after'][0]:.1f}"
              + (f"; reload under load: {r['reload']}" if "reload" in r else ""), flush=True)
    (args.out / "serve_store.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'serve_store.json'}")


if __name__ == "__main__":
    main()
