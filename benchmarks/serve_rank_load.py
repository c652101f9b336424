"""Load test of retrieve-then-rank serving on ml-100k: ``recembed serve`` of a bundle with a ranker, driven with wrk
at a fixed rate on loopback; latency per stage (retrieve, rank) from each answer's ``Server-Timing`` header and
end to end (corrected for coordinated omission, as ``benchmarks/serve_load.py``).

    python benchmarks/serve_rank_load.py [--data-root ../shared/data] [--retriever ease] [--ranker deepfm]
                                         [--candidates 200] [--rate 200] [--duration 60] [--workers 2]
                                         [--connections 16] [--modes rate] [--out benchmarks/out]

1. fits the retriever and the ranker on ml-100k's ``random-80-10-10`` split when their run directories are missing
   (``recembed fit MODEL --data ml-100k --data-root ROOT --split ROOT/ml-100k/splits/random-80-10-10 --threads 1``),
   and bundles them twice: the retriever alone, and the retriever with ``--ranker`` (``--candidates``);
2. measures both stages in process (one request at a time through ``RecService.recommend_user_staged``, every user
   twice);
3. for each bundle starts ``recembed serve BUNDLE --workers W --threads 1`` on 127.0.0.1 and drives
   ``GET /v1/users/{id}/recommendations?k=10`` for random users with Debian's ``wrk`` (``apt-get install -y wrk``):
   ``rate`` mode (open loop at ``--rate`` requests/s; send slots ``1/rate`` apart handed out by a Lua ``delay()``,
   each request timed from its intended send time and from its actual send; responses matched to requests by the
   user id they echo) and optionally ``closed`` (saturation). The Lua script also reads ``Server-Timing``
   (``retrieve;dur=MS, rank;dur=MS``: the service's own time in each stage) from every answer.

Every request goes to 127.0.0.1 only; the load is bounded by --duration and --connections. Results go to
OUT/serve_rank_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import _pct, _tree_cpu_seconds, free_port, stop_server  # noqa: E402

_LUA = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } rank_load_timespec;
int clock_gettime(int clk_id, rank_load_timespec *tp);
]]
local ts = ffi.new("rank_load_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) * 1e-6
end

math.randomseed(%(seed)d)
local users = {%(users)s}
local rate_mode = %(rate_mode)s
local interval = %(interval_ms).9f
local next_slot = nil
local slots, first, last = {}, 1, 0
local pending = {}
lat_intended, lat_sent, st_retrieve, st_rank = {}, {}, {}, {}
responses, errors, unmatched, sends = 0, 0, 0, 0

function delay()
  if not rate_mode then return 0 end
  local now = now_ms()
  if next_slot == nil then next_slot = now end
  local slot = next_slot
  next_slot = next_slot + interval
  last = last + 1
  slots[last] = slot
  local wait = slot - now
  if wait <= 0 then return 0 end
  return math.ceil(wait)
end

function request()
  local now = now_ms()
  local intended = now
  if rate_mode and first <= last then
    intended = slots[first]
    slots[first] = nil
    first = first + 1
  end
  local u
  repeat u = users[math.random(1, #users)] until pending[u] == nil
  pending[u] = {intended, now}
  sends = sends + 1
  return wrk.format("GET", "/v1/users/" .. u .. "/recommendations?k=10%(extra)s")
end

function response(status, headers, body)
  local now = now_ms()
  if status ~= 200 then errors = errors + 1 end
  local u = string.match(body or "", '"user_id":"([^"]*)"')
  local p = u and pending[u]
  if p == nil then
    unmatched = unmatched + 1
    return
  end
  pending[u] = nil
  responses = responses + 1
  lat_intended[responses] = now - p[1]
  lat_sent[responses] = now - p[2]
  local timing = headers["server-timing"] or headers["Server-Timing"] or ""
  st_retrieve[responses] = tonumber(string.match(timing, "retrieve;dur=([%%d.]+)")) or -1
  st_rank[responses] = tonumber(string.match(timing, "rank;dur=([%%d.]+)")) or -1
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

local function list(t)
  local a = {}
  for i = 1, #t do a[i] = string.format("%%.3f", t[i]) end
  return "[" .. table.concat(a, ",") .. "]"
end

function done(summary, latency, requests)
  local f = io.open("%(out)s", "w")
  for _, t in ipairs(threads) do
    f:write(string.format('{"responses": %%d, "errors": %%d, "unmatched": %%d, "sends": %%d, ',
                          t:get("responses"), t:get("errors"), t:get("unmatched"), t:get("sends")))
    f:write('"intended_ms": ' .. list(t:get("lat_intended")) .. ', "sent_ms": ' .. list(t:get("lat_sent")) ..
            ', "retrieve_ms": ' .. list(t:get("st_retrieve")) .. ', "rank_ms": ' .. list(t:get("st_rank")) .. '}\\n')
  end
  f:close()
end
"""


