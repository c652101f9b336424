"""[Tasks] the relevance cut-off served: ``recembed cutoff RUN`` then ``recembed bundle RUN`` stores the map, and
``GET /v1/users/{id}/recommendations?min_probability=P`` answers the items with P(relevant) >= P, exactly the
probabilities the offline map gives, a count that varies per user, a ``min_results`` floor, and clear 422s."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_rankers import run_main

from recembed.runs import load_run
from recembed.serve.app import AppConfig, create_app
from recembed.tasks.cutoff import CutoffModel, features


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:  # noqa: ANN001
    root = tmp_path_factory.mktemp("serve-cutoff")
    run, plain = root / "ease", root / "plain"
    code, text = run_main(["fit", "ease", "--data", "synthetic:tiny", "--split", "random:0.7,0.15,0.15",
                           "--no-progress", "--out", str(run)])
    assert code == 0, text
    shutil.copytree(run, plain)  # the same run without a cut-off
    code, text = run_main(["cutoff", str(run), "--candidates", "30"])
    assert code == 0, text
    for src, dst in ((run, root / "bundle"), (plain, root / "plain-bundle")):
        code, text = run_main(["bundle", str(src), "--out", str(dst)])
        assert code == 0, text
    return {"run": run, "bundle": root / "bundle", "plain": root / "plain-bundle"}


@pytest.fixture(scope="module")
def client(work: dict[str, Path]):
    with TestClient(create_app(AppConfig(bundle=str(work["bundle"])))) as c:
        yield c


def test_the_bundle_carries_the_map(work: dict[str, Path]) -> None:
    manifest = json.loads((work["bundle"] / "manifest.json").read_text())
    fitted = json.loads((work["run"] / "cutoff.json").read_text())
    assert manifest["cutoff"]["model"] == fitted["model"] and manifest["cutoff"]["candidates"] == 30
    assert "cutoff/counts.safetensors" in manifest["files"]
    assert "cutoff" not in json.loads((work["plain"] / "manifest.json").read_text())


def test_served_probabilities_are_the_offline_maps(work: dict[str, Path], client: TestClient) -> None:
    run = load_run(work["run"])
    m = json.loads((work["run"] / "cutoff.json").read_text())["model"]
    cut = CutoffModel(np.asarray(m["mean"]), np.asarray(m["std"]), np.r_[m["weights"], m["bias"]])
    train = run.split.train
    uid = str(run.users.to_list()[3])
    full = client.get(f"/v1/users/{uid}/recommendations", params={"k": 30, "min_probability": 0}).json()
    assert full["count"] == 30 and full["candidates"] == 30 and full["min_probability"] == 0
    # the offline map over the same list (the served one: seen = train + valid + test excluded)
    items = np.array([run.items.to_list().index(r["item_id"]) for r in full["items"]])
    scores = np.array([r["score"] for r in full["items"]])
    x = features(scores[None], items[None], train.user_counts()[[3]], train.item_counts())
    np.testing.assert_allclose([r["probability"] for r in full["items"]], cut.predict(x), atol=1e-5)
    for t in (0.05, 0.2):  # a threshold keeps exactly the items at or above it, in retrieval order
        ans = client.get(f"/v1/users/{uid}/recommendations", params={"k": 30, "min_probability": t}).json()
        assert [r["item_id"] for r in ans["items"]] == [r["item_id"] for r in full["items"]
                                                        if r["probability"] >= t]


def test_counts_vary_per_user_and_the_floor_holds(work: dict[str, Path], client: TestClient) -> None:
    users = load_run(work["run"]).users.to_list()[:40]
    counts = [client.get(f"/v1/users/{u}/recommendations", params={"k": 30, "min_probability": 0.1}).json()["count"]
              for u in users]
    assert len(set(counts)) > 1, counts  # variable-length answers, not a fixed K
    high = [client.get(f"/v1/users/{u}/recommendations",
                       params={"k": 10, "min_probability": 0.99, "min_results": 3}).json() for u in users[:5]]
    for ans in high:
        assert ans["count"] == 3 and all(r["probability"] < 0.99 for r in ans["items"])
        scores = [r["score"] for r in ans["items"]]
        assert scores == sorted(scores, reverse=True)
    plain = client.get(f"/v1/users/{users[0]}/recommendations", params={"k": 5}).json()
    assert plain["count"] == 5 and "min_probability" not in plain  # without the parameter: the plain top k


@pytest.mark.parametrize("params, field", [
    ({"min_probability": 1.5}, "min_probability"),
    ({"min_results": 2}, "min_results"),
    ({"min_probability": 0.1, "min_results": 20, "k": 10}, "min_results"),
    ({"min_probability": 0.1, "candidates": 40}, "candidates"),
])
def test_bad_cutoff_parameters_are_422(work: dict[str, Path], client: TestClient, params: dict, field: str) -> None:
    uid = load_run(work["run"]).users.to_list()[0]
    r = client.get(f"/v1/users/{uid}/recommendations", params=params)
    assert r.status_code == 422 and field in r.text, r.text


def test_a_bundle_without_a_cutoff_says_how_to_get_one(work: dict[str, Path]) -> None:
    with TestClient(create_app(AppConfig(bundle=str(work["plain"])))) as c:
        uid = c.get("/v1/users", params={"limit": 1}).json()["users"][0]
        r = c.get(f"/v1/users/{uid}/recommendations", params={"min_probability": 0.2})
    assert r.status_code == 422 and "recembed cutoff RUN" in r.text, r.text
