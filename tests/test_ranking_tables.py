"""Embedding tables for huge vocabularies (``embedding_table``: field / hash:N / unified:N:k) and the semantic-ID
n-gram fields of the ranking stage."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from recembed.errors import ConfigError, DataError
from recembed.models.ranking._layers import FieldEmbedding, FieldLinear
from recembed.models.ranking._tables import (
    HashedEmbedding,
    TableSpec,
    UnifiedEmbedding,
    embedding_tables,
    table_parameters,
)
from recembed.models.ranking.base import Ranker
from recembed.models.ranking.deepfm import DeepFM
from recembed.options import FitOptions
from recembed.ranking.features import add_semantic_id_fields, load_item_codes, semantic_id_tokens
from recembed.ranking.metrics import ctr_metrics
from recembed.ranking.schema import OOV, PAD
from recembed.testing.ctr_tables_fixture import planted_ctr, planted_item_codes

SPECS = ["field", "hash:16", "hash:1000", "unified:48", "unified:48:4"]
OPTIONS = FitOptions(seed=0, threads=1, show_progress=False)


@pytest.fixture(scope="module")
def data():  # noqa: ANN201
    return planted_ctr()


@pytest.fixture(scope="module")
def schema(data):  # noqa: ANN001, ANN201
    return data.schema()


def cardinalities(schema) -> dict[str, int]:  # noqa: ANN001
    return {v: schema.cardinality(v) for v in ("user_id", "item_id", "cate")}  # hist_items shares item_id's


def test_spec_parsing_and_errors() -> None:
    assert TableSpec.parse("unified:100") == TableSpec("unified", 100, 1)
    assert str(TableSpec.parse("UNIFIED:100:4")) == "unified:100:4" and str(TableSpec.parse("hash:7")) == "hash:7"
    for bad in ("hash", "hash:0", "hash:x", "unified:10:0", "unified:1:2:3", "field:3", "tt:4"):
        with pytest.raises(ConfigError, match="embedding_table"):
            TableSpec.parse(bad)
    with pytest.raises(ConfigError, match="chunks must divide embedding_dim"):
        DeepFM(embedding_table="unified:100:3", embedding_dim=16)
    assert DeepFM().config.embedding_table == "field"


@pytest.mark.parametrize("spec", SPECS)
def test_padding_embeds_to_zero_in_every_mode(schema, spec: str) -> None:  # noqa: ANN001
    emb = FieldEmbedding(schema, 8, table=spec)
    for name in ("user_id", "item_id", "cate", "hist_items"):
        idx = torch.tensor([[PAD, OOV, 2, PAD], [PAD, PAD, PAD, PAD]])
        out = emb.lookup(name, idx)
        assert out.shape == (2, 4, 8)
        assert torch.all(out[0, [0, 3]] == 0) and torch.all(out[1] == 0), (spec, name)
        assert out[0, 1].abs().sum() > 0  # a real token is not zero
    # the padding positions send no gradient: a sequence of only padding leaves every weight's gradient zero
    emb.lookup("hist_items", torch.zeros(3, 5, dtype=torch.long)).sum().backward()
    assert all(p.grad is None or torch.all(p.grad == 0) for p in emb.tables.parameters())
    # a sequence pools its non-padding tokens only
    seq = torch.tensor([[2, 3, PAD, PAD]])
    pooled = emb.field_vector("hist_items", {"hist_items": seq})
    assert torch.allclose(pooled, emb.lookup("item_id", torch.tensor([2, 3])).mean(0, keepdim=True))


@pytest.mark.parametrize("spec", SPECS)
def test_parameter_count_equals_the_formula(schema, spec: str) -> None:  # noqa: ANN001
    card = cardinalities(schema)
    emb = FieldEmbedding(schema, 8, table=spec)
    n = sum(p.numel() for p in emb.tables.parameters())
    assert n == table_parameters(spec, card, 8)
    s = TableSpec.parse(spec)
    if s.mode == "field":
        assert n == sum(card.values()) * 8
    elif s.mode == "hash":
        assert n == sum(min(c, s.rows) for c in card.values()) * 8
    else:
        assert n == s.rows * 8 // s.chunks
    with embedding_tables(spec):  # the first-order term (width 1: one chunk) follows the same spec
        linear = FieldLinear(schema)
    assert sum(p.numel() for p in linear.emb.tables.parameters()) == table_parameters(spec, card, 1)


@pytest.mark.parametrize("spec", ["hash:16", "unified:48:2"])
def test_hash_and_unified_read_only_their_n_rows(schema, spec: str) -> None:  # noqa: ANN001
    s = TableSpec.parse(spec)
    emb = FieldEmbedding(schema, 8, table=spec)
    idx = torch.arange(0, 10_000)
    for name, table in emb.tables.items():
        assert table.weight.shape[0] <= s.rows or not isinstance(table, (HashedEmbedding, UnifiedEmbedding))
        if isinstance(table, HashedEmbedding):
            rows = table.rows_of(idx)
            assert table.weight.shape[0] == s.rows and rows.min() >= 0 and rows.max() < s.rows
            assert len(torch.unique(rows)) == s.rows  # a good hash uses every row
        if isinstance(table, UnifiedEmbedding):
            assert name == "unified" and len(emb.tables) == 1
            assert table.weight.shape == (s.rows, 8 // s.chunks)
            for vocab in ("user_id", "item_id", "cate"):
                rows = table.rows_of(vocab, idx)
                assert rows.shape == (10_000, s.chunks) and rows.min() >= 0 and rows.max() < s.rows
    if s.mode == "hash":  # cate (2 + 4 indices) keeps its direct table; the ids are hashed
        assert isinstance(emb.tables["cate"], torch.nn.Embedding)
        assert isinstance(emb.tables["item_id"], HashedEmbedding)


def test_unified_fields_use_different_hashes(schema) -> None:  # noqa: ANN001
    table = UnifiedEmbedding(["user_id", "item_id"], rows=10_007, dim=8, chunks=2)
    idx = torch.arange(2, 2002)
    a, b = table.rows_of("user_id", idx), table.rows_of("item_id", idx)
    assert (a == b).float().mean() < 0.01  # the same index in two fields: different rows
    assert (a[:, 0] == a[:, 1]).float().mean() < 0.01  # and in the two chunks of one field
    again = UnifiedEmbedding(["item_id", "user_id"], rows=10_007, dim=8, chunks=2)
    assert torch.equal(again.rows_of("user_id", idx), a)  # seeded by the name: the same in every process
    # and the looked-up vectors differ although the two fields read the same table
    emb = FieldEmbedding(schema, 8, table="unified:997:2")
    x = torch.arange(2, 40)
    assert not torch.allclose(emb.lookup("user_id", x), emb.lookup("item_id", x))
    # a sequence sharing item_id's vocabulary reads exactly the item's rows
    assert torch.equal(emb.lookup("hist_items", x), emb.lookup("item_id", x))


def test_field_mode_keeps_the_saved_layout(schema) -> None:  # noqa: ANN001
    keys = set(FieldEmbedding(schema, 4).state_dict())
    assert keys == {"tables.user_id.weight", "tables.item_id.weight", "tables.cate.weight"}
    with embedding_tables("unified:32"):  # what Ranker does around _module
        inside = FieldEmbedding(schema, 4)
    assert inside.table_spec == TableSpec("unified", 32, 1) and FieldEmbedding(schema, 4).table_spec.mode == "field"


def test_unified_deepfm_still_learns_the_planted_cross(data, schema, tmp_path) -> None:  # noqa: ANN001
    spec = "unified:64:2"  # 64 rows shared by ~150 indices of three vocabularies
    model = DeepFM(embedding_table=spec, embedding_dim=8, hidden_units=(16,), epochs=8, patience=5,
                   learning_rate=0.01, batch_size=256)
    model.fit(data.train, schema=schema, valid=data.valid, options=OPTIONS)
    auc = model.evaluate(data.test)["auc"]
    assert auc > 0.8, auc
    card = cardinalities(schema)
    assert model.num_embedding_parameters() == table_parameters(spec, card, 8) + table_parameters(spec, card, 1)
    assert model.num_embedding_parameters() == 64 * 4 + 64 * 1
    loaded = Ranker.load(model.save(tmp_path / "m"))  # the hashes are rebuilt from the names, not saved
    assert loaded.config.embedding_table == spec
    np.testing.assert_allclose(loaded.predict(data.test), model.predict(data.test), rtol=1e-6)


def test_semantic_id_tokens() -> None:
    codes = np.array([[1, 2, 3], [1, 4, 5]])
    got = {name: list(tok) for name, tok in semantic_id_tokens(codes, "prefix")}
    assert got == {"sidp1": ["1", "1"], "sidp2": ["1-2", "1-4"], "sidp3": ["1-2-3", "1-4-5"]}
    assert [n for n, _ in semantic_id_tokens(codes, "unigram")] == ["sidu1", "sidu2", "sidu3"]
    assert [list(t) for _, t in semantic_id_tokens(codes, "bigram")] == [["1-2", "1-4"], ["2-3", "4-5"]]
    with pytest.raises(ConfigError, match="sid_ngram"):
        semantic_id_tokens(codes, "trigram")


def test_semantic_id_fields_map_items_to_codes_and_unknown_items_to_oov(data) -> None:  # noqa: ANN001
    sid, item_ids = planted_item_codes()  # items i0..i7 have no code
    out = add_semantic_id_fields(data, sid, item_ids, ngram="prefix")
    new = [f.name for f in out.fields][len(data.fields):]
    assert new == ["item_id_sidp1", "hist_items_sidp1", "item_id_sidp2", "hist_items_sidp2", "item_id_sidp3",
                   "hist_items_sidp3"]
    assert out.schema().field("hist_items_sidp2").vocab_from == "item_id_sidp2"
    items = out.test.columns["item_id"]
    for row, item in enumerate(items[:50]):
        i = int(item[1:])
        want = [str(i % 4), f"{i % 4}-{(i // 4) % 5}", f"{i % 4}-{(i // 4) % 5}-{i // 20}"] if i >= 8 else [None] * 3
        assert [out.test.columns[f"item_id_sidp{lv}"][row] for lv in (1, 2, 3)] == want
    hist = out.train.columns["hist_items"]
    sh = out.train.columns["hist_items_sidp1"]
    assert np.array_equal(sh.offsets, hist.offsets)
    assert all((s is None) == (int(h[1:]) < 8) and (s is None or s == str(int(h[1:]) % 4))
               for h, s in zip(hist.values, sh.values))
    enc = out.schema().encode(out.test)
    unknown = np.array([int(x[1:]) < 8 for x in items])
    assert unknown.any() and np.all(enc.arrays["item_id_sidp1"][unknown] == OOV)
    assert np.all(enc.arrays["item_id_sidp1"][~unknown] >= 2)
    # unigram: one field per level; levels= keeps the first levels
    uni = add_semantic_id_fields(data, sid, item_ids, ngram="unigram", levels=2, sequences=False)
    assert [f.name for f in uni.fields][len(data.fields):] == ["item_id_sidu1", "item_id_sidu2"]
    with pytest.raises(DataError, match="no categorical field"):
        add_semantic_id_fields(data, sid, item_ids, item_field="nope")


def test_semantic_id_fields_help_a_model_on_unseen_items(data) -> None:  # noqa: ANN001
    """Items never clicked in training still carry their group in the codes: DeepFM ranks them from the codes."""
    sid, item_ids = planted_item_codes(missing=0)
    out = add_semantic_id_fields(data, sid, item_ids, ngram="prefix", levels=1)
    cold = {f"i{x}" for x in range(0, 80, 7)}
    keep = np.array([i not in cold for i in out.train.columns["item_id"]])
    out.train = out.train.take(np.flatnonzero(keep))
    test_rows = np.flatnonzero([i in cold for i in out.test.columns["item_id"]])
    kw = dict(embedding_dim=8, hidden_units=(16,), epochs=20, patience=5, learning_rate=0.01, batch_size=256)
    with_sid = DeepFM(**kw).fit(out.train, schema=out.schema(), valid=out.valid, options=OPTIONS)
    test = out.test.take(test_rows)
    auc = ctr_metrics(test.labels, with_sid.predict(test), test.users)["auc"]
    assert auc > 0.75, auc


def test_load_item_codes_from_a_tokenize_folder_and_an_index_json(data, tmp_path) -> None:  # noqa: ANN001
    sid, item_ids = planted_item_codes()
    folder = sid.save(tmp_path / "sid")
    with pytest.raises(DataError, match="items.parquet"):
        load_item_codes(str(folder), data)
    pq.write_table(pa.table({"item_id": pa.array(list(item_ids), pa.string())}), folder / "items.parquet")
    got, ids = load_item_codes(str(folder), data)
    assert np.array_equal(got.codes, sid.codes) and list(ids) == list(item_ids)
    # a LETTER-style *.index.json keyed by int(id) + offset: needs integer ids, so rename the planted items
    import json

    data_int = planted_ctr(num_items=12, rows=300)
    for frame in (data_int.train, data_int.valid, data_int.test):
        frame.columns["item_id"] = np.asarray([x[1:] for x in frame.columns["item_id"]], dtype=object)
        h = frame.columns["hist_items"]
        h.values = np.asarray([x[1:] for x in h.values], dtype=object)
    path = tmp_path / "x.index.json"
    path.write_text(json.dumps({str(i - 1): [f"<a_{i % 3}>", f"<b_{i}>"] for i in range(12)}))
    got, ids = load_item_codes(str(path), data_int, id_offset=-1)
    assert got.codes[list(ids).index("5")].tolist() == [5 % 3, 5]
    with pytest.raises(ConfigError, match="sid_features"):
        load_item_codes(str(tmp_path / "missing.json"), data)


@pytest.mark.parametrize(("sets", "fragment"), [
    (["sid_ngram=prefix"], "set sid_features=PATH"),
    (["sid_features=/no/such/dir"], "is not a semantic-ID folder"),
    (["sid_features=.", "sid_ngram=trigram"], "sid_ngram: expected one of"),
    (["sid_features=.", "sid_id_offset=x"], "sid_id_offset: expected an integer"),
    (["embedding_table=unified:10:3"], "chunks must divide embedding_dim"),
])
def test_cli_bad_sid_and_table_options_exit_2(sets: list[str], fragment: str, monkeypatch, capsys) -> None:  # noqa: ANN001
    """Checked before any data is read: the CLI's own error handling (``main``) exits 2 with one message."""
    import sys

    from recembed.cli.main import main

    args = ["recembed", "fit", "deepfm", "--data", "ml-100k-ctr", "--out", "unused"]
    for s in sets:
        args += ["--set", s]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    text = " ".join((out.out + out.err).split())
    assert exit_.value.code == 2 and fragment in text and "Traceback" not in text, text
