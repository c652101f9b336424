"""[Rank] retrieve-then-rank served from one bundle: ``recembed bundle RUN --ranker RANKER_RUN`` stores the ranker
and the feature tables it reads; the service re-ranks the retriever's candidates exactly as the offline pipeline
would, times each stage (/metrics, Server-Timing), and refuses mismatched stages and bad ``candidates``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_ranking_pipeline import SPLIT, _invoke
from test_serve_signing import KEY, _refused, _serve
from test_serve_support import bundle_of

from recembed.data import catalog
from recembed.ranking.implicit import EncodedPairs, PairFeatures, pair_frame
from recembed.ranking.runs import load_ranker_run
from recembed.runs import load_run
from recembed.serve.app import AppConfig, create_app
from recembed.serve.bundle import BundleError, load_bundle
from recembed.serve.service import RecService, ServiceOptions
from recembed.serve.signing import KEY_ENV


@pytest.fixture(scope="module")
def work(tmp_path_factory, monkeypatch_module) -> dict[str, Path]:  # noqa: ANN001
    """A tiny retriever (ease) and rankers (deepfm on the same split / another split / "a CTR dataset"), fitted
    through the CLI, and bundles of them (one signed)."""
    root = tmp_path_factory.mktemp("serve-ranker")
    out = {name: root / name for name in ("ease", "deepfm", "other", "ctr", "bundle", "signed", "b30")}
    for args in (["fit", "ease", "--data", "synthetic:tiny", "--split", SPLIT, "--out", str(out["ease"])],
                 ["fit", "deepfm", "--data", "synthetic:tiny", "--split", SPLIT, "--out", str(out["deepfm"]),
                  "--set", "epochs=3", "--threads", "1"],
                 ["fit", "deepfm", "--data", "synthetic:tiny", "--split", "random:0.7,0.1,0.2",
                  "--out", str(out["other"]), "--set", "epochs=1", "--threads", "1"]):
        res = _invoke(args)
        assert res.exit_code == 0, res.output
    shutil.copytree(out["deepfm"], out["ctr"])  # what a ranker fitted on a CTR dataset records: no split
    config = json.loads((out["ctr"] / "config.json").read_text())
    config["data"] = {"data": "ml-100k-ctr", "data_root": None}
    (out["ctr"] / "config.json").write_text(json.dumps(config))
    res = _invoke(["bundle", str(out["ease"]), "--ranker", str(out["deepfm"]), "--out", str(out["bundle"])])
    assert res.exit_code == 0, res.output
    assert "ranker deepfm: 5 fields" in " ".join(res.output.split())
    res = _invoke(["bundle", str(out["ease"]), "--ranker", str(out["deepfm"]), "--candidates", "30",
                   "--out", str(out["b30"])])
    assert res.exit_code == 0, res.output
    monkeypatch_module.setenv(KEY_ENV, KEY)
    res = _invoke(["bundle", str(out["ease"]), "--ranker", str(out["deepfm"]), "--out", str(out["signed"]), "--sign"])
    monkeypatch_module.delenv(KEY_ENV)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def client(work: dict[str, Path]):
    with TestClient(create_app(AppConfig(bundle=str(work["bundle"])))) as c:
        yield c


def offline(work: dict[str, Path], user: str, k: int, candidates: int) -> list[tuple[str, float, float]]:
    """Retrieve-then-rank without the bundle: the run's model scores every item, the user's known items (train +
    valid + test, as the bundle's history) are dropped, the top ``candidates`` go through ``pair_frame`` built from
    the dataset itself and the ranker run's model; the top ``k`` by probability (ties: retrieval order)."""
    run, rk = load_run(work["ease"]), load_ranker_run(work["deepfm"]).model
    ds = catalog.load("synthetic:tiny")
    u = int(run.users.index([user])[0])
    scores = np.asarray(run.model.score(np.array([u]))[0], dtype=np.float32).copy()
    for part in (run.split.train, run.split.valid, run.split.test):
        scores[part.item_idx[part.user_idx == u]] = -np.inf
    order = np.argsort(-scores, kind="stable")
    order = order[np.isfinite(scores[order])][:candidates]
    du = ds.users.index([user])
    di = ds.items.index(list(run.items.lookup(order)))
    probs = rk.predict(pair_frame(ds, rk.schema_.fields, np.repeat(du, len(di)), di))
    top = np.argsort(-probs, kind="stable")[:k]
    return [(str(run.items.lookup(int(order[j]))), float(scores[order[j]]), float(probs[j])) for j in top]


def test_a_bundle_holds_the_ranker_and_its_features(work: dict[str, Path]) -> None:
    manifest = json.loads((work["bundle"] / "manifest.json").read_text())
    rk = manifest["ranker"]
    assert rk["name"] == "deepfm" and rk["candidates"] == 200 and rk["max_candidates"] == 1000
    assert [f["name"] for f in rk["fields"]] == ["user_id", "item_id", "category", "tags", "price"]
    assert {"ranker/model.json", "ranker/model.safetensors", "ranker/items.parquet"} <= set(manifest["files"])
    assert "ranker/users.parquet" not in manifest["files"]  # synthetic:tiny has no user table
    b = load_bundle(work["bundle"])
    # the bundled columns are the dataset's, aligned to the bundle's vocabularies (no data root needed now)
    ds = catalog.load("synthetic:tiny")
    from_data = PairFeatures.from_dataset(ds, b.ranker.schema_.fields)
    rows = ds.items.index(b.items.to_list())
    for name in ("category", "price"):
        np.testing.assert_array_equal(b.ranker_features.columns[name][2], from_data.columns[name][2][rows])
    tags = b.ranker_features.columns["tags"][2]
    assert [list(tags.take(np.array([i])).values) for i in range(5)] == \
        [list(from_data.columns["tags"][2].take(rows[i: i + 1]).values) for i in range(5)]
    # the bundled ranker predicts what the run's does
    users, items = np.arange(40) % len(b.users), np.arange(40)
    frame = b.ranker_features.frame(users, items)
    np.testing.assert_array_equal(b.ranker.predict(frame), load_ranker_run(work["deepfm"]).model.predict(frame))
    # the encoded cache (what a request gathers) equals encoding the raw rows
    pairs = EncodedPairs(b.ranker_features, b.ranker.schema_)
    enc = b.ranker.schema_.encode(frame)
    for name, arr in pairs.arrays(users, items).items():
        np.testing.assert_array_equal(arr, enc.arrays[name])


@pytest.mark.parametrize("candidates", [None, 30])
def test_the_service_reranks_exactly_like_the_offline_pipeline(client, work: dict[str, Path],
                                                                candidates: int | None) -> None:
    reordered = 0
    for user in ("u0", "u3", "u17", "u123"):
        params = {"k": 10, **({"candidates": candidates} if candidates else {})}
        r = client.get(f"/v1/users/{user}/recommendations", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["stages"] == ["retrieve", "rank"] and body["ranker"] == "deepfm"
        assert body["candidates"] == (candidates or 200) and body["count"] == 10
        want = offline(work, user, 10, candidates or 200)
        assert [it["item_id"] for it in body["items"]] == [w[0] for w in want]  # exact order
        np.testing.assert_allclose([it["probability"] for it in body["items"]], [w[2] for w in want], atol=1e-6)
        np.testing.assert_allclose([it["score"] for it in body["items"]], [w[1] for w in want], atol=1e-5)
        probs = [it["probability"] for it in body["items"]]
        assert probs == sorted(probs, reverse=True)
        scores = [it["score"] for it in body["items"]]
        reordered += scores != sorted(scores, reverse=True)  # the ranker's order, not the retriever's
        timing = r.headers["server-timing"]
        assert timing.startswith("retrieve;dur=") and ", rank;dur=" in timing
    assert reordered == 4


def test_fast_path_and_route_agree_with_a_ranker(client) -> None:
    fast = client.get("/v1/users/u3/recommendations?k=5&candidates=40")
    slow = client.get("/v1/users/u3/recommendations?k=%35&candidates=%34%30")  # percent-encoded: the route
    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content and "server-timing" in slow.headers


def test_bundle_and_serve_settings_of_the_candidates(work: dict[str, Path]) -> None:
    with TestClient(create_app(AppConfig(bundle=str(work["b30"])))) as c:
        assert c.get("/v1/users/u3/recommendations", params={"k": 5}).json()["candidates"] == 30
        assert c.get("/health").json()["candidates"] == 30
        assert c.get("/v1/users/u3/recommendations", params={"k": 50}).json()["candidates"] == 50  # at least k
    with TestClient(create_app(AppConfig(bundle=str(work["b30"]), options=ServiceOptions(candidates=20)))) as c:
        assert c.get("/v1/users/u3/recommendations", params={"k": 5}).json()["candidates"] == 20


def test_stage_metrics_and_health(client) -> None:
    for user in ("u1", "u2", "u4"):
        assert client.get(f"/v1/users/{user}/recommendations", params={"k": 3}).status_code == 200
    health = client.get("/health").json()
    assert health["ranker"] == "deepfm" and health["stages"] == ["retrieve", "rank"] and health["candidates"] == 200
    text = client.get("/metrics").text
    assert "# TYPE recembed_stage_duration_seconds histogram" in text
    counts = {}
    for stage in ("retrieve", "rank"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f'recembed_stage_duration_seconds_count{{stage="{stage}"}}'))
        counts[stage] = int(line.split()[-1])
        assert f'recembed_stage_duration_seconds_bucket{{stage="{stage}",le="0.0001"}}' in text
        assert f'recembed_stage_duration_seconds_sum{{stage="{stage}"}}' in text
    assert counts["retrieve"] == counts["rank"] >= 3
    assert 'recembed_ranker_info{ranker="deepfm",candidates="200"} 1' in text
    # history recommendations stay retrieval-only (and say so)
    r = client.post("/v1/recommendations", json={"history": ["i1", "i2"], "k": 3})
    assert r.status_code == 200 and r.json()["stages"] == ["retrieve"]


@pytest.mark.parametrize(("query", "fragment"), [
    ("k=10&candidates=5", "must be >= k (10)"),
    ("k=10&candidates=1001", "less than or equal to 1000"),
    ("candidates=0", "greater than or equal to 1"),
    ("candidates=many", "valid integer"),
])
def test_bad_candidates_are_422_naming_the_field(client, query: str, fragment: str) -> None:
    r = client.get(f"/v1/users/u3/recommendations?{query}")
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "candidates" and fragment in r.json()["detail"] and "Traceback" not in r.text


def test_candidates_without_a_ranker_are_422() -> None:
    with TestClient(create_app(AppConfig(bundle=str(bundle_of("ease"))))) as c:
        r = c.get("/v1/users/u3/recommendations?k=3&candidates=50")
        assert r.status_code == 422 and r.json()["field"] == "candidates" and "no ranker" in r.json()["detail"]
        ok = c.get("/v1/users/u3/recommendations?k=3").json()
        assert ok["stages"] == ["retrieve"] and "probability" not in ok["items"][0]
        assert c.get("/health").json()["ranker"] is None


def test_items_added_after_bundling_get_oov_and_zero_features(work: dict[str, Path]) -> None:
    b = load_bundle(work["bundle"])
    svc = RecService(b)
    pairs = svc.rank.pairs
    n = pairs.num_items
    svc.rank.add_item("brand-new-item")
    assert pairs.num_items == n + 1
    row = pairs.arrays(np.array([0]), np.array([n]))
    assert int(row["item_id"][0]) == 1 and int(row["category"][0]) == 1  # the OOV bucket
    assert not row["tags"].any() and float(row["price"][0]) == 0.0  # no tags (padding), the training mean
    assert np.isfinite(svc.rank.probabilities(0, np.array([0, n]))).all()


@pytest.mark.parametrize(("which", "extra", "fragment"), [
    ("other", [], "--ranker: fitted on 'synthetic:tiny' split 'random:0.7,0.1,0.2', the retriever on "
                  "'synthetic:tiny' split 'random:0.8,0.1,0.1': a bundle with a ranker (retrieve-then-rank) needs "
                  "both on the same data and split"),
    ("ctr", [], "--ranker: "),
    ("deepfm", ["--candidates", "0"], "Invalid value for '--candidates': 0 is not in the range 1<=x<=1000"),
    ("deepfm", ["--candidates", "5000"], "'--candidates': 5000 is not in the range 1<=x<=1000"),
    (None, ["--candidates", "20"], "--candidates: only with --ranker"),
])
def test_bundle_refuses_mismatched_rankers(work: dict[str, Path], tmp_path: Path, which: str | None,
                                           extra: list[str], fragment: str) -> None:
    ranker = ["--ranker", str(work[which])] if which else []
    res = _invoke(["bundle", str(work["ease"]), *ranker, *extra, "--out", str(tmp_path / "b")])
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert fragment in text and "Traceback" not in res.output
    if which == "ctr":
        assert "was fitted on a CTR dataset ('ml-100k-ctr')" in text
    assert not (tmp_path / "b").exists()


def test_serve_candidates_needs_a_ranker() -> None:
    _refused(_serve(bundle_of("ease"), "--candidates", "50", key=None), "--candidates: the bundle has no ranker")


def test_a_tampered_ranker_is_refused(work: dict[str, Path], tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv(KEY_ENV, KEY)
    assert load_bundle(work["signed"], require_signature=True).ranker.name == "deepfm"
    bundle = tmp_path / "b"
    shutil.copytree(work["signed"], bundle)
    target = bundle / "ranker" / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[-64:] = bytes(x ^ 0x5A for x in data[-64:])  # other weights, same size
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch"):  # manifest untouched: the checksum catches it
        load_bundle(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())  # a tamperer re-checksums the file
    manifest["files"]["ranker/model.safetensors"]["sha256"] = hashlib.sha256(data).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _refused(_serve(bundle, "--require-signature", key=KEY), "signature mismatch", "manifest.json was changed")
    # the feature tables are under the signature too
    shutil.rmtree(bundle)
    shutil.copytree(work["signed"], bundle)
    (bundle / "ranker" / "items.parquet").write_bytes(b"PAR1 not the bundled table")
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(bundle, require_signature=True)
