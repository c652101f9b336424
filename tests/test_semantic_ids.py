"""Semantic-ID tokenizers: residual k-means, RQ-VAE, FSQ; collision handling, statistics, LETTER files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import data_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from recembed.cli.main import cli
from recembed.errors import ConfigError, DataError
from recembed.semantic import SemanticIds, combine_vectors, tag_vectors, tokenize
from recembed.semantic.fsq import FSQ, FSQConfig, factor_codebook
from recembed.semantic.rkmeans import ResidualKMeans, RKMeansConfig
from recembed.semantic.rqvae import RQVAE, RQVAEConfig


def planted(n_clusters: int = 8, per: int = 40, dim: int = 16, noise: float = 0.05, seed: int = 0):
    """Vectors = one of ``n_clusters`` well-separated centres + small noise; returns ``(x, labels)``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)) * 2.0
    labels = np.repeat(np.arange(n_clusters), per)
    x = centres[labels] + rng.normal(size=(len(labels), dim)) * noise
    return x.astype(np.float32), labels


def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings (Hubert & Arabie 1985)."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)

    def pairs(v):  # noqa: ANN001, ANN202
        return (v * (v - 1) / 2).sum()

    index, rows, cols, total = pairs(table), pairs(table.sum(1)), pairs(table.sum(0)), pairs(np.array([len(a)]))
    expected = rows * cols / total
    return float((index - expected) / ((rows + cols) / 2 - expected))


SMALL_AE = {"hidden": (64, 32), "epochs": 30, "batch_size": 64}


# ------------------------------------------------------------------------------------------------ RQ-VAE
@pytest.mark.parametrize("ema", [False, True])
def test_rqvae_reconstruction_error_falls(ema: bool) -> None:
    x, _ = planted()
    model = RQVAE(RQVAEConfig(levels=2, codebook=8, latent_dim=8, ema=ema, **SMALL_AE)).fit(x, seed=3)
    recon = [h["recon"] for h in model.history_]
    assert recon[-1] < 0.3 * recon[0], recon
    assert all(len(h["utilisation"]) == 2 and 0 < min(h["utilisation"]) <= 1 for h in model.history_)
    assert model.reconstruction_mse(x) < recon[0]
    codes = model.encode(x)
    assert codes.shape == (len(x), 2) and codes.min() >= 0 and codes.max() < 8


def test_rqvae_restarts_dead_codes_and_is_deterministic() -> None:
    x, _ = planted(n_clusters=4, per=30)
    config = RQVAEConfig(levels=2, codebook=16, latent_dim=4, kmeans_init=False, hidden=(32,), epochs=6,
                         batch_size=40)
    a = RQVAE(config).fit(x, seed=1)
    assert sum(a.history_[0]["restarted"]) > 0  # random codebooks leave codes unused in the first epoch
    assert a.history_[-1]["utilisation"][0] >= a.history_[0]["utilisation"][0]
    b = RQVAE(config).fit(x, seed=1)
    np.testing.assert_array_equal(a.encode(x), b.encode(x))
    none = RQVAE(RQVAEConfig(**{**config.__dict__, "restart_dead": False})).fit(x, seed=1)
    assert all(sum(h["restarted"]) == 0 for h in none.history_)


# ------------------------------------------------------------------------------------------------ k-means
def test_residual_kmeans_recovers_planted_clusters() -> None:
    x, labels = planted(n_clusters=10, per=30, dim=32)
    model = ResidualKMeans(RKMeansConfig(levels=2, codebook=10)).fit(x, seed=0)
    codes = model.encode(x)
    assert adjusted_rand(labels, codes[:, 0]) > 0.99
    for c in range(10):  # every planted cluster sits under one first-level code
        assert len(np.unique(codes[labels == c, 0])) == 1
    residuals = [lv["relative_residual"] for lv in model.info_["levels"]]
    assert residuals[0] < 0.01 and residuals[1] < residuals[0]
    np.testing.assert_array_equal(codes, ResidualKMeans(RKMeansConfig(levels=2, codebook=10)).fit(x, seed=0)
                                  .encode(x))
    assert np.abs(model.decode(codes) - x).mean() < 0.1


