"""Bundles: round trip for every model family, checksum / version verification, atomic writes, content."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_serve_support import bundle_of, fitted_run, workdir

from recembed.models.registry import model_class
from recembed.serve.bundle import BundleError, load_bundle, verify_bundle, write_bundle
from recembed.serve.service import RecService, ServiceOptions
from recembed.testing.fixtures import planted_item_table, planted_split

FAST = {"epochs": 1, "patience": 0}
FAMILIES = {  # one or more models of each family: history, popularity, VAE, embedding, graph, content, sequential
    "pop": {}, "random": {}, "itemknn": {"k": 20}, "ease": {"l2": 50.0}, "gfcf": {"num_factors": 16},
    "bspm": {"factor_dim": 16},
    "multvae": {**FAST, "hidden_dims": (32,), "latent_dim": 8, "batch_size": 64},
    "mmultvae": {**FAST, "hidden_dims": (32,), "latent_dim": 8, "batch_size": 64},
    "bpr": FAST, "lightgcn": {**FAST, "num_layers": 1}, "directau": FAST,
    "vbpr": FAST, "cease": {"l2": 50.0}, "alpharec": {**FAST, "embedding_dim": 16, "num_negatives": 32},
    "sasrec": FAST, "gru4rec": FAST, "bert4rec": FAST,
    "ensemble": {"members": ("bpr", "ease"), "params": "bpr.epochs=1;bpr.patience=0;l2=50"},
}
CONTENT = {"vbpr", "cease", "alpharec", "mmultvae"}


def _fit(name: str):  # noqa: ANN202
    split = planted_split()
    context = {"item_table": planted_item_table()} if name in CONTENT else {}
    return model_class(name)(**FAMILIES[name]).fit(split.train, **context), split


def _write(model, split, out, **kwargs):  # noqa: ANN001, ANN202
    indptr, items = split.train.histories()
    titles = [f"title {i}" for i in range(split.train.num_items)]
    return write_bundle(out, model=model, users=split.users, items=split.items, history_indptr=indptr,
                        history_items=items, titles=titles, **kwargs)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_bundle_round_trip(name: str, tmp_path) -> None:
    model, split = _fit(name)
    path = _write(model, split, tmp_path / "b")
    bundle = load_bundle(path)
    assert bundle.model.name == name and bundle.items == split.items and bundle.users == split.users
    assert bundle.titles[3] == "title 3"
    users = np.array([0, 7, 42])
    if name != "random":
        np.testing.assert_allclose(bundle.model.score(users), model.score(users), rtol=1e-5, atol=1e-5)
    expected_kind = "embedding" if hasattr(model, "user_embeddings") else "model"
    assert bundle.kind == expected_kind
    # the service (history = the training rows) ranks as the model's own recommend with exclude_seen
    service = RecService(bundle, ServiceOptions(index="exact" if expected_kind == "embedding" else None))
    for u in users:
        got = service.recommend_user(split.users.lookup(int(u)), k=10)
        if name == "random":
            assert len(got) == 10
            continue
        ref_items, ref_scores = model.recommend(int(u), k=10)
        np.testing.assert_allclose([g["score"] for g in got], ref_scores, rtol=1e-4, atol=1e-4)
        if len(np.unique(ref_scores)) == len(ref_scores):  # no ties: same items in the same order
            assert [g["item_id"] for g in got] == list(split.items.lookup(ref_items))
        seen = set(split.items.lookup(split.train.csr()[int(u)].indices))
        assert not seen & {g["item_id"] for g in got}


def test_embedding_bundle_stores_a_faiss_index(tmp_path) -> None:
    model, split = _fit("bpr")
    path = _write(model, split, tmp_path / "b", index="hnsw", index_params={"m": 16})
    manifest = verify_bundle(path)
    assert manifest["index"]["kind"] == "hnsw" and manifest["index"]["params"]["m"] == 16
    assert (path / manifest["index"]["file"]).is_file()
    assert RecService(load_bundle(path)).index_kind == "hnsw"
    with pytest.raises(BundleError, match="no user/item vectors"):
        _write(*_fit("ease"), tmp_path / "e", index="hnsw")


def test_manifest_contents_of_a_run_bundle() -> None:
    manifest = verify_bundle(bundle_of("alpharec"))
    assert manifest["format"] == "recembed-bundle" and manifest["format_version"] == 1
    assert manifest["model"]["name"] == "alpharec" and manifest["model"]["config"]["embedding_dim"] == 32
    assert manifest["vocabularies"]["items"]["size"] == 200 and len(manifest["vocabularies"]["users"]["sha256"]) == 64
    assert 0 <= manifest["metrics"]["test"]["ndcg@10"] <= 1
    assert {"recembed", "numpy", "safetensors", "pyarrow"} <= set(manifest["libraries"])
    files = manifest["files"]
    assert {"model/model.safetensors", "embeddings.safetensors", "users.parquet", "items.parquet",
            "history.safetensors", "content/head.safetensors"} <= set(files)
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in files.values())
    assert manifest["content"]["encoder"] == "tfidf" and manifest["content"]["text_columns"] == ["title"]


def test_no_pickle_anywhere_in_the_serving_code() -> None:
    from pathlib import Path

    import recembed.serve as serve

    for path in Path(serve.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "pickle" not in text.replace("no pickle", "").replace("Nothing is pickled", "").replace(
            "never pickle", ""), path
        assert "torch.load" not in text, path


# --------------------------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------------------------
@pytest.fixture()
def bundle_copy(tmp_path):
    path = tmp_path / "bundle"
    shutil.copytree(bundle_of("bpr"), path)
    return path


def _flip_byte(path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_weights_are_refused(bundle_copy) -> None:
    _flip_byte(bundle_copy / "embeddings.safetensors")
    with pytest.raises(BundleError, match="checksum mismatch.*refusing"):
        load_bundle(bundle_copy)


def test_corrupted_model_file_is_refused(bundle_copy) -> None:
    target = bundle_copy / "model" / "model.safetensors"
    target.write_bytes(target.read_bytes()[:-100])  # truncated
    with pytest.raises(BundleError, match="model.safetensors"):
        load_bundle(bundle_copy)


def test_missing_extra_and_escaping_files_are_refused(bundle_copy) -> None:
    (bundle_copy / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleError, match="not listed in the manifest"):
        verify_bundle(bundle_copy)
    (bundle_copy / "extra.bin").unlink()
    (bundle_copy / "items.parquet").unlink()
    with pytest.raises(BundleError, match="missing file"):
        verify_bundle(bundle_copy)


@pytest.mark.parametrize("edit, message", [
    ({"format_version": 99}, "unsupported bundle format version 99"),
    ({"format": "something-else"}, "not a recembed-bundle manifest"),
    ({"files": {}}, "lists no files"),
])
def test_manifest_format_and_version_are_checked(bundle_copy, edit, message) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    (bundle_copy / "manifest.json").write_text(json.dumps({**manifest, **edit}))
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


def test_unreadable_manifest_is_refused(bundle_copy) -> None:
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)


def test_serve_refuses_a_tampered_bundle_before_listening(bundle_copy) -> None:
    _flip_byte(bundle_copy / "users.parquet", 20)
    res = subprocess.run([sys.executable, "-m", "recembed.cli", "serve", str(bundle_copy), "--port", "1"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "500"})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    out = res.stdout + res.stderr
    assert "checksum mismatch" in out and "users.parquet" in out, out
    assert "serving" not in res.stdout


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------
def test_write_is_atomic_and_does_not_overwrite_by_default(tmp_path, monkeypatch) -> None:
    model, split = _fit("ease")
    path = _write(model, split, tmp_path / "b")
    before = (path / "manifest.json").read_text()
    with pytest.raises(BundleError, match="already exists"):
        _write(model, split, tmp_path / "b")
    assert (path / "manifest.json").read_text() == before

    import recembed.serve.bundle as bundle_module

    def boom(*args, **kwargs) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(bundle_module, "_finish", boom)  # fail after every file but the manifest
    with pytest.raises(RuntimeError, match="disk full"):
        _write(model, split, tmp_path / "c")
    assert not (tmp_path / "c").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary directory left behind
    monkeypatch.undo()
    _write(model, split, tmp_path / "b", overwrite=True)
    verify_bundle(tmp_path / "b")


# --------------------------------------------------------------------------------------------
# content: the bundled encoder and head reproduce the model
# --------------------------------------------------------------------------------------------
def test_bundled_text_encoder_reproduces_the_runs_content_vectors() -> None:
    bundle = load_bundle(bundle_of("alpharec"))
    content = bundle.content
    assert content is not None and content.text_columns == ["title"]
    for i in (0, 17, 123):
        row = content.encode({"title": bundle.titles[i]})
        np.testing.assert_allclose(row, bundle.model.content_[i], atol=1e-5)


def test_alpharec_head_reproduces_cold_item_vectors() -> None:
    from recembed.data.splits import cold_items_split
    from recembed.serve.content import AlphaRecItemHead
    from recembed.testing.fixtures import planted_dataset

    ds = planted_dataset()
    split = cold_items_split(ds.interactions, ds.users, ds.items, 0.2, seed=3)
    model = model_class("alpharec")(**FAMILIES["alpharec"]).fit(split.train, item_table=planted_item_table())
    cold = np.flatnonzero(split.train.item_counts() == 0)
    head = AlphaRecItemHead(model, AlphaRecItemHead.state(model)["graph_part"])
    np.testing.assert_allclose(head.embed(model.content_[cold]), model.item_factors_[cold], atol=1e-5)


def test_run_without_text_gets_no_content_encoder() -> None:
    from recembed.serve.bundle import bundle_from_run

    _, notes = bundle_from_run(fitted_run("bpr"), workdir() / "bpr-notes", overwrite=True)
    assert notes == []  # BPR has no content head: nothing to say
    manifest = verify_bundle(workdir() / "bpr-notes")
    assert manifest["content"] is None and manifest["serving"]["kind"] == "embedding"
