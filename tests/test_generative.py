"""[Generative] the code trie, constrained beam search and the TIGER-style model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from conftest import data_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sequential import QUIET, SequentialConformance

from recembed.errors import ConfigError, DataError
from recembed.models.generative.tiger import TIGER
from recembed.models.registry import model_class
from recembed.options import FitOptions
from recembed.runs import evaluate_split
from recembed.semantic import SemanticIds
from recembed.semantic.trie import CodeTrie
from recembed.testing.fixtures import planted_sequences


def _random_unique_codes(rng: np.random.Generator, n: int, sizes: tuple[int, ...]) -> np.ndarray:
    codes = np.stack([rng.integers(0, s, n) for s in sizes], axis=1)
    return SemanticIds(codes, sizes).deduplicated().codes


def _table_step(logp: list[np.ndarray]):  # noqa: ANN202
    """A step function whose log-probabilities depend on the prefix (hash of it) — a stand-in model."""

    def step(prefix: torch.Tensor, level: int, parent: torch.Tensor | None = None) -> torch.Tensor:
        weights = torch.tensor([7, 13, 17, 19, 23][: prefix.shape[2]], dtype=torch.long)
        key = (prefix * weights).sum(-1) % logp[level].shape[0]
        return torch.from_numpy(logp[level])[key]

    return step


# -- the trie and beam search ------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.lists(st.integers(2, 6), min_size=1, max_size=3), st.integers(1, 12),
       st.integers(0, 10_000))
def test_every_beam_is_a_real_distinct_item(n: int, sizes: list[int], beam: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = _random_unique_codes(rng, n, tuple(sizes))
    trie = CodeTrie(codes)
    sizes_all = [int(codes[:, lv].max()) + 1 for lv in range(codes.shape[1])]
    logp = [np.log(rng.dirichlet(np.ones(k), size=50)).astype(np.float32) for k in sizes_all]
    items, scores = trie.beam_search(_table_step(logp), 3, beam)
    assert items.shape == (3, beam)
    for row, srow in zip(items.numpy(), scores.numpy()):
        real = row[row >= 0]
        assert len(real) == min(beam, n)
        assert len(set(real.tolist())) == len(real)
        assert np.all(np.isfinite(srow[: len(real)])) and np.all(np.diff(srow[: len(real)]) <= 1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(0, 10_000))
def test_full_beam_is_exact(n: int, seed: int) -> None:
    """With a beam as wide as the catalog nothing is pruned: scores are each item's summed log-probability."""
    rng = np.random.default_rng(seed)
    codes = _random_unique_codes(rng, n, (4, 3))
    trie = CodeTrie(codes)
    sizes_all = [int(codes[:, lv].max()) + 1 for lv in range(codes.shape[1])]
    logp = [np.log(rng.dirichlet(np.ones(k), size=50)).astype(np.float32) for k in sizes_all]
    step = _table_step(logp)
    items, scores = trie.beam_search(step, 1, n)
    expected = np.zeros(n)
    for lv in range(codes.shape[1]):
        prefix = torch.from_numpy(codes[None, :, :lv])
        expected += step(prefix, lv)[0].numpy()[np.arange(n), codes[:, lv]]
    got = np.full(n, np.nan)
    got[items[0].numpy()] = scores[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_trie_refuses_collisions() -> None:
    with pytest.raises(DataError, match="not unique"):
        CodeTrie(np.array([[0, 1], [0, 1], [1, 0]]))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.sampled_from(["item", "code"]))
