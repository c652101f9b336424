"""Batch export: every user's top-k equals the model's own ranking, written batch by batch."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from test_serve_support import bundle_of, fitted_run

from recembed.cli.main import cli
from recembed.data.interactions import Interactions
from recembed.evaluation.ranking import rank_topk
from recembed.runs import load_run
from recembed.serve.bundle import load_bundle
from recembed.serve.export import export_recommendations
from recembed.serve.service import RecService, ServiceOptions


def _reference(run, k: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The CLI `recommend` ranking for every user: all known items excluded; sequential models read the
    validation and test events as part of the history."""
    split = run.split
    seen = Interactions.concat([split.train, split.valid, split.test]).csr()
    users = np.arange(len(run.users))
    if hasattr(run.model, "scorer_after"):
        scorer = run.model.scorer_after(Interactions.concat([split.valid, split.test]))
        return rank_topk(scorer, users, seen, k, num_items=run.model.num_items_)
    return run.model.recommend(users, k=k, exclude=seen, exclude_seen=False)


@pytest.mark.parametrize("model", ["bpr", "ease", "sasrec"])
def test_export_equals_the_models_ranking(model: str, tmp_path) -> None:
    run = load_run(fitted_run(model))
    out = tmp_path / "recs.parquet"
    service = RecService(load_bundle(bundle_of(model)), ServiceOptions(index="exact" if model == "bpr" else None))
    stats = export_recommendations(service, out, k=20, batch_size=64)
    table = pq.read_table(out)
    assert table.column_names == ["user_id", "item_ids", "scores"] and table.num_rows == len(run.users) == 300
    assert table.column("user_id").to_pylist() == run.users.to_list()
    ref_items, ref_scores = _reference(run, 20)
    got_scores = np.array(table.column("scores").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(got_scores, ref_scores, rtol=1e-4, atol=1e-5)
    got_items = table.column("item_ids").to_pylist()
    same = np.mean([a == list(b) for a, b in zip(got_items, run.items.lookup(ref_items))])
    assert same > 0.95  # rows may differ only where scores tie
    assert stats["batches"] == math.ceil(300 / 64)


def test_export_is_batched(tmp_path, monkeypatch) -> None:
    service = RecService(load_bundle(bundle_of("ease")))
    sizes = []
    original = service.recommend_user_idx

    def spy(users, k, exclude_seen=True):  # noqa: ANN001, ANN202
        sizes.append(len(users))
        return original(users, k, exclude_seen)

    monkeypatch.setattr(service, "recommend_user_idx", spy)
    out = tmp_path / "recs.parquet"
    export_recommendations(service, out, k=5, batch_size=37)
    assert max(sizes) == 37 and sum(sizes) == 300  # never more than one batch of scores in memory
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups == math.ceil(300 / 37)  # written as it goes, one row group per batch


def test_export_cli_from_a_run_dir(tmp_path) -> None:
    out = tmp_path / "recs.parquet"
    res = CliRunner().invoke(cli, ["export", str(fitted_run("bpr")), "--top-k", "100", "--out", str(out),
                                   "--batch-size", "128"])
    assert res.exit_code == 0, res.output
    assert "300 users x top 100" in res.output
    table = pq.read_table(out)
    lengths = {len(x) for x in table.column("item_ids").to_pylist()}
    assert table.num_rows == 300 and max(lengths) == 100
    run = load_run(fitted_run("bpr"))
    seen = Interactions.concat([run.split.train, run.split.valid, run.split.test]).csr()
    first = table.slice(0, 1).to_pylist()[0]
    assert not set(first["item_ids"]) & set(run.items.lookup(seen[0].indices))
    assert not list(tmp_path.glob(".recs.parquet.*"))  # the atomic write left no temporary file