def _stats(values: np.ndarray) -> dict[str, float]:
    values = values[values >= 0]
    return {"p50_ms": _pct(values, 50), "p90_ms": _pct(values, 90), "p99_ms": _pct(values, 99),
            "p99.9_ms": _pct(values, 99.9), "max_ms": _pct(values, 100), "n": int(len(values))}


def run_cli(args: list[str], log: Path) -> None:
    cmd = [sys.executable, "-m", "recembed.cli", *args]
    print("$ recembed " + " ".join(args), flush=True)
    with open(log, "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)


def start_server(bundle: Path, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "recembed.cli", "serve", str(bundle), "--port", str(port), "--workers", str(workers),
           "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                time.sleep(3 if workers > 1 else 0)  # every worker up
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("server did not start")


def in_process(bundle: Path) -> dict[str, Any]:
    from recembed.serve.bundle import load_bundle
    from recembed.serve.service import RecService

    svc = RecService(load_bundle(bundle))
    for u in svc.user_ids[:50]:  # warm-up
        svc.recommend_user_staged(u, 10)
    per: dict[str, list[float]] = {}
    t = time.perf_counter()
    n = 0
    for _ in range(2):
        for u in svc.user_ids:
            _, info = svc.recommend_user_staged(u, 10)
            n += 1
            for stage, sec in info["seconds"].items():
                per.setdefault(stage, []).append(1e3 * sec)
    total = time.perf_counter() - t
    return {"requests": n, "ms_per_request": round(1e3 * total / n, 3),
            **{stage: _stats(np.asarray(v)) for stage, v in per.items()}}


def drive(url: str, users: list[str], duration: int, connections: int, seed: int, rate: float | None,
          extra_query: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="rank-load-"))
    script, out = tmp / "rank.lua", tmp / "latencies.jsonl"
    script.write_text(_LUA % {"seed": seed, "users": ",".join(json.dumps(u) for u in users),
                              "rate_mode": "true" if rate else "false", "interval_ms": 1e3 / rate if rate else 0.0,
                              "out": str(out), "extra": extra_query})
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s", "-s", str(script), url]
    before = os.times()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    after = os.times()
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    shutil.rmtree(tmp, ignore_errors=True)
    cat = {k: np.asarray([v for r in rows for v in r[k]]) for k in ("intended_ms", "sent_ms", "retrieve_ms", "rank_ms")}
    wrk_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    lua = {k: sum(r[k] for r in rows) for k in ("responses", "errors", "unmatched", "sends")}
    result = {"mode": "rate" if rate else "closed", "target_rate": rate,
              "achieved_rate": round(len(cat["intended_ms"]) / duration, 1), "connections": connections,
              "command": " ".join(cmd[:-2] + ["rank.lua", url]), "lua": lua,
              "end_to_end" if rate else "end_to_end_closed_loop": _stats(cat["intended_ms"]),
              "from_send": _stats(cat["sent_ms"]),
              "stage_retrieve": _stats(cat["retrieve_ms"]), "stage_rank": _stats(cat["rank_ms"]),
              "load_generator_cpu_ms_per_request": round(1e3 * wrk_cpu / max(1, lua["responses"]), 3),
              "wrk_output": res.stdout + res.stderr}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--retriever", default="ease")
    ap.add_argument("--ranker", default="deepfm")
    ap.add_argument("--runs", type=Path, default=None, help="Where the run directories live (default OUT/runs).")
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--modes", default="rate", help="rate and/or closed (saturation; it loads the shared machine).")
    ap.add_argument("--bundles", default="alone,ranked", help="alone (retriever only) and/or ranked.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        ap.error("needs Debian's wrk (apt-get install -y wrk)")
    args.out.mkdir(parents=True, exist_ok=True)
    runs = args.runs or args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    log = args.out / "serve_rank_load.log"
    split = str(Path(args.data_root) / "ml-100k" / "splits" / "random-80-10-10")
    run_dirs = {}
    for model in (args.retriever, args.ranker):
        run_dirs[model] = runs / f"rank-load-{model}-ml100k"
        if not (run_dirs[model] / "metrics.json").exists():
            run_cli(["fit", model, "--data", "ml-100k", "--data-root", args.data_root, "--split", split, "--threads",
                     "1", "--no-progress", "--out", str(run_dirs[model])], log)
    bundles = {"alone": args.out / f"rank_load_bundle_{args.retriever}",
               "ranked": args.out / f"rank_load_bundle_{args.retriever}_{args.ranker}_{args.candidates}"}
    run_cli(["bundle", str(run_dirs[args.retriever]), "--out", str(bundles["alone"]), "--overwrite", "--no-progress"],
            log)
    run_cli(["bundle", str(run_dirs[args.retriever]), "--ranker", str(run_dirs[args.ranker]), "--candidates",
             str(args.candidates), "--data-root", args.data_root, "--out", str(bundles["ranked"]), "--overwrite",
             "--no-progress"], log)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
        "settings": {"retriever": args.retriever, "ranker": args.ranker, "candidates": args.candidates,
                     "rate": args.rate, "duration_s": args.duration, "connections": args.connections,
                     "workers": args.workers, "threads_per_worker": 1,
                     "endpoint": "GET /v1/users/{id}/recommendations?k=10 (exclude_seen)", "split": split},
        "runs": {m: str(d) for m, d in run_dirs.items()}}
    ranker_metrics = json.loads((run_dirs[args.ranker] / "metrics.json").read_text())["test"]
    results["ranker_test"] = {k: ranker_metrics[k] for k in ("auc", "logloss", "gauc")}
    from recembed.serve.bundle import load_bundle

    users = load_bundle(bundles["ranked"]).users.to_list()
    for name in [b for b in args.bundles.split(",") if b]:
        results[name] = {"bundle": str(bundles[name]), "in_process": in_process(bundles[name])}
        print(f"{name} in process: {results[name]['in_process']}", flush=True)
        proc, url = start_server(bundles[name], args.workers, args.out / f"serve_rank_load_{name}.log")
        try:
            import httpx

            for u in users[:200]:  # warm-up
                httpx.get(f"{url}/v1/users/{u}/recommendations", params={"k": 10})
            for mode in [m for m in args.modes.split(",") if m]:
                load_before, cpu_before = os.getloadavg(), _tree_cpu_seconds(proc.pid)
                res = drive(url, users, args.duration, args.connections, args.seed,
                            args.rate if mode == "rate" else None, "")
                cpu = _tree_cpu_seconds(proc.pid) - cpu_before
                res.update({"loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                            "server_cpu_ms_per_request": round(1e3 * cpu / max(1, res["lua"]["responses"]), 3)})
                results[name][mode] = res
                print(f"{name} / {mode}: " + json.dumps({k: v for k, v in res.items() if k != "wrk_output"}),
                      flush=True)
        finally:
            stop_server(proc)
    results["machine"]["loadavg_end"] = os.getloadavg()
    (args.out / "serve_rank_load.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n| bundle | mode | offered -> achieved req/s | end to end p50 / p99 ms | retrieve p50 / p99 ms | "
          "rank p50 / p99 ms | errors | server CPU ms/req | load avg before / after |\n|---|---|---|---|---|---|---|---|---|")
    for name in [b for b in args.bundles.split(",") if b]:
        for mode in [m for m in args.modes.split(",") if m]:
            r = results[name][mode]
            e2e = r.get("end_to_end") or r["end_to_end_closed_loop"]
            rate = f"{r['target_rate']:.0f} -> {r['achieved_rate']:.0f}" if r["target_rate"] else \
                f"closed: {r['achieved_rate']:.0f}"
            rank = r["stage_rank"]
            print(f"| {name} | {mode} | {rate} | {e2e['p50_ms']:.2f} / {e2e['p99_ms']:.2f} | "
                  f"{r['stage_retrieve']['p50_ms']:.2f} / {r['stage_retrieve']['p99_ms']:.2f} | "
                  + (f"{rank['p50_ms']:.2f} / {rank['p99_ms']:.2f}" if rank["n"] else "-")
                  + f" | {r['lua']['errors']} | {r['server_cpu_ms_per_request']:.2f} | "
                  f"{r['loadavg_before'][0]:.1f} / {r['loadavg_after'][0]:.1f} |")
    print(f"-> {args.out}/serve_rank_load.json")


if __name__ == "__main__":
    main()
