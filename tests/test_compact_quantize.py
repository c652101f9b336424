"""Quantised tables (recembed.compact): round-trip error bounds, byte accounting, and every compressed run's round
trip compress -> metrics.json -> bundle -> the service answers; bad flags exit 2 naming the flag."""

from __future__ import annotations

import numpy as np
import pytest
from test_rankers import run_main
from test_serve_support import fitted_run, workdir

from recembed.compact import quantize as q
from recembed.compact.model import CompressedEmbedding
from recembed.io import read_json
from recembed.runs import load_run
from recembed.serve.bundle import load_bundle
from recembed.serve.service import RecService

RNG = np.random.default_rng(0)


def test_int8_round_trip_error_is_at_most_half_a_step() -> None:
    x = (RNG.standard_normal((500, 64)) * RNG.uniform(0.01, 10, (500, 1))).astype(np.float32)
    x[3] = 0.0  # an all-zero row survives
    codes, scale = q.int8_encode(x)
    assert codes.dtype == np.int8 and scale.dtype == np.float16 and np.abs(codes).max() <= 127
    back = q.int8_decode(codes, scale)
    step = scale.astype(np.float32)[:, None]
    assert np.all(np.abs(back - x) <= step / 2 + 1e-6 * np.abs(x))
    assert np.all(back[3] == 0)
    rel = np.linalg.norm(back - x, axis=1) / np.maximum(np.linalg.norm(x, axis=1), 1e-12)
    assert rel[np.arange(500) != 3].max() < 0.02  # max|x| / 127 / 2 per element, well under 2 % of the norm


def test_fp16_and_binary_round_trips() -> None:
    x = RNG.standard_normal((100, 37)).astype(np.float32)
    np.testing.assert_allclose(q.fp16_decode(q.fp16_encode(x)), x, rtol=2 ** -11, atol=1e-7)
    bits = q.binary_encode(x)
    assert bits.shape == (100, 5)
    np.testing.assert_array_equal(q.binary_decode(bits, 37), np.where(x > 0, 1.0, -1.0))
    x = x + 3.0  # off-centre: the code is of x - mean, scaled by mean |x - mean| (least squares for a sign code)
    back = q.binary_table_decode(*q.binary_table(x))
    assert np.all(np.sign(back - x.mean(0)) == np.sign(x - x.mean(0)))
    assert np.linalg.norm(back - x) < np.linalg.norm(x - x.mean(0))


@pytest.mark.parametrize("spec", ["pq:4", "opq:4", "ivfpq:4"])
def test_pq_round_trip_error_bounds(spec: str) -> None:
    x = RNG.standard_normal((1000, 16)).astype(np.float32)
    index = q.train_faiss(q.parse_method(spec), x, seed=1)
    back = q.faiss_decode(index)
    mse = float(((back - x) ** 2).sum(axis=1).mean())
    total = float(((x - x.mean(0)) ** 2).sum(axis=1).mean())
    assert mse < 0.5 * total  # 256 centroids per 4-d sub-space: well under the data's variance
    if spec != "ivfpq:4":  # decoding is a fixed point: a decoded vector encodes to its own codes
        np.testing.assert_array_equal(index.sa_encode(back), index.sa_encode(x))
    # the saved form (FAISS's serialised bytes) decodes to the same vectors
    np.testing.assert_allclose(q.faiss_decode(q.faiss_from_array(q.faiss_to_array(index))), back, atol=1e-6)
    # inner-product search on the codes scores q . decoded(x)
    queries = RNG.standard_normal((5, 16)).astype(np.float32)
    if spec == "ivfpq:4":  # every cell: the search is then exhaustive over the codes
        import faiss

        faiss.extract_index_ivf(index).nprobe = faiss.extract_index_ivf(index).nlist
    scores, items = index.search(queries, 10)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ back.T, items, axis=1), rtol=1e-4, atol=1e-4)
    # more sub-quantisers, less error
    fine = q.faiss_decode(q.train_faiss(q.parse_method(spec.replace(":4", ":8")), x, seed=1))
    assert float(((fine - x) ** 2).sum(axis=1).mean()) < mse


