"""Multimodal Mult-VAE: conformance, the smoothed item weights against their formula, the baked export,
cold items ranked from content, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recembed.data.splits import cold_items_split
from recembed.errors import ConfigError
from recembed.models.registry import model_class
from recembed.options import FitOptions
from recembed.testing.conformance import ContentConformance
from recembed.testing.fixtures import cold_only_ndcg, planted_dataset, planted_item_table, planted_split

PARAMS = {"epochs": 20, "hidden_dims": (64,), "latent_dim": 16, "batch_size": 32, "learning_rate": 3e-3,
          "patience": 0}
QUIET = FitOptions(show_progress=False, seed=3)


class TestMMultVAE(ContentConformance):
    model_name = "mmultvae"
    params = PARAMS


@pytest.mark.parametrize(("encoder_graph", "content_decoder"), [(True, False), (False, False), (True, True)])
def test_item_blocks_follow_the_formula_and_bake_into_a_plain_vae(encoder_graph, content_decoder) -> None:
    split = planted_split()
    model = model_class("mmultvae")(**PARAMS, n_layers=2, graph_weight=0.5, encoder_graph=encoder_graph,
                                    content_decoder=content_decoder)
    table = planted_item_table()
    model._context = {"item_table": table}
    module, _ = model._build(split.train.csr("binary"), QUIET)
    module.eval()
    s = module.item_graph.toarray()
    with torch.no_grad():
        first, last = module.encoder[0], module.decoder[-1]
        rows = np.concatenate([last.weight.numpy(), last.bias.numpy()[:, None]], axis=1)
        if content_decoder:
            torch.nn.init.normal_(module.content_proj.weight)
            f = np.asarray(table["content"], dtype=np.float32)
            f = f / np.linalg.norm(f, axis=1, keepdims=True)
            rows = rows + f @ module.content_proj.weight.numpy().T
        enc_w, _, dec_w, dec_b = module.item_blocks()
        smooth = np.eye(len(s)) + 0.5 * s @ s
        expect_enc = smooth @ first.weight.T.numpy() if encoder_graph else first.weight.T.numpy()
        np.testing.assert_allclose(enc_w.T.numpy(), expect_enc, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(dec_w.numpy(), (smooth @ rows)[:, :-1], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(dec_b.numpy(), (smooth @ rows)[:, -1], rtol=1e-4, atol=1e-5)
        x = torch.from_numpy(split.train.csr("binary")[:40].toarray().astype(np.float32))
        plain = module.baked()
        torch.testing.assert_close(plain(x)[0], module(x)[0], rtol=1e-4, atol=1e-4)
        assert type(plain).__name__ == "MultVAEModule"


def test_zero_graph_weight_is_plain_multvae() -> None:
    split = planted_split()
    ours = model_class("mmultvae")(**{**PARAMS, "epochs": 3}, graph_weight=0.0)
    ours.fit(split.train, item_table=planted_item_table(), options=QUIET)
    # the same annealing as MMultVAE's default (it kept the paper's 200,000 steps when Mult-VAE's became 200)
    plain = model_class("multvae")(**{**PARAMS, "epochs": 3}, total_anneal_steps=ours.config.total_anneal_steps)
    plain.fit(split.train, options=QUIET)
    users = np.arange(split.train.num_users)
    np.testing.assert_allclose(ours.score(users), plain.score(users), rtol=1e-4, atol=1e-4)


def test_ranks_cold_items_from_content_where_multvae_cannot() -> None:
    ds = planted_dataset()
    split = cold_items_split(ds.interactions, ds.users, ds.items, 0.2, seed=3)
    cold = np.flatnonzero(np.asarray(split.train.csr().sum(axis=0)).ravel() == 0)
    assert len(cold) > 20
    ours = model_class("mmultvae")(**PARAMS).fit(split.train, item_table=planted_item_table(), options=QUIET)
    plain = model_class("multvae")(**PARAMS, total_anneal_steps=ours.config.total_anneal_steps)
    plain.fit(split.train, options=QUIET)
    rng = np.random.default_rng(0)
    random = cold_only_ndcg(lambda u: rng.random((len(u), ds.num_items)).astype(np.float32), split, cold)
    ndcg, ids_only = cold_only_ndcg(ours.score, split, cold), cold_only_ndcg(plain.score, split, cold)
    assert ndcg > 2 * random, (ndcg, random)
    assert ndcg > 2 * ids_only, (ndcg, ids_only)


def test_needs_item_content_and_checks_its_fields() -> None:
    with pytest.raises(ConfigError, match="vector columns"):
        model_class("mmultvae")(epochs=1).fit(planted_split().train)
    with pytest.raises(ConfigError, match="graph_weight"):
        model_class("mmultvae")(graph_weight=-1)
    with pytest.raises(ConfigError, match="modality_weights"):
        model_class("mmultvae")(epochs=1, modality_weights="nosuch=1").fit(planted_split().train,
                                                                         item_table=planted_item_table())


def test_resume_reproduces_uninterrupted_run(tmp_path) -> None:
    split, table = planted_split(), planted_item_table()
    params = {**PARAMS, "epochs": 4}
    full = model_class("mmultvae")(**params).fit(split.train, item_table=table, options=QUIET)
    ckpt = FitOptions(show_progress=False, seed=3, checkpoint_dir=str(tmp_path / "ck"), resume=True)
    model_class("mmultvae")(**{**params, "epochs": 2}).fit(split.train, item_table=table, options=ckpt)
    resumed = model_class("mmultvae")(**params).fit(split.train, item_table=table, options=ckpt)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    users = np.arange(split.train.num_users)
    np.testing.assert_array_equal(resumed.score(users), full.score(users))
