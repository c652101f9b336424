"""Bounded load test of ``recembed serve`` on loopback: a synthetic 100k-item, 64-d embedding bundle, user
recommendations over a fixed number of connections for a fixed time, exact vs HNSW, closed loop and fixed rate.

    python benchmarks/serve_load.py [--items 100000] [--users 20000] [--dim 64] [--duration 60]
                                    [--connections 32] [--workers 2] [--kinds exact,hnsw] [--out DIR]
                                    [--modes closed,rate] [--rate 500] [--reuse-bundle]

1. builds the bundle (``write_bundle`` of an MF/BPR-style model whose user and item vectors are clustered:
   256 topics, each vector its topic's centre plus noise, like trained embeddings; 20 known items per user,
   excluded from the answers) with a stored HNSW index; reports HNSW recall@10 against exact search on 2000
   user queries (with and without the seen-item filter);
2. for each index kind, starts ``recembed serve BUNDLE --index KIND --workers W`` on 127.0.0.1, warms it up,
   and drives ``GET /v1/users/{id}/recommendations?k=10`` for random users with Debian's ``wrk`` (``--latency``)
   when installed (``apt-get install -y wrk``), else with an asyncio + httpx generator (closed loop only);
   reports requests/s, p50 / p99 latency, errors (non-2xx + socket errors), the server's and the load
   generator's CPU time per request and the load average, then stops the server. Two modes:

   * ``closed``: every connection sends its next request as soon as the last one is answered: the
     throughput at saturation. Its latency is that of a saturated server: by Little's law
     p50 ~ connections / throughput; it says nothing about latency at a lower, given rate.
   * ``rate`` (``--rate R``): open loop at a fixed offered rate. A wrk Lua script (``delay()``) hands out
     send slots ``1/R`` apart to the connections (one wrk thread, so one schedule for all of them); a
     connection that frees up takes the next slot and waits for it, or sends at once when the slot has
     passed (then the schedule catches up, like wrk2). wrk's own latency runs from the actual send: a
     server that stalls holds all connections, the sends of the slots that pass meanwhile are delayed, and
     that wait is missing (coordinated omission). The script therefore also measures each request from its
     *intended* send time (its slot; requests are matched to responses by the user id the body echoes,
     unique among requests in flight) with LuaJIT's clock: ``p50_ms`` / ``p99_ms`` of this mode are those,
     corrected for coordinated omission; ``from_send`` holds wrk's uncorrected figures. Achieved rate =
     responses / duration.

Every request goes to 127.0.0.1 only; the load is bounded by --duration and --connections.
Results go to OUT/serve_load.json (default benchmarks/out/).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def synthetic_bundle(out: Path, num_users: int, num_items: int, dim: int, seen_per_user: int, seed: int) -> Path:
    import scipy.sparse as sp

    from recembed.data.vocab import Vocabulary
    from recembed.models.cf.bpr import BPR
    from recembed.serve.bundle import write_bundle

    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((256, dim)).astype(np.float32)
    item_topic = rng.integers(0, 256, num_items)
    items = topics[item_topic] + 0.5 * rng.standard_normal((num_items, dim)).astype(np.float32)
    items *= rng.uniform(0.5, 1.5, (num_items, 1)).astype(np.float32)  # popularity-like norm spread
    user_topic = rng.integers(0, 256, num_users)
    users = ((topics[user_topic] + 0.5 * rng.standard_normal((num_users, dim))) / np.sqrt(dim)).astype(np.float32)
    seen_items = rng.integers(0, num_items, (num_users, seen_per_user))
    rows = np.repeat(np.arange(num_users), seen_per_user)
    seen = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, seen_items.ravel())),
                         shape=(num_users, num_items))
    seen.sum_duplicates()
    seen.data[:] = 1.0
    model = BPR(embedding_dim=dim)
    model.num_users_, model.num_items_ = num_users, num_items
    model.user_factors_, model.item_factors_, model.user_items_ = users, items.astype(np.float32), seen
    return write_bundle(out, model=model, users=Vocabulary([f"u{i}" for i in range(num_users)], name="user"),
                        items=Vocabulary([f"i{i}" for i in range(num_items)], name="item"),
                        history_indptr=seen.indptr.astype(np.int64), history_items=seen.indices.astype(np.int64),
                        titles=[f"item {i} (topic {t})" for i, t in enumerate(item_topic)],
                        metrics={"note": "synthetic load-test bundle"}, index="hnsw", overwrite=True)


def recall_report(bundle_dir: Path, queries: int, seed: int) -> dict:
    from recembed.serve.bundle import load_bundle
    from recembed.serve.service import RecService, ServiceOptions

    bundle = load_bundle(bundle_dir)
    hnsw = RecService(bundle).rec_index
    exact = RecService(bundle, ServiceOptions(index="exact")).rec_index
    rng = np.random.default_rng(seed)
    users = rng.choice(len(bundle.users), size=queries, replace=False)
    q = bundle.user_vectors[users]
    out = {"index_params": hnsw.params()}
    for name, exclude in (("recall@10", None), ("recall@10_seen_excluded",
                                                 [np.unique(bundle.history(int(u))) for u in users])):
        truth, _ = exact.search(q, 10, exclude=exclude)
        found, _ = hnsw.search(q, 10, exclude=exclude)
        out[name] = round(float(np.mean([len(np.intersect1d(t, f)) / 10 for t, f in zip(truth, found)])), 4)
    from recembed.serve.index import measure_index

    speed = measure_index(hnsw, q[:500], 10, reference=exact)
    out.update({"qps_single_in_process": speed["qps_single"], "exact_qps_single_in_process": speed["exact_qps_single"]})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle_dir: Path, kind: str, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "recembed.cli", "serve", str(bundle_dir), "--port", str(port), "--index", kind,
           "--workers", str(workers), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                # every worker must be up: ask until the port answers quickly a few times in a row
                time.sleep(3 if workers > 1 else 0)
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_WRK_LUA = """
math.randomseed(%(seed)d)
request = function()
  return wrk.format("GET", "/v1/users/u" .. math.random(0, %(max_user)d) .. "/recommendations?k=10")