def test_byte_report() -> None:
    d = 64
    assert q.byte_report(q.parse_method("int8"), 1000, d)["bytes_per_item"] == 66
    assert q.byte_report(q.parse_method("fp16"), 1000, d)["compression_ratio"] == 2.0
    b = q.byte_report(q.parse_method("binary"), 1000, d)
    assert b["index_bytes_per_item"] == 10 and b["bytes_per_item"] == 10 + 66 and b["shared_bytes"] == 256
    pq = q.byte_report(q.parse_method("pq:16"), 1000, d, index=object.__new__(object))
    assert pq["bytes_per_item"] == 16 and pq["compression_ratio"] == 16.0
    assert pq["bytes_per_item_amortised"] == pytest.approx(16 + 16 * 256 * 4 * 4 / 1000, abs=0.01)


def test_binary_rerank_scores_are_exact_on_the_candidates() -> None:
    model = load_run(fitted_run("bpr")).model
    comp = CompressedEmbedding.from_model(model, q.parse_method("binary", rerank=20, rerank_on="fp32"))
    users = np.array([0, 5, 9])
    got, ref = comp.score(users), model.score(users)
    seen = model.seen_items()[users].toarray() > 0
    for row in range(len(users)):
        top = np.argsort(-np.where(seen[row], -np.inf, got[row]))[:20]
        np.testing.assert_allclose(got[row, top], ref[row, top], rtol=1e-5, atol=1e-5)
        rest = np.setdiff1d(np.arange(got.shape[1]), top)
        assert got[row, rest].max() < got[row, top].min()


@pytest.mark.parametrize("method", ["fp16", "int8", "binary", "pq:4x4", "opq:4x4", "ivfpq:4x4"])
def test_compressed_run_round_trips_through_metrics_bundle_and_service(method: str) -> None:
    src = fitted_run("bpr")
    out = workdir() / f"compressed-{method.replace(':', '-')}"
    code, text = run_main(["compress", str(src), "--method", method, "--out", str(out), "--no-progress",
                           "--threads", "1"])
    assert code == 0, text
    metrics = read_json(out / "metrics.json")
    c = metrics["compression"]
    assert c["bytes_per_item"] < c["bytes_per_item_fp32"] or method == "binary"
    assert metrics["test"] and "recall@20" in c["relative_change_test"]
    assert read_json(out / "config.json")["compression"]["method"] == c["method"]
    run = load_run(out)
    assert run.model.name == "compressed" and run.model.config.method == method.split(":")[0]
    np.testing.assert_allclose(run.model.score(np.arange(4)), load_run(out).model.score(np.arange(4)), atol=1e-6)
    bundle_dir = workdir() / f"bundle-compressed-{method.replace(':', '-')}"
    code, text = run_main(["bundle", str(out), "--out", str(bundle_dir), "--overwrite"])
    assert code == 0, text
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest["compression"]["bytes_per_item"] == c["bytes_per_item"]
    assert bundle.manifest["metrics"]["compression"]["method"] == c["method"]
    if method.startswith(("pq", "opq", "ivfpq")):
        assert bundle.kind == "embedding" and bundle.manifest["index"]["kind"] == "codes"
    elif method == "binary":
        assert bundle.kind == "model"
    service = RecService(bundle)
    user = run.users.lookup(3)
    answer = service.recommend_user(user, k=10)
    assert len(answer) == 10
    items, _ = run.model.recommend(3, k=10, exclude=bundle.seen(), exclude_seen=False)
    if not method.startswith("ivfpq"):  # IVF probes a few cells; the rest score every item's codes
        assert [a["item_id"] for a in answer] == list(run.items.lookup(items))


@pytest.mark.parametrize(("args", "flag"), [
    (["--method", "int4"], "--method"),
    (["--method", "pq:7"], "--method"),
    (["--method", "int8", "--rerank", "50"], "--rerank"),
    (["--method", "pq:4", "--nprobe", "3"], "--nprobe"),
    (["--method", "binary", "--rerank", "-1"], "--rerank"),
    (["--method", "binary", "--rerank-on", "fp64"], "--rerank-on"),
])
def test_bad_flags_exit_2_naming_the_flag(args: list[str], flag: str) -> None:
    code, text = run_main(["compress", str(fitted_run("bpr")), *args, "--out", str(workdir() / "bad")])
    assert code == 2 and flag in text, text


def test_a_model_without_embeddings_cannot_be_compressed() -> None:
    code, text = run_main(["compress", str(fitted_run("pop")), "--method", "int8", "--out", str(workdir() / "p")])
    assert code == 2 and "RUN" in text and "embedding" in text, text
