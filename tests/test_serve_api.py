"""The HTTP API against real ``recembed serve`` processes (uvicorn on a free loopback port)."""

from __future__ import annotations

import os
import sys
import time

import httpx
import numpy as np
import pytest
from test_serve_support import API_KEY, Server, bundle_of, fitted_run

from recembed.runs import load_run


@pytest.fixture(scope="module")
def alpharec():
    """A content-capable embedding bundle with a stored HNSW index, served by one worker."""
    with Server(bundle_of("alpharec", "hnsw")) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def ease():
    """A run directory (bundled to a temporary directory by `serve`) of a model scored by itself."""
    with Server(fitted_run("ease")) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def test_health_and_openapi(alpharec) -> None:
    h = alpharec.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "alpharec" and h["index"] == "hnsw" and h["content"] is True
    schema = alpharec.get("/openapi.json").json()
    for path in ("/v1/users/{user_id}/recommendations", "/v1/recommendations", "/v1/items/{item_id}/similar",
                 "/v1/items", "/health", "/metrics"):
        assert path in schema["paths"], path


def test_user_recommendations_match_the_cli_ranking(alpharec) -> None:
    run = load_run(fitted_run("alpharec"))
    from recembed.data.interactions import Interactions

    seen = Interactions.concat([run.split.train, run.split.valid, run.split.test]).csr()
    for user in ("u3", "u42"):
        r = alpharec.get(f"/v1/users/{user}/recommendations", params={"k": 10})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["user_id"] == user and body["k"] == 10 and len(body["items"]) == 10
        u = int(run.users.index([user])[0])
        ref_items, _ = run.model.recommend(u, k=10, exclude=seen, exclude_seen=False)
        got = [it["item_id"] for it in body["items"]]
        assert len(set(got) & set(run.items.lookup(ref_items))) >= 9  # HNSW: (nearly) the exact answer
        assert not set(got) & set(run.items.lookup(seen[u].indices))
        assert all(it["title"] for it in body["items"])
    with_seen = alpharec.get("/v1/users/u3/recommendations", params={"k": 50, "exclude_seen": "false"}).json()
    u3 = int(run.users.index(["u3"])[0])
    assert set(run.items.lookup(seen[u3].indices)) & {it["item_id"] for it in with_seen["items"]}


def test_history_recommendations(alpharec, ease) -> None:
    for client in (alpharec, ease):
        r = client.post("/v1/recommendations", json={"history": ["i1", "i2", "i3"], "k": 5})
        assert r.status_code == 200, r.text
        got = [it["item_id"] for it in r.json()["items"]]
        assert len(got) == 5 and not {"i1", "i2", "i3"} & set(got)


def test_history_recommendations_from_the_models_own_scoring(ease) -> None:
    run = load_run(fitted_run("ease"))
    items, _ = run.model.recommend_history(run.items.index(["i1", "i2"]), k=5)
    got = ease.post("/v1/recommendations", json={"history": ["i1", "i2"], "k": 5}).json()["items"]
    assert [it["item_id"] for it in got] == list(run.items.lookup(items))


def test_similar_items(alpharec, ease) -> None:
    for client in (alpharec, ease):
        r = client.get("/v1/items/i1/similar", params={"k": 7})
        assert r.status_code == 200, r.text
        got = [it["item_id"] for it in r.json()["items"]]
        assert len(got) == 7 and "i1" not in got


def test_browsing_endpoints(alpharec) -> None:
    assert "u3" in alpharec.get("/v1/users", params={"q": "u3"}).json()["users"]
    hist = alpharec.get("/v1/users/u3/history", params={"limit": 5}).json()["items"]
    assert 0 < len(hist) <= 5 and all("title" in it for it in hist)
    title = hist[0]["title"]
    found = alpharec.get("/v1/items", params={"q": title.split()[-1]}).json()["items"]
    assert found and all(title.split()[-1].lower() in it["title"].lower() for it in found)


@pytest.mark.parametrize("path, name", [
    ("/v1/users/nobody-here/recommendations", "nobody-here"),
    ("/v1/users/nobody-here/history", "nobody-here"),
    ("/v1/items/no-such-item/similar", "no-such-item"),
])
def test_unknown_ids_are_404_naming_the_id(alpharec, path: str, name: str) -> None:
    r = alpharec.get(path)
    assert r.status_code == 404 and name in r.json()["detail"]