end
"""

# Open loop at a fixed rate. Globals are read back in done() through thread:get.
_WRK_RATE_LUA = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } serve_load_timespec;
int clock_gettime(int clk_id, serve_load_timespec *tp);
]]
local ts = ffi.new("serve_load_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) * 1e-6
end

math.randomseed(%(seed)d)
local interval = %(interval_ms).9f  -- ms between sends (one wrk thread: the whole rate)
local next_slot = nil
local slots, first, last = {}, 1, 0  -- slots claimed by delay(), oldest first
local pending = {}                   -- user index -> {intended, sent}
lat_intended, lat_sent, responses, errors, unmatched, sends = {}, {}, 0, 0, 0, 0

function delay()
  local now = now_ms()
  if next_slot == nil then next_slot = now end
  local slot = next_slot
  next_slot = next_slot + interval
  last = last + 1
  slots[last] = slot
  local wait = slot - now
  if wait <= 0 then return 0 end
  return math.ceil(wait)  -- wrk's timers count whole ms: never early, at most 1 ms late
end

function request()
  local now = now_ms()
  local intended = now
  if first <= last then
    intended = slots[first]
    slots[first] = nil
    first = first + 1
  end
  local u
  repeat u = math.random(0, %(max_user)d) until pending[u] == nil
  pending[u] = {intended, now}
  sends = sends + 1
  return wrk.format("GET", "/v1/users/u" .. u .. "/recommendations?k=10")
end

function response(status, headers, body)
  local now = now_ms()
  if status ~= 200 then errors = errors + 1 end
  local u = tonumber(string.match(body or "", "u(%%d+)"))
  local p = u and pending[u]
  if p == nil then
    unmatched = unmatched + 1
    return
  end
  pending[u] = nil
  responses = responses + 1
  lat_intended[responses] = now - p[1]
  lat_sent[responses] = now - p[2]
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local f = io.open("%(out)s", "w")
  for _, t in ipairs(threads) do
    local li, ls = t:get("lat_intended"), t:get("lat_sent")
    local a, b = {}, {}
    for i = 1, #li do
      a[i] = string.format("%%.3f", li[i])
      b[i] = string.format("%%.3f", ls[i])
    end
    f:write(string.format('{"responses": %%d, "errors": %%d, "unmatched": %%d, "sends": %%d, ',
                          t:get("responses"), t:get("errors"), t:get("unmatched"), t:get("sends")))
    f:write('"intended_ms": [' .. table.concat(a, ",") .. '], "sent_ms": [' .. table.concat(b, ",") .. ']}\\n')
  end
  f:close()
end
"""


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    return round(float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)], 3)


def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (uvicorn's workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2:].split()
        stats[int(entry)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / tick)
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _) in stats.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(stats[p][1] for p in tree if p in stats)


def _pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if len(values) else float("nan")


