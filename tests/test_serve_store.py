"""Serving backed by Milvus (``recembed serve --store milvus:...``, milvus-lite embedded) and hot reload, against
real ``recembed serve`` processes: added items survive ``kill -9``, are shared by two workers, can be deleted and
capped; ``POST /admin/reload`` swaps bundles under a request loop with no failed request."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import httpx
import pytest
from test_rankers import run_main
from test_serve_support import API_KEY, Server, bundle_of, fitted_run

pytest.importorskip("pymilvus", reason="the store extra (pymilvus) is not installed: pip install 'recembed[store]'")
pytest.importorskip("milvus_lite", reason="the store extra (milvus-lite) is not installed: pip install "
                                          "'recembed[store]'")

KEY = {"X-API-Key": API_KEY}
WORDS = ("retro controller", "cast-iron skillet", "raised bed", "competitive headset")


def new_item(j: int) -> dict:
    return {"item_id": f"new-{j}", "title": f"Premium {WORDS[j % len(WORDS)]} number {j}"}


def test_bad_store_values_exit_2_naming_the_flag(tmp_path) -> None:
    bundle = str(bundle_of("alpharec"))
    for value in ("redis:x", "milvus:", f"milvus:{tmp_path}/items.txt", f"milvus:{tmp_path}/nowhere/items.db",
                  "milvus:ftp://host/x"):
        code, text = run_main(["serve", bundle, "--store", value])
        assert code == 2 and "--store" in text and "Traceback" not in text, (value, text)
    code, text = run_main(["export", bundle, "--to", "milvus:"])
    assert code == 2 and "--store" in text, text
    code, text = run_main(["export", bundle])
    assert code == 2 and "--out" in text and "--to" in text, text
    code, text = run_main(["serve", str(fitted_run("ease")), "--store", f"milvus:{tmp_path}/e.db"])
    assert code == 2 and "--store" in text and "own scoring" in text, text


def test_export_to_milvus_bulk_loads_and_serve_reuses_it(tmp_path) -> None:
    store = f"milvus:{tmp_path}/items.db"
    code, text = run_main(["export", str(bundle_of("alpharec")), "--to", store])
    assert code == 0 and "loaded 200 items" in text, text
    code, text = run_main(["export", str(bundle_of("alpharec")), "--to", store])
    assert code == 0 and "reused" in text, text


def test_100_posts_survive_kill_9_and_restart(tmp_path) -> None:
    bundle, store = bundle_of("alpharec"), f"milvus:{tmp_path}/items.db"
    srv = Server(bundle, "--store", store)
    with srv as url, httpx.Client(base_url=url, timeout=30) as client:
        for j in range(100):
            r = client.post("/v1/items", json=new_item(j), headers=KEY)
            assert r.status_code == 201 and r.json()["stored"] is True, r.text
        srv.proc.send_signal(signal.SIGKILL)  # no shutdown, no flush: what the 201s promised must be on disk
        srv.proc.wait(timeout=10)
    restarted = Server(bundle, "--store", store)
    with restarted as url, httpx.Client(base_url=url, timeout=30) as client:
        assert "(reused)" in restarted.log.read_text()
        health = client.get("/health").json()
        assert health["added_items"] == 100 and health["index"] == "milvus" and health["items"] == 300
        found = client.get("/v1/items", params={"q": "number", "limit": 1000}).json()["items"]
        listed = {it["item_id"] for it in found}
        assert listed == {f"new-{j}" for j in range(100)}
        near_added = 0
        for j in range(100):
            r = client.get(f"/v1/items/new-{j}/similar", params={"k": 5})
            assert r.status_code == 200, r.text
            near_added += any(it["item_id"].startswith("new-") for it in r.json()["items"])
        assert near_added >= 90  # found by the store's search: an added item's neighbours are mostly added ones
        assert client.post("/v1/items", json=new_item(7), headers=KEY).status_code == 409  # still there


def test_delete_and_the_cap_on_added_items(tmp_path) -> None:
    with (Server(bundle_of("alpharec"), "--store", f"milvus:{tmp_path}/items.db", "--max-added-items", "3") as url,
          httpx.Client(base_url=url, timeout=30) as client):
        for j in range(3):
            assert client.post("/v1/items", json=new_item(j), headers=KEY).status_code == 201
        r = client.post("/v1/items", json=new_item(3), headers=KEY)
        assert r.status_code == 409 and "--max-added-items 3" in r.json()["detail"], r.text
        assert client.delete("/v1/items/new-0").status_code == 401
        r = client.delete("/v1/items/i1", headers=KEY)
        assert r.status_code == 409 and "immutable" in r.json()["detail"], r.text
        r = client.delete("/v1/items/nope", headers=KEY)
        assert r.status_code == 404 and r.json()["ids"] == ["nope"], r.text
        r = client.delete("/v1/items/new-0", headers=KEY)
        assert r.status_code == 200 and r.json() == {"item_id": "new-0", "deleted": True, "added_items": 2}
        assert client.get("/v1/items/new-0/similar").status_code == 404
        for j in (1, 2):
            got = {it["item_id"] for it in client.get(f"/v1/items/new-{j}/similar", params={"k": 50}).json()["items"]}
            assert "new-0" not in got
        assert client.post("/v1/items", json=new_item(3), headers=KEY).status_code == 201  # room again
        assert client.get("/health").json()["added_items"] == 3


def test_two_workers_see_items_added_through_either(tmp_path) -> None:
    def fresh(url: str, method: str, path: str, **kw) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30) as c:  # a new connection: the kernel may pick either worker
            return c.request(method, path, **kw)

    with Server(bundle_of("alpharec"), "--store", f"milvus:{tmp_path}/items.db", "--workers", "2") as url:
        deadline, pids = time.monotonic() + 60, set()
        while len(pids) < 2 and time.monotonic() < deadline:  # both workers up
            pids.add(fresh(url, "GET", "/health").json()["pid"])
        assert len(pids) == 2
        for j in range(10):
            r = fresh(url, "POST", "/v1/items", json=new_item(j), headers=KEY)
            assert r.status_code == 201, r.text
        seen_by: dict[int, set[str]] = {}
        for _ in range(40):
            for j in range(10):
                with httpx.Client(base_url=url, timeout=30) as c:
                    pid = c.get("/health").json()["pid"]
                    r = c.get(f"/v1/items/new-{j}/similar", params={"k": 3})
                    assert r.status_code == 200, r.text
                    seen_by.setdefault(pid, set()).add(f"new-{j}")
            if len(seen_by) == 2 and all(len(v) == 10 for v in seen_by.values()):
                break
        assert len(seen_by) == 2  # both workers answered, each knew every added item
        assert fresh(url, "DELETE", "/v1/items/new-0", headers=KEY).status_code == 200
        time.sleep(1.5)  # the other worker refreshes within its sync interval (1 s)
        for _ in range(10):
            assert fresh(url, "GET", "/v1/items/new-0/similar").status_code == 404
        copy = tmp_path / "bundle-copy"
        shutil.copytree(bundle_of("alpharec"), copy)
        r = fresh(url, "POST", "/admin/reload", json={"bundle": str(copy)}, headers=KEY)
        assert r.status_code == 200 and r.json()["workers_signalled"] is True, r.text
        deadline, reloaded = time.monotonic() + 60, {}
        while len(reloaded) < 2 and time.monotonic() < deadline:  # the other worker got the forwarded SIGHUP
            h = fresh(url, "GET", "/health").json()
            if h["reloads"] == 1:
                reloaded[h["pid"]] = h["added_items"]
        assert reloaded == {pid: 9 for pid in pids}  # both swapped; same manifest: the same collection, 9 items


def test_local_search_over_the_store_shares_added_items_between_workers(tmp_path) -> None:
    store = f"milvus:{tmp_path}/items.db"
    with Server(bundle_of("alpharec", "hnsw"), "--store", store, "--store-search", "local", "--workers", "2") as url:
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.get("/health").json()["index"] == "hnsw"  # searches in the in-process FAISS index
            for j in range(3):
                assert c.post("/v1/items", json=new_item(j), headers=KEY).status_code == 201
        time.sleep(1.5)  # every worker's poller reads the store's added items every sync_interval (1 s)
        knows: dict[int, set[str]] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (len(knows) == 2 and all(len(v) == 3 for v in knows.values())):
            with httpx.Client(base_url=url, timeout=30) as c:  # fresh connections: both workers
                pid = c.get("/health").json()["pid"]
                for j in range(3):
                    if c.get(f"/v1/items/new-{j}/similar", params={"k": 3}).status_code == 200:
                        knows.setdefault(pid, set()).add(f"new-{j}")
        assert len(knows) == 2 and all(len(v) == 3 for v in knows.values()), knows
    code, text = run_main(["serve", str(bundle_of("alpharec")), "--store-search", "local"])
    assert code == 2 and "--store-search" in text, text


def test_reload_under_a_request_loop_has_no_failed_request(tmp_path) -> None:
    first, second = bundle_of("alpharec"), bundle_of("alpharec", "hnsw")
    srv = Server(first, "--store", f"milvus:{tmp_path}/items.db")
    with srv as url, httpx.Client(base_url=url, timeout=30) as client:
        created = client.get("/health").json()["bundle_created"]
        stop, codes, lock = threading.Event(), [], threading.Lock()

        def loop() -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                while not stop.is_set():
                    for path in ("/v1/users/u3/recommendations?k=5", "/v1/items/i1/similar?k=5"):
                        try:
                            status = c.get(path).status_code
                        except httpx.HTTPError as exc:
                            status = repr(exc)
                        with lock:
                            codes.append(status)

        threads = [threading.Thread(target=loop) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            assert client.post("/admin/reload", json={"bundle": str(second)}).status_code == 401
            r = client.post("/admin/reload", json={"bundle": str(second)}, headers=KEY)
            assert r.status_code == 200 and r.json()["reloaded"] is True, r.text
            r = client.post("/admin/reload", json={"bundle": str(tmp_path / "missing")}, headers=KEY)
            assert r.status_code == 422 and r.json()["field"] == "bundle", r.text
            r = client.post("/admin/reload", headers=KEY)  # the current bundle again: rebuilt
            assert r.status_code == 200 and r.json()["bundle"] == str(second), r.text
            os.kill(srv.proc.pid, signal.SIGHUP)  # same bundle: a no-op, the server stays up
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert len(codes) > 20 and set(codes) == {200}, {c for c in codes if c != 200}
        health = client.get("/health").json()
        assert health["reloads"] == 2 and health["index"] == "milvus" and health["bundle_created"] != created
        assert srv.proc.poll() is None