def test_unknown_history_item_is_404(alpharec) -> None:
    r = alpharec.post("/v1/recommendations", json={"history": ["i1", "ghost-item"], "k": 5})
    assert r.status_code == 404 and "ghost-item" in r.json()["detail"]


@pytest.mark.parametrize("method, path, kwargs, field", [
    ("get", "/v1/users/u3/recommendations", {"params": {"k": 0}}, "k"),
    ("get", "/v1/users/u3/recommendations", {"params": {"k": "many"}}, "k"),
    ("get", "/v1/users/u3/recommendations", {"params": {"k": 100000}}, "k"),
    ("get", "/v1/users/u3/recommendations", {"params": {"exclude_seen": "perhaps"}}, "exclude_seen"),
    ("get", "/v1/items/i1/similar", {"params": {"k": -1}}, "k"),
    ("post", "/v1/recommendations", {"json": {"k": 5}}, "history"),
    ("post", "/v1/recommendations", {"json": {"history": [], "k": 5}}, "history"),
    ("post", "/v1/recommendations", {"json": {"history": ["i1"], "k": 0}}, "k"),
])
def test_bad_parameters_are_422_naming_the_field(alpharec, method, path, kwargs, field) -> None:
    r = getattr(alpharec, method)(path, **kwargs)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == field and repr(field) in body["detail"]


