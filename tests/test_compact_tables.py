"""Parameter-efficient item tables (recembed.compact.tables, ``--set item_table=KIND:C``): every table's rows equal
its materialised weight, about 1/C of the parameters, QR keeps every item distinct, models learn the planted
topics through them, and bad specs exit 2 naming the field."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_rankers import run_main

from recembed.compact.tables import make_table, parse_table, table_parameters
from recembed.errors import ConfigError
from recembed.evaluation.ranking import evaluate
from recembed.models.registry import model_class
from recembed.options import FitOptions
from recembed.testing.fixtures import planted_split

QUIET = FitOptions(show_progress=False, threads=1)


@settings(max_examples=25, deadline=None)
@given(num=st.integers(50, 3000), dim=st.sampled_from([4, 6, 8, 12, 16]), kind=st.sampled_from(["hash", "qr", "tt"]),
       factor=st.integers(2, 16), seed=st.integers(0, 100))
def test_rows_are_the_materialised_table_and_the_budget_holds(num: int, dim: int, kind: str, factor: int,
                                                              seed: int) -> None:
    torch.manual_seed(seed)
    table = make_table(f"{kind}:{factor}", num, dim, 0.1)
    w = table.weight
    assert w.shape == (num, dim)
    idx = torch.from_numpy(np.random.default_rng(seed).integers(0, num, 64))
    torch.testing.assert_close(table(idx), w[idx], rtol=1e-5, atol=1e-6)
    params, full = table_parameters(table), num * dim
    if kind == "hash":
        assert params == -(-num // factor) * dim
    elif kind == "qr":
        assert params == (-(-num // factor) + factor) * dim
    else:  # the largest rank within the budget (rank 1 may exceed it on tiny tables)
        assert params <= full / factor or params <= 3 * dim * round(num ** (1 / 3) + 1)


def test_qr_keeps_every_item_distinct_and_hashing_does_not() -> None:
    torch.manual_seed(0)
    qr, hashed = make_table("qr:8", 1000, 8, 0.1), make_table("hash:8", 1000, 8, 0.1)
    assert len(torch.unique(qr.weight.detach(), dim=0)) == 1000
    assert len(torch.unique(hashed.weight.detach(), dim=0)) <= 125
    assert abs(float(make_table("tt:4", 5000, 16, 0.1).weight.detach().std()) - 0.1) < 0.03  # initial scale


def _ndcg(model, split) -> float:  # noqa: ANN001
    return evaluate(model.score, split.test.csr(), split.train.csr(), ks=(10,), metrics=("ndcg",)).summary["ndcg@10"]


def test_models_learn_the_planted_topics_through_compressed_tables() -> None:
    """Planted topics (200 items): BPR and LightGCN with a quarter of the item parameters rank far above
    popularity; BPR alone cannot undo hashing's collisions (no graph to tell colliding items apart), QR can."""
    split = planted_split()
    pop = _ndcg(model_class("pop")().fit(split.train, options=QUIET), split)
    base = {"epochs": 40, "patience": 0, "embedding_dim": 16, "learning_rate": 0.01}
    got = {(name, t): _ndcg(model_class(name)(**base, item_table=t).fit(split.train, options=QUIET), split)
           for name, t in (("bpr", "full"), ("bpr", "qr:4"), ("bpr", "tt:4"), ("bpr", "hash:4"),
                           ("lightgcn", "qr:4"), ("lightgcn", "hash:4"))}
    for key in (("bpr", "qr:4"), ("bpr", "tt:4"), ("lightgcn", "qr:4"), ("lightgcn", "hash:4")):
        assert got[key] > 1.4 * pop, (key, got, pop)
    assert got[("bpr", "qr:4")] > 0.6 * got[("bpr", "full")], got
    assert got[("bpr", "hash:4")] < got[("bpr", "qr:4")], got


def test_bad_specs_are_config_errors_and_cli_exit_2(tmp_path) -> None:  # noqa: ANN001
    assert parse_table("full") == ("full", 1) and parse_table("qr:8") == ("qr", 8)
    for bad in ("qr", "qr:1", "qr:x", "dhe:4", "full:2"):
        with pytest.raises(ConfigError, match="item_table"):
            parse_table(bad)
    code, text = run_main(["fit", "bpr", "--data", "synthetic:tiny", "--set", "item_table=pq:4", "--no-progress",
                           "--out", str(tmp_path / "r")])
    assert code == 2 and "item_table" in text and "Traceback" not in text
    code, text = run_main(["fit", "ease", "--data", "synthetic:tiny", "--set", "item_table=qr:4", "--no-progress",
                           "--out", str(tmp_path / "e")])
    assert code == 2 and "item_table" in text, text