def load_wrk(url: str, num_users: int, duration: int, connections: int, threads: int, seed: int,
             rate: float | None = None) -> dict:
    """wrk against ``url``: closed loop (``rate`` None) or open loop at ``rate`` requests/s (one wrk thread)."""
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    script, latencies = tmp / "users.lua", tmp / "latencies.jsonl"
    if rate:
        threads = 1  # one schedule for all connections
        script.write_text(_WRK_RATE_LUA % {"seed": seed, "max_user": num_users - 1, "interval_ms": 1e3 / rate,
                                           "out": str(latencies)})
    else:
        script.write_text(_WRK_LUA % {"seed": seed, "max_user": num_users - 1})
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s", "-s",
           str(script), url]
    before = os.times()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    after = os.times()
    wrk_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    text = res.stdout + res.stderr
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, flags=re.M))
    total = re.search(r"(\d+) requests in", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    requests = int(total.group(1)) if total else 0
    out: dict[str, Any] = {
        "tool": "wrk", "mode": "rate" if rate else "closed",
        "command": " ".join(cmd[:-2] + ["users.lua", url]),
        "requests": requests, "requests_per_s": float(rps.group(1)) if rps else 0.0,
        "p50_ms": _ms(lat.get("50", "")), "p90_ms": _ms(lat.get("90", "")), "p99_ms": _ms(lat.get("99", "")),
        "errors": errors, "load_generator_cpu_s": round(wrk_cpu, 2),
        "load_generator_cpu_ms_per_request": round(1e3 * wrk_cpu / max(1, requests), 3), "raw": text}
    if rate:
        rows = [json.loads(line) for line in latencies.read_text().splitlines()] if latencies.exists() else []
        intended = np.asarray([v for r in rows for v in r["intended_ms"]])
        sent = np.asarray([v for r in rows for v in r["sent_ms"]])
        out["from_send"] = {k: out[k] for k in ("p50_ms", "p90_ms", "p99_ms")}
        out["from_send"].update({"p99.9_ms": _pct(sent, 99.9), "max_ms": _pct(sent, 100)})
        out.update({"target_rate": rate, "achieved_rate": round(len(intended) / duration, 1),
                    "p50_ms": _pct(intended, 50), "p90_ms": _pct(intended, 90), "p99_ms": _pct(intended, 99),
                    "p99.9_ms": _pct(intended, 99.9), "max_ms": _pct(intended, 100),
                    "lua": {k: sum(r[k] for r in rows) for k in ("responses", "errors", "unmatched", "sends")}})
        lag = intended - sent if len(sent) == len(intended) else np.zeros(0)  # the generator's own lateness
        out["send_lag"] = {"p50_ms": _pct(lag, 50), "p99_ms": _pct(lag, 99), "max_ms": _pct(lag, 100)}
        out["errors"] = max(errors, out["lua"]["errors"])
    shutil.rmtree(tmp, ignore_errors=True)
    return out


async def _load_httpx(url: str, num_users: int, duration: int, connections: int, seed: int) -> dict:
    import httpx

    rng = np.random.default_rng(seed)
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=5) as client:
        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                u = int(rng.integers(num_users))
                t = time.perf_counter()
                try:
                    r = await client.get(f"/v1/users/u{u}/recommendations", params={"k": 10})
                    if r.status_code != 200:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1e3
    return {"tool": "httpx (asyncio)", "requests": len(lat), "requests_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p90_ms": round(float(np.percentile(lat, 90)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "errors": errors}


def _reusable(bundle_dir: Path, users: int, items: int, dim: int) -> bool:
    from recembed.serve.bundle import BundleError, verify_bundle

    try:
        m = verify_bundle(bundle_dir)
    except BundleError:
        return False
    return (m["model"]["num_users"], m["model"]["num_items"], m["serving"]["embedding_dim"]) == (users, items, dim) \
        and (m.get("index") or {}).get("kind") == "hnsw"


def _row(kind: str, r: dict) -> str:
    rate = f"{r['target_rate']:.0f} -> {r['achieved_rate']:.0f}" if r["mode"] == "rate" else "closed loop"
    send = r.get("from_send", {})
    extra = f" | {send['p50_ms']:.2f} / {send['p99_ms']:.2f}" if send else " | -"
    return (f"| {kind} | {rate} | {r['requests_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}{extra} | "
            f"{r['errors']} | {r.get('server_cpu_ms_per_request', float('nan')):.2f} | "
            f"{r.get('load_generator_cpu_ms_per_request', float('nan')):.3f} | "
            f"{r['loadavg_before'][0]:.1f} / {r['loadavg_after'][0]:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--duration", type=int, default=60, help="Seconds per index kind and mode.")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk threads of the closed loop (rate mode: 1).")
    ap.add_argument("--kinds", default="exact,hnsw")
    ap.add_argument("--modes", default="closed,rate", help="closed (saturation) and/or rate (fixed --rate).")
    ap.add_argument("--rate", type=float, default=500.0, help="Offered requests/s of the rate mode.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    ap.add_argument("--reuse-bundle", action="store_true",
                    help="Keep an existing bundle of the same sizes in OUT (it is verified) instead of rebuilding.")
    ap.add_argument("--skip-recall", action="store_true", help="No recall / in-process speed report.")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - {"closed", "rate"}:
        ap.error(f"--modes: closed and/or rate, got {args.modes!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    bundle_dir = args.out / f"serve_load_bundle_{args.items // 1000}k_{args.dim}d"
    t = time.perf_counter()
    reused = args.reuse_bundle and _reusable(bundle_dir, args.users, args.items, args.dim)
    if not reused:
        synthetic_bundle(bundle_dir, args.users, args.items, args.dim, 20, args.seed)
    build = time.perf_counter() - t
    print(f"bundle {bundle_dir} ({args.users} users, {args.items} items x {args.dim}, stored HNSW) "
          f"{'reused' if reused else f'built in {build:.1f}s'}", flush=True)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
        "bundle": {"users": args.users, "items": args.items, "dim": args.dim,
                   "build_seconds": None if reused else round(build, 1)},
        "settings": {"duration_s": args.duration, "connections": args.connections, "workers": args.workers,
                     "threads_per_worker": 1, "modes": modes, "rate": args.rate,
                     "endpoint": "GET /v1/users/{id}/recommendations?k=10 (exclude_seen, 20 seen items)"}}
    if not args.skip_recall:
        results["hnsw_recall"] = recall_report(bundle_dir, 2000, args.seed)
        print("HNSW vs exact:", results["hnsw_recall"], flush=True)
    use_wrk = args.tool == "wrk" or (args.tool == "auto" and shutil.which("wrk"))
    if "rate" in modes and not use_wrk:
        ap.error("the rate mode needs wrk (apt-get install -y wrk)")
    rows = []
    for kind in args.kinds.split(","):
        proc, url = start_server(bundle_dir, kind, args.workers, args.out / f"serve_load_{kind}.log")
        results[kind] = {}
        try:
            import httpx

            for u in range(200):  # warm-up
                httpx.get(f"{url}/v1/users/u{u}/recommendations", params={"k": 10})
            for mode in modes:
                load_before, cpu_before = os.getloadavg(), _tree_cpu_seconds(proc.pid)
                if use_wrk:
                    res = load_wrk(url, args.users, args.duration, args.connections, args.wrk_threads, args.seed,
                                   rate=args.rate if mode == "rate" else None)
                else:
                    res = asyncio.run(_load_httpx(url, args.users, args.duration, args.connections, args.seed))
                cpu = _tree_cpu_seconds(proc.pid) - cpu_before
                res.update({"loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                            "server_cpu_s": round(cpu, 2),
                            "server_cpu_ms_per_request": round(1e3 * cpu / max(1, res["requests"]), 3)})
                results[kind][mode] = res
                rows.append(_row(kind, res))
                shown = {k: v for k, v in res.items() if k != "raw"}
                print(f"{kind} / {mode}: {shown}", flush=True)
        finally:
            stop_server(proc)
    results["machine"]["loadavg_end"] = os.getloadavg()
    (args.out / "serve_load.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{args.duration} s per row, {args.connections} connections, --workers {args.workers} --threads 1; "
          "rate rows: p50 / p99 from the intended send time (corrected for coordinated omission), then from the "
          "actual send (wrk's own)\n")
    print("| index | offered -> achieved req/s | requests/s (wrk) | p50 ms | p99 ms | from send: p50 / p99 ms | "
          "errors | server CPU ms/req | wrk CPU ms/req | load avg before / after |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if "hnsw_recall" in results:
        print(f"\nHNSW recall@10 vs exact: {results['hnsw_recall']['recall@10']} "
              f"(seen items excluded: {results['hnsw_recall']['recall@10_seen_excluded']})")
    print(f"-> {args.out}/serve_load.json; load average start {results['machine']['loadavg_start']}, "
          f"end {results['machine']['loadavg_end']}")


if __name__ == "__main__":
    main()