def test_oversized_bodies_are_413(alpharec) -> None:
    big = {"history": ["i1"] * 10, "k": 5, "padding": "x" * (2 << 20)}
    r = alpharec.post("/v1/recommendations", json=big)
    assert r.status_code == 413

    def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(40):
            yield b"x" * 65536

    r = alpharec.post("/v1/recommendations", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_adding_items_needs_the_api_key(alpharec) -> None:
    body = {"item_id": "new-keyless", "title": "Everyday alpine backpack"}
    assert alpharec.post("/v1/items", json=body).status_code == 401
    assert alpharec.post("/v1/items", json=body, headers={"X-API-Key": "wrong"}).status_code == 403
    assert alpharec.get("/v1/items/new-keyless/similar").status_code == 404


def test_mutations_are_off_without_a_configured_key(monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from recembed.serve.app import AppConfig, create_app

    monkeypatch.delenv("RECEMBED_API_KEY", raising=False)
    with TestClient(create_app(AppConfig(bundle=str(bundle_of("bpr"))))) as client:  # in-process, for this one
        r = client.post("/v1/items", json={"item_id": "x", "title": "y"}, headers={"X-API-Key": "anything"})
        assert r.status_code == 403 and "RECEMBED_API_KEY" in r.json()["detail"]


def test_a_warning_at_start_when_no_api_key_is_set() -> None:
    keyless, keyed = Server(bundle_of("bpr"), api_key=None), Server(bundle_of("bpr"))
    for server in (keyless, keyed):
        with server:
            pass
    log = " ".join(keyless.log.read_text().split())
    assert "warning: no API key set (RECEMBED_API_KEY is empty)" in log and "refused with 403" in log
    assert "no API key" not in keyed.log.read_text()


def test_models_without_a_capability_answer_501(ease) -> None:
    r = ease.post("/v1/items", json={"item_id": "x", "title": "y"}, headers={"X-API-Key": API_KEY})
    assert r.status_code == 501 and "no content encoder" in r.json()["detail"]


def test_new_item_is_similar_to_its_content_neighbours_at_once(alpharec) -> None:
    bundle_title = alpharec.get("/v1/items", params={"q": "i17"}).json()["items"][0]["title"]
    twins = [it["item_id"] for it in alpharec.get("/v1/items", params={"q": bundle_title, "limit": 200}).json()[
        "items"] if it["title"] == bundle_title]
    r = alpharec.post("/v1/items", json={"item_id": "brand-new", "title": bundle_title},
                      headers={"X-API-Key": API_KEY})
    assert r.status_code == 201, r.text
    assert r.json()["items"] == 201
    sim = [it["item_id"] for it in alpharec.get("/v1/items/brand-new/similar", params={"k": 5}).json()["items"]]
    assert set(twins) & set(sim[:3]), (twins, sim)  # its text twins are its nearest neighbours
    back = [it["item_id"] for it in alpharec.get("/v1/items/i17/similar", params={"k": 5}).json()["items"]]
    assert "brand-new" in back, back  # and it shows up among theirs, without retraining
    after = alpharec.get("/v1/items", params={"q": "brand-new"}).json()["items"]
    assert after == [{"item_id": "brand-new", "title": bundle_title}]
    again = alpharec.post("/v1/items", json={"item_id": "brand-new", "title": "x"}, headers={"X-API-Key": API_KEY})
    assert again.status_code == 409
    empty = alpharec.post("/v1/items", json={"item_id": "no-text"}, headers={"X-API-Key": API_KEY})
    assert empty.status_code == 422 and empty.json()["field"] == "fields"


def test_metrics_in_prometheus_text_format(alpharec) -> None:
    alpharec.get("/v1/users/u3/recommendations")
    alpharec.get("/v1/users/nobody/recommendations")
    text = alpharec.get("/metrics").text
    assert "# TYPE recembed_requests_total counter" in text
    assert 'recembed_requests_total{method="GET",route="/v1/users/{user_id}/recommendations",status="200"}' in text
    assert 'status="404"' in text
    assert "recembed_request_duration_seconds_bucket" in text and 'le="+Inf"' in text
    assert "recembed_items " in text
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert all(len(ln.rsplit(" ", 1)) == 2 and float(ln.rsplit(" ", 1)[1]) >= 0 for ln in lines)


def test_page_is_served(alpharec) -> None:
    r = alpharec.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "recembed explorer" in r.text and "/v1/users/" in r.text


def test_scores_are_finite_numbers(alpharec) -> None:
    items = alpharec.get("/v1/users/u5/recommendations", params={"k": 20}).json()["items"]
    assert np.isfinite([it["score"] for it in items]).all()


@pytest.mark.parametrize("query", ["k=7", "k=7&exclude_seen=false", "exclude_seen=NO&k=7", "k=7&other=1"])
def test_fast_path_answers_exactly_like_the_route(alpharec, ease, query: str) -> None:
    """Well-formed user requests skip FastAPI's routing (the middleware answers); a percent-encoded query
    string goes through the route: both give the same status, headers and body."""
    encoded = "&".join(f"{name}={''.join(f'%{ord(c):02X}' for c in value)}"
                       for name, _, value in (p.partition("=") for p in query.split("&")))
    for client in (alpharec, ease):
        fast = client.get(f"/v1/users/u3/recommendations?{query}")
        slow = client.get(f"/v1/users/u3/recommendations?{encoded}")
        assert fast.status_code == slow.status_code == 200, (fast.text, slow.text)
        assert fast.content == slow.content
        assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
        assert fast.headers["content-length"] == slow.headers["content-length"]
        assert fast.json()["k"] == 7 and len(fast.json()["items"]) == 7


@pytest.mark.parametrize("query, field", [("k=0", "k"), ("k=1001", "k"), ("k=", "k"), ("k=1&k=2", None),
                                          ("exclude_seen=", "exclude_seen"), ("exclude_seen=maybe", "exclude_seen")])
def test_fast_path_leaves_odd_requests_to_the_route(alpharec, query: str, field: str | None) -> None:
    r = alpharec.get(f"/v1/users/u3/recommendations?{query}")
    if field is None:  # repeated parameter: the route decides (Starlette keeps the last value)
        assert r.status_code == 200 and r.json()["k"] == 2
    else:
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    for path in ("/v1/users/nobody/recommendations", "/v1/users/u3%2Fx/recommendations"):
        assert alpharec.get(path).status_code == 404


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                out.append(int(entry))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_several_workers_share_the_port_and_stop_together() -> None:
    """--workers 2: each worker owns a SO_REUSEPORT socket (connections spread over both); adding items is
    refused (each worker has its own index); SIGTERM to the parent stops every worker."""
    server = Server(bundle_of("alpharec", "hnsw"), "--workers", "2")
    with server as url:
        time.sleep(2)  # the second worker may still be loading: it listens only once ready
        workers = [p for p in _children(server.proc.pid) if "spawn_main" in open(f"/proc/{p}/cmdline").read()]
        assert len(workers) == 2
        for i in range(20):  # fresh connections: the kernel hashes each to a worker
            assert httpx.get(f"{url}/v1/users/u{i}/recommendations", params={"k": 3}).status_code == 200
        r = httpx.post(f"{url}/v1/items", json={"item_id": "x", "title": "x"}, headers={"X-API-Key": API_KEY})
        assert r.status_code == 409 and "--workers 1" in r.json()["detail"]
    assert server.proc.returncode == 0
    time.sleep(0.5)
    assert not [p for p in workers if os.path.exists(f"/proc/{p}")]