def test_random_model_decodes_real_items(seed: int, length: int, encoder_tokens: str) -> None:
    """An untrained model over random codes, random histories: every beam is a real item."""
    ds = planted_sequences(num_users=30)
    model = TIGER(**OLD_ARCH, levels=2, codebook=8, embedding_dim=16, num_heads=2, epochs=1, beam_size=7,
                  encoder_tokens=encoder_tokens)
    model.fit(ds.interactions, options=QUIET)
    rng = np.random.default_rng(seed)
    tokens = np.zeros((4, model.config.max_len), np.int64)
    tokens[:, -length:] = rng.integers(1, model.num_items_ + 1, (4, length))
    with torch.no_grad():
        items, scores, first = model.decode_top(model.module_, tokens)
    assert ((items >= 0) & (items < model.num_items_)).all()
    assert all(len(set(r)) == len(r) for r in items.tolist())
    assert first.shape == (4, model.semantic_ids_.sizes[0])
    # the incremental decoder (cached block inputs, reordered with the beams) equals decoding every prefix anew
    tok = torch.from_numpy(tokens)
    with torch.no_grad():
        memory = model.module_.encode(tok)
        full = model.trie_.beam_search(lambda p, lv, parent: model.module_.step_logprobs(memory, tok, p, lv), 4, 7)
    np.testing.assert_array_equal(full[0].numpy(), items)
    np.testing.assert_allclose(full[1].numpy(), scores, rtol=1e-4, atol=1e-5)


