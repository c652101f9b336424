"""MGCN: conformance, the fused views against their formula, weighted kNN graphs, cold items from content."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recembed.data.tables import Table
from recembed.errors import ConfigError
from recembed.models.content.freedom import knn_graph
from recembed.models.registry import model_class
from recembed.options import FitOptions
from recembed.testing.conformance import ContentConformance
from recembed.testing.fixtures import planted_item_table, planted_split

PARAMS = {"epochs": 20, "learning_rate": 0.01, "batch_size": 1024, "patience": 0, "embedding_dim": 32}


class TestMGCN(ContentConformance):
    model_name = "mgcn"
    params = PARAMS


def _two_modality_table(seed: int = 1) -> Table:
    base = planted_item_table()
    rng = np.random.default_rng(seed)
    table = Table(base.num_rows)
    table.add("a", np.asarray(base["content"], dtype=np.float32), "vector")
    table.add("b", rng.standard_normal((base.num_rows, 6)).astype(np.float32), "vector")
    return table


def test_views_follow_the_papers_formula() -> None:
    split = planted_split()
    model = model_class("mgcn")(**PARAMS)
    model._context = {"item_table": _two_modality_table()}
    module, _ = model._build(split.train.csr("binary"), FitOptions(show_progress=False))
    module.eval()
    with torch.no_grad():
        content, side = module.views()
        num_users = split.train.num_users
        ids = module.weight[num_users:]
        views = []
        for m, graph in enumerate(module.graphs):
            gate = torch.sigmoid(module.purifier[m][0](module.proj[m](module.feats[m])))
            h = torch.from_numpy(graph @ (ids * gate).numpy())  # one item-item layer
            views.append(torch.cat([torch.from_numpy(module.user_items @ h.numpy()), h]))
        logits = torch.stack([module.query(v).squeeze(-1) for v in views], 1)
        att = torch.softmax(logits, 1)
        common = att[:, :1] * views[0] + att[:, 1:] * views[1]
        expected = (common + sum(torch.sigmoid(module.prefer[m][0](content)) * (v - common)
                                 for m, v in enumerate(views))) / 3
        torch.testing.assert_close(side, expected, rtol=1e-4, atol=1e-6)
        users, items = module()
        torch.testing.assert_close(users, (content + side)[:num_users])


def test_weighted_knn_graph_weighs_edges_by_cosine_similarity() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    x[:3] = 0.0  # absent
    g, present = knn_graph(x, 4, weighted=True)
    ones, _ = knn_graph(x, 4)
    assert (g != 0).sum() == (ones != 0).sum() == 37 * 4  # same neighbours
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    raw = np.zeros((40, 40), dtype=np.float32)
    for i in range(3, 40):
        nbrs = np.argsort(-sim[i])[:4]
        raw[i, nbrs] = sim[i, nbrs]
    deg = raw.sum(1)
    inv = np.where(deg > 0, deg, 1.0) ** -0.5 * (deg > 0)
    np.testing.assert_allclose(g.toarray(), inv[:, None] * raw * inv[None, :], rtol=1e-4, atol=1e-6)
    assert not present[:3].any() and g.nnz == 37 * 4


def test_pruning_and_missing_modalities_give_finite_scores() -> None:
    split = planted_split()
    table = _two_modality_table()
    b = np.asarray(table["b"]).copy()
    b[:25] = 0.0
    table2 = Table(table.num_rows)
    table2.add("a", np.asarray(table["a"]), "vector")
    table2.add("b", b, "vector")
    model = model_class("mgcn")(**{**PARAMS, "epochs": 3, "dropout": 0.3}).fit(split.train, item_table=table2)
    assert np.isfinite(model.score(np.arange(split.train.num_users))).all()


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="cl_weight"):
        model_class("mgcn")(cl_weight=-1)
    with pytest.raises(ConfigError, match="temperature"):
        model_class("mgcn")(temperature=0)
    with pytest.raises(ConfigError, match="vector columns"):
        model_class("mgcn")(epochs=1).fit(planted_split().train)