def test_kmeans_handles_fewer_points_than_codes_and_balanced_assignment() -> None:
    x, _ = planted(n_clusters=2, per=3, dim=4)
    codes = ResidualKMeans(RKMeansConfig(levels=2, codebook=16)).fit(x, seed=0).encode(x)
    assert codes.shape == (6, 2) and codes.max() < 16
    x, _ = planted(n_clusters=3, per=40, dim=8)
    balanced = ResidualKMeans(RKMeansConfig(levels=1, codebook=6, balanced=True)).fit(x, seed=0).encode(x)
    assert np.bincount(balanced[:, 0], minlength=6).max() <= 20


# ------------------------------------------------------------------------------------------------ FSQ
def test_fsq_codes_in_range_and_round_trip_deterministic() -> None:
    assert factor_codebook(256) == (4, 4) and factor_codebook(9) == (3, 2) and factor_codebook(7) == (7, 1)
    with pytest.raises(ConfigError, match="codebook"):
        FSQConfig(codebook=256, dims_per_level=3)
    x, _ = planted()
    model = FSQ(FSQConfig(levels=3, codebook=16, **SMALL_AE)).fit(x, seed=0)
    codes = model.encode(x)
    assert codes.shape == (len(x), 3) and codes.min() >= 0 and codes.max() < 16
    np.testing.assert_array_equal(codes, model.encode(x))
    np.testing.assert_array_equal(model.decode(codes), model.decode(codes))
    m = model.module_
    all_codes = np.arange(16)[:, None].repeat(3, axis=1)
    import torch

    digits = m.digits_of(torch.from_numpy(all_codes))
    back = (digits.view(16, 3, m.d) * m.radix).sum(-1)
    np.testing.assert_array_equal(back.numpy(), all_codes)  # mixed radix is a bijection
    assert model.history_[-1]["recon"] < model.history_[0]["recon"]


# ------------------------------------------------------------------------------------------------ collisions, stats
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 3), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_deduplicated_makes_every_code_unique(n: int, levels: int, size: int, seed: int) -> None:
    codes = np.random.default_rng(seed).integers(0, size, size=(n, levels))
    ids = SemanticIds(codes, (size,) * levels, "random")
    dedup = ids.deduplicated()
    assert dedup.is_unique() and dedup.num_levels == levels + 1
    np.testing.assert_array_equal(dedup.codes[:, :levels], codes)  # the original codes are kept
    assert dedup.sizes[-1] == ids.group_sizes().max()


def test_stats_match_hand_computed_example() -> None:
    ids = SemanticIds(np.array([[0, 1], [0, 1], [1, 0], [2, 1]]), (4, 2), "hand")
    s = ids.stats()
    assert s["distinct_tuples"] == 3 and s["collision_rate"] == 0.5 and s["max_items_per_tuple"] == 2
    lv0, lv1 = s["per_level"]
    assert (lv0["used"], lv0["utilisation"]) == (3, 0.75) and (lv1["used"], lv1["utilisation"]) == (2, 1.0)
    assert lv0["perplexity"] == pytest.approx(2**1.5)  # p = (1/2, 1/4, 1/4)
    assert lv1["perplexity"] == pytest.approx(np.exp(-(0.25 * np.log(0.25) + 0.75 * np.log(0.75))))


def test_tokenize_dedups_and_records_timings_and_raw_stats() -> None:
    x, _ = planted(n_clusters=4, per=10, dim=8, noise=0.0)  # identical vectors: collisions are certain
    ids = tokenize(x, "rkmeans", 2, 8, seed=0)
    assert ids.is_unique() and ids.num_levels == 3 and ids.method == "rkmeans"
    raw = ids.info["raw_stats"]
    assert raw["collision_rate"] == 1.0 and raw["max_items_per_tuple"] == 10
    assert ids.info["fit_seconds"] >= 0 and ids.info["encode_seconds"] >= 0
    assert ids.info["input_distinct_rows"] == 4
    json.dumps(ids.info)  # saved as JSON
    raw_ids = tokenize(x, "rkmeans", 2, 8, seed=0, dedup=False)
    assert raw_ids.num_levels == 2 and not raw_ids.is_unique()


def test_bad_input_is_a_clear_error() -> None:
    x, _ = planted()
    bad = x.copy()
    bad[5, 2] = np.nan
    with pytest.raises(DataError, match="NaN.*row 5"):
        tokenize(bad, "rkmeans", 2, 8)
    with pytest.raises(DataError, match="2-D"):
        tokenize(x[:, 0], "rkmeans", 2, 8)
    with pytest.raises(DataError, match="empty"):
        tokenize(np.zeros((0, 4)), "rkmeans", 2, 8)
    with pytest.raises(ConfigError, match="unknown tokenizer"):
        tokenize(x, "vq", 2, 8)
    with pytest.raises(ConfigError, match="epochs"):
        tokenize(x, "rqvae", 2, 8, epochs=0)
    with pytest.raises(DataError, match="different numbers of rows"):
        combine_vectors([x, x[:3]])