# -- semantic IDs at fit time -----------------------------------------------------------------------
def _planted_sid_dir() -> str:
    """Codes that carry the planted structure: (group, position in group)."""
    ds = planted_sequences()
    idx = np.array([int(i[1:]) for i in ds.items.ids])
    folder = tempfile.mkdtemp(prefix="planted-sid-")
    SemanticIds(np.stack([idx // 10, idx % 10], axis=1), (16, 10), "planted").save(folder)
    return folder


PLANTED_SID = _planted_sid_dir()
#: the small, fast architecture the unit tests below were written for (the defaults are the paper's 4 + 4 blocks on a
#: cosine schedule, with codes derived from the data at fit time)
OLD_ARCH: dict[str, Any] = {"semantic_ids": "random", "num_layers": 2, "decoder_layers": 2, "lr_schedule": "constant"}
TIGER_FAST: dict[str, Any] = {**OLD_ARCH, "levels": 2, "codebook": 16, "embedding_dim": 32, "patience": 0,
                              "learning_rate": 5e-3, "batch_size": 64, "beam_size": 10, "min_steps": 0}


class TestTIGER(SequentialConformance):
    model_name = "tiger"
    params: ClassVar[dict[str, Any]] = {**TIGER_FAST, "epochs": 10, "semantic_ids": PLANTED_SID}

    def test_history_scores_match_known_users(self, fitted) -> None:  # noqa: ANN001
        # beam search is exact only inside the beam: compare the decoded top lists, not all scores
        model, split = fitted
        users = np.array([0, 5, 9])
        seqs = model.sequences_
        lists = [seqs.items[seqs.indptr[u]:seqs.indptr[u + 1]].tolist() for u in users]
        a, b = model.score_histories(lists), model.score(users)
        k = model.config.beam_size
        np.testing.assert_array_equal(np.argsort(-a, axis=1)[:, :k], np.argsort(-b, axis=1)[:, :k])

    def test_content_codes_beat_random_codes(self, fitted) -> None:  # noqa: ANN001
        """TIGER's ablation in miniature: codes that group related items learn the planted order; random
        codes of the same shape, trained the same way, do not."""
        model, split = fitted
        rand = model_class("tiger")(**{**self.params, "semantic_ids": "random"})
        rand.fit(split.train, options=QUIET, valid=split.valid)
        ours, base = self._ndcg(model, split), self._ndcg(rand, split)
        assert ours > 3 * base, (ours, base)


    def test_beam_size_changes_after_fitting(self, fitted) -> None:  # noqa: ANN001
        """beam_size is an inference-time key: a wider beam keeps the narrow beam's best item on top and
        ranks more items exactly; keys that shape the model cannot change after fitting."""
        model, split = fitted
        tokens = np.zeros((3, model.config.max_len), np.int64)
        tokens[:, -4:] = np.arange(1, 13).reshape(3, 4)
        with torch.no_grad():
            narrow = model.decode_top(model.module_, tokens)[0]
            model.with_inference(beam_size=15)
            try:
                wide = model.decode_top(model.module_, tokens)[0]
            finally:
                model.with_inference(beam_size=self.params["beam_size"])
        assert narrow.shape == (3, 10) and wide.shape == (3, 15)
        assert ((wide >= 0) & (wide < model.num_items_)).all()
        with pytest.raises(ConfigError, match="embedding_dim"):
            model.with_inference(embedding_dim=64)
        assert model.config.beam_size == self.params["beam_size"]


class TestTIGERCodeTokens(TestTIGER):
    """The paper's encoder input: one token per code of every history item."""

    params: ClassVar[dict[str, Any]] = {**TestTIGER.params, "encoder_tokens": "code"}


class TestTIGERCausal(TestTIGER):
    """The causal encoder (the default until 2026-11-27): one pass trains every position of a window."""

    params: ClassVar[dict[str, Any]] = {**TestTIGER.params, "encoder": "causal"}


def test_semantic_ids_must_match_the_catalog(tmp_path: Path) -> None:
    split = planted_sequences().given_split
    SemanticIds(np.zeros((5, 2), np.int64), (2, 2)).save(tmp_path / "small")
    with pytest.raises(ConfigError, match="codes for 5 items"):
        TIGER(semantic_ids=str(tmp_path / "small"), epochs=1).fit(split.train, options=QUIET)
    with pytest.raises(ConfigError, match="semantic_ids"):
        TIGER(semantic_ids=str(tmp_path / "missing"), epochs=1).fit(split.train, options=QUIET)


def _purity(codes: np.ndarray, groups: np.ndarray) -> float:
    """Share of items whose first code is the most common first code of their group."""
    hits = sum(np.bincount(codes[groups == g, 0]).max() for g in np.unique(groups))
    return hits / len(groups)


def test_derived_semantic_ids_from_content_carry_the_groups() -> None:
    """The default ``semantic_ids=auto`` makes codes at fit time; with an item table that has vector columns they
    come from its content (RQ-VAE), so items of one planted group share their first code."""
    ds = planted_sequences()
    split = ds.given_split
    params = {**TIGER_FAST, "epochs": 1, "num_layers": 1, "decoder_layers": 1, "semantic_ids": "auto"}
    assert TIGER().config.semantic_ids == "auto"
    model = TIGER(**params).fit(split.train, options=QUIET, item_table=ds.item_table)
    sid = model.semantic_ids_
    assert sid.info["derived"]["source"] == "content" and sid.is_unique()
    assert sid.codes.shape[1] == 3  # 2 levels + the collision level
    assert _purity(sid.codes, ds.extras["item_group"]) > 0.8, _purity(sid.codes, ds.extras["item_group"])
    # with no item content, auto falls back to a BPR model's item embeddings
    cf = TIGER(**params).fit(split.train, options=QUIET, valid=split.valid)
    assert cf.semantic_ids_.info["derived"]["source"] == "cf" and cf.semantic_ids_.is_unique()
    with pytest.raises(ConfigError, match="'content' needs an item table with vector columns"):
        TIGER(**{**params, "semantic_ids": "content"}).fit(split.train, options=QUIET)


def test_cf_plus_tags_codes_carry_the_groups_without_vectors() -> None:
    """``cf+tags``: BPR's item embeddings beside the multi-hot of the item table's tags, so items that share a
    planted attribute share their first code (``auto`` keeps ``cf`` for a table without vectors)."""
    from recembed.data.tables import Table

    ds = planted_sequences()
    split = ds.given_split
    groups = ds.extras["item_group"]
    table = Table(ds.num_items)
    table.add("brand", np.array([f"b{g}" for g in groups], dtype=object), "categorical")
    tags = np.empty(len(groups), dtype=object)
    tags[:] = [(f"a{g}", "common") for g in groups]
    table.add("attributes", tags, "tags")
    params = {**TIGER_FAST, "epochs": 1, "num_layers": 1, "decoder_layers": 1, "semantic_ids": "cf+tags"}
    model = TIGER(**params).fit(split.train, options=QUIET, item_table=table)
    sid = model.semantic_ids_
    assert sid.info["derived"]["source"] == "cf+tags" and sid.is_unique()
    assert sid.info["derived"]["columns"] == ["bpr", "attributes", "brand"]
    assert _purity(sid.codes, groups) > 0.8, _purity(sid.codes, groups)
    with pytest.raises(ConfigError, match="'cf\\+tags' needs an item table with tags or categorical"):
        TIGER(**params).fit(split.train, options=QUIET)
    auto = TIGER(**{**params, "semantic_ids": "auto"}).fit(split.train, options=QUIET, item_table=table)
    assert auto.semantic_ids_.info["derived"]["source"] == "cf"


def test_derived_codes_are_kept_beside_the_checkpoints(tmp_path: Path) -> None:
    """A resumed fit reuses the codes the first fit derived (a BPR refit need not give the same ones)."""
    ds = planted_sequences(num_users=120)
    split = ds.given_split
    params = {**TIGER_FAST, "epochs": 1, "num_layers": 1, "decoder_layers": 1, "semantic_ids": "content"}
    ckpt = tmp_path / "ckpt"
    first = TIGER(**params).fit(split.train, options=FitOptions(show_progress=False, checkpoint_dir=str(ckpt)),
                                item_table=ds.item_table)
    kept = SemanticIds.load(ckpt / "semantic_ids")
    np.testing.assert_array_equal(kept.codes, first.semantic_ids_.codes)
    SemanticIds(kept.codes[::-1].copy(), kept.sizes, "marked").save(ckpt / "semantic_ids")  # tell them apart
    resumed = TIGER(**{**params, "epochs": 2}).fit(
        split.train, options=FitOptions(show_progress=False, checkpoint_dir=str(ckpt), resume=True),
        item_table=ds.item_table)
    np.testing.assert_array_equal(resumed.semantic_ids_.codes, kept.codes[::-1])
    assert [h["epoch"] for h in resumed.history_][-1] == 2


def test_letter_codes_for_amazon_seq() -> None:
    """LETTER's Beauty codes cover S3-Rec's Beauty items (LETTER numbers from 0, Beauty.txt from 1)."""
    from recembed.data import catalog

    path = data_dir("amazon-sid") / "Beauty.letter.index.json"
    ds = catalog.load("amazon-seq", data_dir("amazon-seq").parent)
    sid = SemanticIds.read_index_json(path, ds.items.ids, id_offset=-1)
    assert sid.codes.shape == (12101, 4) and sid.stats()["distinct_tuples"] == 12088
    trie = CodeTrie(sid.deduplicated().codes)
    assert trie.num_items == 12101


@pytest.mark.parametrize("use_id", [True, False])
def test_semantic_item_inputs_are_rows_of_the_output_table(use_id: bool) -> None:
    from recembed.models.generative._sidemb import SemanticItemTable

    rng = np.random.default_rng(0)
    codes = np.stack([rng.integers(0, 8, 50), rng.integers(0, 8, 50), np.arange(50) % 3], axis=1)
    table = SemanticItemTable(codes, 16, "prefix", use_id)
    tokens = torch.from_numpy(rng.integers(0, 51, (4, 7)))
    rows = table.table()
    want = torch.cat([rows.new_zeros(1, 16), rows])[tokens]
    torch.testing.assert_close(table.emb(tokens), want, rtol=0, atol=0)


def test_sasrec_with_semantic_id_features(tmp_path: Path) -> None:
    """Semantic-ID n-gram embeddings (Singh et al.) share parameters among related items: with codes that
    carry the planted groups, SASRec learns the order in far fewer epochs than with ID embeddings alone, with
    the codes next to IDs and in place of them; the model saves and loads with its codes."""
    split = planted_sequences().given_split
    fast = {"patience": 0, "learning_rate": 5e-3, "batch_size": 64, "min_steps": 0, "embedding_dim": 32,
            "max_len": 20, "epochs": 4}

    def ndcg(**kw: Any) -> float:
        model = model_class("sasrec")(**fast, **kw).fit(split.train, options=QUIET)
        return model, evaluate_split(model, split, "test", ks=(10,)).summary["ndcg@10"]

    _, plain = ndcg()
    model, with_ids = ndcg(semantic_ids=PLANTED_SID)
    _, instead = ndcg(semantic_ids=PLANTED_SID, sid_use_id=False)
    assert with_ids > 2 * plain and instead > 2 * plain, (plain, with_ids, instead)
    assert model.module_.items.rows.shape == (model.num_items_, 2)
    loaded = type(model).load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.score(np.arange(4)), model.score(np.arange(4)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("encoder_tokens", ["item", "code"])
def test_encoder_states_do_not_see_later_items(encoder_tokens: str) -> None:
    """The causal encoder reads the state after every position in one pass: changing item t must leave the
    states of items before t unchanged (per-code tokens included)."""
    ds = planted_sequences(num_users=30)
    model = TIGER(**OLD_ARCH, levels=2, codebook=8, embedding_dim=16, num_heads=2, epochs=1,
                  encoder_tokens=encoder_tokens,
                  encoder="causal")
    model.fit(ds.interactions, options=QUIET)
    module = model.module_.eval()
    tokens = torch.randint(1, model.num_items_ + 1, (3, model.config.max_len))
    changed = tokens.clone()
    changed[:, 12] = (changed[:, 12] % model.num_items_) + 1
    with torch.no_grad():
        a, b = module.encode(tokens), module.encode(changed)
    group = module.group
    torch.testing.assert_close(a[:, : 12 * group], b[:, : 12 * group])
    assert not torch.allclose(a[:, 12 * group :], b[:, 12 * group :])
    # the paper's bidirectional encoder: earlier states do read later items
    bi = TIGER(**OLD_ARCH, levels=2, codebook=8, embedding_dim=16, num_heads=2, epochs=1,
               encoder_tokens=encoder_tokens)
    bi.fit(ds.interactions, options=QUIET)
    with torch.no_grad():
        a, b = bi.module_.eval().encode(tokens), bi.module_.encode(changed)
    assert not torch.allclose(a[:, : 12 * group], b[:, : 12 * group])


def test_saves_from_before_the_encoder_key_load_causal(tmp_path: Path) -> None:
    """``encoder`` defaulted to causal before it became the paper's bidirectional one: a model.json or a
    checkpoint that does not name it was made causal and must load (and resume) as causal, not silently
    change encoder."""
    import json

    split = planted_sequences(num_users=30).given_split
    small = {**OLD_ARCH, "levels": 2, "codebook": 8, "embedding_dim": 16, "num_heads": 2, "epochs": 1,
             "encoder": "causal"}
    model = TIGER(**small)
    model.fit(split.train, options=QUIET)
    meta_path = model.save(tmp_path / "m") / "model.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["encoder"]
    meta_path.write_text(json.dumps(meta))
    loaded = TIGER.load(tmp_path / "m")
    assert loaded.config.encoder == "causal"
    np.testing.assert_allclose(loaded.score(np.arange(4)), model.score(np.arange(4)), rtol=1e-5, atol=1e-5)
    assert TIGER().config.encoder == "bidirectional"

    ckpt = tmp_path / "ckpt"
    TIGER(**small).fit(split.train, options=FitOptions(show_progress=False, checkpoint_dir=str(ckpt)))
    meta_path = ckpt / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["encoder"]
    meta_path.write_text(json.dumps(meta))
    resume = FitOptions(show_progress=False, checkpoint_dir=str(ckpt), resume=True)
    with pytest.raises(DataError, match="encoder"):  # today's default is not what the checkpoint trained
        TIGER(**{k: v for k, v in small.items() if k not in ("encoder", "epochs")}, epochs=2).fit(split.train,
                                                                                             options=resume)
    resumed = TIGER(**{**small, "epochs": 2})
    resumed.fit(split.train, options=resume)  # causal, as saved: compatible
    assert [h["epoch"] for h in resumed.history_] == [1, 2]
