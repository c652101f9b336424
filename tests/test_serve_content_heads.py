"""New items from content for every content model with a rule for it (:data:`recembed.serve.content.CONTENT_HEADS`):
VBPR's cold-item rule reproduces the content part of its own item vectors, and its bundle can add items."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from test_serve_support import workdir

from recembed.cli.main import cli
from recembed.serve.bundle import load_bundle
from recembed.serve.content import CONTENT_HEADS
from recembed.serve.service import RecService


def test_vbpr_bundle_adds_items_by_its_cold_item_rule() -> None:
    run, bundle = workdir() / "run-vbpr-text", workdir() / "bundle-vbpr-text"
    res = CliRunner().invoke(cli, ["fit", "vbpr", "--data", "synthetic:tiny", "--out", str(run), "--no-progress",
                                   "--set", "epochs=2", "--text-columns", "title", "--encoder", "tfidf"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["bundle", str(run), "--out", str(bundle), "--overwrite"])
    assert res.exit_code == 0 and "no content encoder" not in res.output, res.output
    b = load_bundle(bundle)
    assert b.manifest["content"]["head"] == "vbpr" and set(CONTENT_HEADS) >= {"alpharec", "vbpr"}
    svc = RecService(b)
    d = b.model.config.embedding_dim
    mine = svc.head.embed(b.model.content_)  # every item as if it were new
    assert np.allclose(mine[:, d:-1], b.item_vectors[:, d:-1], atol=1e-5)  # E f: the same
    assert not mine[:, :d].any()  # no ID factors for a new item
    out = svc.add_item("brand-new", title="Premium retro controller")
    assert out["item_index"] == len(b.items) and svc.similar("brand-new", 5)
    every = svc.recommend_user("u3", k=len(b.items) + 1, exclude_seen=False)
    assert "brand-new" in {it["item_id"] for it in every}  # recommendable at once