def test_vector_helpers() -> None:
    x, _ = planted(n_clusters=2, per=5, dim=4)
    both = combine_vectors([x, 10 * x[:, :2]])
    assert both.shape == (10, 6)
    np.testing.assert_allclose(np.linalg.norm(both[:, :4], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(both[:, 4:], axis=1), 1.0, rtol=1e-5)
    tags = np.empty(4, dtype=object)
    tags[:] = [("a", "b"), ("a", "b"), ("c",), ()]
    v = tag_vectors(tags, dim=8)
    assert v.shape == (4, 8) and np.allclose(v[0], v[1]) and not np.allclose(v[0], v[2]) and not v[3].any()


# ------------------------------------------------------------------------------------------------ LETTER file
def test_letter_beauty_file_reads_all_items() -> None:
    from recembed.data import catalog

    dataset = catalog.load("amazon-seq", root=data_dir("amazon-seq").parent)
    path = data_dir("amazon-sid") / "Beauty.letter.index.json"
    ids = SemanticIds.read_index_json(path, dataset.items.ids, id_offset=-1)
    assert (ids.num_items, ids.num_levels) == (12101, 4)
    assert ids.stats()["distinct_tuples"] == 12088
    assert ids.deduplicated().is_unique()


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_tokenize_and_sid_prefix(tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "rk"
    res = runner.invoke(cli, ["tokenize", "--data", "synthetic:tiny", "--vectors", "tags", "--method", "rkmeans",
                              "--levels", "2", "--codebook", "16", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "collision rate" in res.output and "utilisation" in res.output
    ids = SemanticIds.load(out)
    assert ids.num_items == 200 and ids.num_levels == 3 and ids.is_unique()
    res = runner.invoke(cli, ["sid-prefix", str(out), "--item", "i5", "--depth", "1"])
    assert res.exit_code == 0, res.output
    code = ids.codes[5, 0]
    assert f"{len(ids.items_with_prefix([code]))} item(s) with prefix {code}" in res.output
    res = runner.invoke(cli, ["sid-prefix", str(out), "--depth", "1", "--limit", "3"])
    assert res.exit_code == 0 and "most crowded prefixes" in res.output

    # a run directory's item embeddings + a .npy, concatenated, through RQ-VAE
    res = runner.invoke(cli, ["fit", "bpr", "--data", "synthetic:tiny", "--set", "epochs=2", "--out",
                              str(tmp_path / "bpr"), "--no-progress"])
    assert res.exit_code == 0, res.output
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32))
    sources = f"{tmp_path / 'bpr'},{tmp_path / 'v.npy'}"
    res = runner.invoke(cli, ["tokenize", "--data", "synthetic:tiny", "--vectors", sources,
                              "--method", "rqvae", "--levels", "2", "--codebook", "8",
                              "--set", "epochs=3", "--set", "hidden=16", "--set", "latent_dim=4", "--no-progress",
                              "--out", str(tmp_path / "rq")])
    assert res.exit_code == 0, res.output
    ids = SemanticIds.load(tmp_path / "rq")
    assert ids.method == "rqvae" and ids.info["input_dim"] == 64 + 8 and len(ids.info["history"]) == 3


def test_cli_bad_sources(tmp_path) -> None:
    runner = CliRunner()
    base = ["tokenize", "--data", "synthetic:tiny", "--method", "rkmeans", "--out", str(tmp_path / "x")]
    res = runner.invoke(cli, [*base, "--vectors", "no_such_column"])
    assert res.exit_code != 0 and "neither an item-table column" in str(res.exception)
    np.save(tmp_path / "short.npy", np.zeros((3, 4), np.float32))
    res = runner.invoke(cli, [*base, "--vectors", str(tmp_path / "short.npy")])
    assert res.exit_code != 0 and "3 rows but the dataset has 200 items" in str(res.exception)
    res = runner.invoke(cli, [*base, "--vectors", "tags", "--set", "bogus=1"])
    assert res.exit_code != 0 and "bogus" in str(res.exception)
