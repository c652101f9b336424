"""Bad and unusual HTTP input, in process (FastAPI's TestClient runs the whole ASGI app, middleware included):
ids containing '/', ``count`` when k exceeds the candidates, unknown body fields, malformed JSON, other content
types; and the order of a user's history."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from test_serve_support import bundle_of, fitted_run, workdir

from recembed.cli.main import cli
from recembed.data.interactions import Interactions
from recembed.runs import load_run
from recembed.serve.app import AppConfig, create_app

SLASH_ITEM, SLASH_USER = "a/b", "team/u/1"


@lru_cache(maxsize=1)
def slash_bundle() -> Path:
    """A BPR bundle (stored HNSW index) of own data whose ids contain '/' (users 'team/u/N', items 'cat/iM'
    and 'a/b')."""
    rng = np.random.default_rng(0)
    rows = ["user_id,item_id,timestamp"]
    for u in range(60):
        for t, i in enumerate(rng.choice(40, size=8, replace=False)):
            rows.append(f"team/u/{u},{'a/b' if i == 0 else f'cat/i{i}'},{1000 * u + t}")
    data = workdir() / "slash-ids.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    run, out = workdir() / "run-slash", workdir() / "bundle-slash"
    for args in (["fit", "bpr", "--data", str(data), "--out", str(run), "--no-progress", "--set", "epochs=2"],
                 ["bundle", str(run), "--out", str(out), "--index", "hnsw", "--no-progress"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def slash():
    with TestClient(create_app(AppConfig(bundle=str(slash_bundle())))) as client:
        yield client


@pytest.fixture(scope="module")
def bpr():
    with TestClient(create_app(AppConfig(bundle=str(bundle_of("bpr", "hnsw"))))) as client:
        yield client


@pytest.mark.parametrize("encode", [False, True])
def test_ids_with_a_slash_reach_every_id_endpoint(slash, encode: bool) -> None:
    user = SLASH_USER.replace("/", "%2F") if encode else SLASH_USER
    item = SLASH_ITEM.replace("/", "%2F") if encode else SLASH_ITEM
    recs = slash.get(f"/v1/users/{user}/recommendations", params={"k": 5})
    assert recs.status_code == 200, recs.text
    assert recs.json()["user_id"] == SLASH_USER and recs.json()["count"] == 5
    hist = slash.get(f"/v1/users/{user}/history")
    assert hist.status_code == 200 and hist.json()["user_id"] == SLASH_USER and hist.json()["items"]
    sim = slash.get(f"/v1/items/{item}/similar", params={"k": 5})
    assert sim.status_code == 200, sim.text
    assert sim.json()["item_id"] == SLASH_ITEM and SLASH_ITEM not in [it["item_id"] for it in sim.json()["items"]]
    missing = slash.get("/v1/items/a/b/c/similar")
    assert missing.status_code == 404 and "'a/b/c'" in missing.json()["detail"]
    # the route template, not the id, labels the metrics
    assert 'route="/v1/users/{user_id}/recommendations"' in slash.get("/metrics").text
    body = slash.post("/v1/recommendations", json={"history": [SLASH_ITEM, "cat/i3"], "k": 3})
    assert body.status_code == 501  # the ids resolved (unknown ones are 404 first); BPR cannot score a history
    assert slash.post("/v1/recommendations", json={"history": ["a/zz"]}).status_code == 404


def test_fast_path_and_route_agree_on_slash_ids(slash) -> None:
    fast = slash.get(f"/v1/users/{SLASH_USER}/recommendations?k=4")
    slow = slash.get(f"/v1/users/{SLASH_USER.replace('/', '%2F')}/recommendations?k=%34")  # encoded: the route
    assert fast.status_code == slow.status_code == 200 and fast.content == slow.content


def test_k_above_the_candidates_answers_the_real_count(bpr) -> None:
    """200 items: k=1000 gets every admissible item once (the HNSW index falls back to exact search when its
    graph returns fewer), and ``count`` says how many; no padding ids."""
    health = bpr.get("/health").json()
    assert health["index"] == "hnsw"
    seen = {it["item_id"] for it in bpr.get("/v1/users/u3/history", params={"limit": 1000}).json()["items"]}
    for params, expected in (({"k": 1000}, health["items"] - len(seen)),
                             ({"k": 1000, "exclude_seen": "false"}, health["items"])):
        body = bpr.get("/v1/users/u3/recommendations", params=params).json()
        ids = [it["item_id"] for it in body["items"]]
        assert body["k"] == 1000 and body["count"] == len(ids) == len(set(ids)) == expected
        assert all(np.isfinite(it["score"]) for it in body["items"])
    sim = bpr.get("/v1/items/i1/similar", params={"k": 1000}).json()
    assert sim["count"] == len(sim["items"]) == health["items"] - 1
    small = bpr.get("/v1/users/u3/recommendations", params={"k": 7}).json()
    assert small["count"] == 7
    post = bpr.post("/v1/recommendations", json={"history": ["i1"], "k": 1000})
    assert post.status_code in (200, 501)  # BPR cannot score an anonymous history: 501 (covered elsewhere)


def test_an_approximate_index_is_never_shorter_than_exact() -> None:
    from recembed.serve.index import build_index

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    hnsw = build_index("hnsw", vectors, m=4, ef_construction=8, ef_search=4)  # a weak graph
    exclude = [np.arange(0, 300, 3), np.arange(10)]
    for queries in (vectors[:1], vectors[:2]):
        items, _ = hnsw.search(queries, 300, exclude=exclude[: len(queries)])
        for row, excl in zip(items, exclude):
            assert (row >= 0).sum() == 300 - len(excl)
            assert not set(row[row >= 0].tolist()) & set(excl.tolist())


@pytest.mark.parametrize("path, body, field", [
    ("/v1/recommendations", {"history": ["i1"], "k": 3, "hisotry": ["i2"]}, "hisotry"),
    ("/v1/recommendations", {"history": ["i1"], "top_k": 3}, "top_k"),
    ("/v1/items", {"item_id": "x", "title": "y", "colour": "red"}, "colour"),
])
def test_unknown_body_fields_are_422_naming_the_field(bpr, path: str, body: dict, field: str) -> None:
    r = bpr.post(path, json=body, headers={"X-API-Key": "whatever"})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and repr(field) in r.json()["detail"]
    assert r.json()["errors"][0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("raw, line, column", [
    (b'{"history": ["i1", "i2",], "k": 3}', 1, 25),
    (b'{\n  "history": ["i1"],\n  "k": 3,\n}', 4, 1),
    (b'{"history": ["i1"]', 1, 19),
    (b"not json", 1, 1),
])
def test_malformed_json_is_400_naming_line_and_column(bpr, raw: bytes, line: int, column: int) -> None:
    r = bpr.post("/v1/recommendations", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["detail"].startswith(f"malformed JSON at line {line}, column {column}: "), body
    assert (body["line"], body["column"]) == (line, column)
    assert "field" not in body  # the offset is not reported as a field name any more


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_bodies_that_are_not_json_are_415(bpr, content_type: str) -> None:
    for path in ("/v1/recommendations", "/v1/items"):
        r = bpr.post(path, content=b'{"history": ["i1"], "k": 3}', headers={"content-type": content_type})
        assert r.status_code == 415, r.text
        assert content_type in r.json()["detail"] and "application/json" in r.json()["detail"]
    plus_json = bpr.post("/v1/recommendations", content=b'{"history": ["i1"], "k": 3}',
                         headers={"content-type": "application/vnd.api+json; charset=utf-8"})
    assert plus_json.status_code == 501  # parsed as JSON; BPR then cannot score an anonymous history


def test_history_is_newest_first_by_event_time() -> None:
    """The run keeps event timestamps (split.parquet), so a bundle's history is in time order across the
    train / valid / test parts (a random split puts test events anywhere in time); the page shows it newest
    first."""
    run = load_run(fitted_run("ease"))
    events = Interactions.concat([run.split.train, run.split.valid, run.split.test])
    assert events.timestamp is not None
    untimed = Interactions(events.user_idx, events.item_idx, events.num_users, events.num_items)
    part_indptr, part_items = untimed.histories()  # what a bundle held before: train, then valid, then test
    differs = 0
    with TestClient(create_app(AppConfig(bundle=str(bundle_of("ease"))))) as client:
        for user in [f"u{i}" for i in range(0, 60, 3)]:
            u = int(run.users.index([user])[0])
            mine = np.flatnonzero(events.user_idx == u)
            ts: dict[str, list[float]] = {}
            for e in mine[np.argsort(-events.timestamp[mine], kind="stable")]:
                ts.setdefault(str(run.items.lookup([events.item_idx[e]])[0]), []).append(events.timestamp[e])
            got = [it["item_id"] for it in
                   client.get(f"/v1/users/{user}/history", params={"limit": 1000}).json()["items"]]
            assert len(got) == len(mine)
            times = [ts[item].pop(0) for item in got]  # each event's time, newest remaining first
            assert times == sorted(times, reverse=True), (user, times)
            old = list(run.items.lookup(part_items[part_indptr[u]: part_indptr[u + 1]][::-1]))
            differs += old != got
    assert differs  # the part order was not time order for these users: the timestamps made the difference
