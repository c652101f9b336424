"""[Polish] defaults of the content, sequential and generative models: the changed defaults, saves made before a
change load (and resume) with the former value (``FORMER_DEFAULTS``), data-size-aware batches (``min_steps``,
recorded in ``auto_resolved``), and the default configurations learn a planted signal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from recembed.cli.main import cli
from recembed.config import saved_values
from recembed.models.registry import model_class
from recembed.options import FitOptions
from recembed.runs import evaluate_split
from recembed.testing.fixtures import planted_sequences
from recembed.training.sequences import Sequences, windows

QUIET = FitOptions(show_progress=False, threads=1)
SEQUENTIAL = ["sasrec", "gru4rec", "bert4rec", "unisrec", "tiger"]
SMALL = {"embedding_dim": 16, "max_len": 20, "epochs": 1, "patience": 0}  # fast, defaults otherwise


def test_changed_defaults() -> None:
    for name in SEQUENTIAL:
        assert model_class(name)().config.min_steps == 50, name
    assert model_class("unisrec")().config.use_id is False
    tiger = model_class("tiger")().config
    assert tiger.encoder == "bidirectional"
    assert (tiger.semantic_ids, tiger.num_layers, tiger.decoder_layers, tiger.lr_schedule, tiger.epochs,
            tiger.patience, tiger.valid_sample) == ("auto", 4, 4, "cosine", 30, 0, 4096)


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_saves_without_the_new_keys_get_the_former_defaults(name: str) -> None:
    cls = model_class(name).Config
    former = saved_values(cls, {})
    assert former["min_steps"] == 0
    if name == "unisrec":
        assert former["use_id"] is True
    if name == "tiger":  # before 2026-12-03: random codes, 2 + 2 blocks, constant rate, early stopping
        assert (former["semantic_ids"], former["num_layers"], former["lr_schedule"], former["patience"]) == (
            "random", 2, "constant", 10)
    assert saved_values(cls, {"min_steps": 7})["min_steps"] == 7  # a save that names a key keeps it


def test_min_steps_shrinks_the_batch_on_small_data_and_is_recorded(tmp_path: Path) -> None:
    ds = planted_sequences(num_users=120)
    split = ds.given_split
    model = model_class("sasrec")(**SMALL).fit(split.train, options=QUIET)
    rows = len(windows(Sequences.from_interactions(split.train), SMALL["max_len"] + 1, stride=SMALL["max_len"]))
    assert model.auto_resolved_ == {"batch_size": -(-rows // 50)}
    big = model_class("sasrec")(**SMALL, min_steps=0).fit(split.train, options=QUIET)
    assert big.auto_resolved_ == {}  # batch_size as set: nothing resolved

    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["fit", "sasrec", "--data", "synthetic:tiny", "--split", "loo", "--out", str(out),
                                   "--no-progress", "--set", "epochs=1"])
    assert res.exit_code == 0, res.output
    resolved = json.loads((out / "config.json").read_text())["auto_resolved"]
    assert 1 <= resolved["batch_size"] < 256


def test_unisrec_save_without_use_id_loads_text_and_id(tmp_path: Path) -> None:
    """A UniSRec saved when text + ID was the default (no ``use_id`` key) loads as text + ID, with its weights."""
    ds = planted_sequences(num_users=60)
    split = ds.given_split
    model = model_class("unisrec")(**SMALL, use_id=True, min_steps=0).fit(split.train, options=QUIET,
                                                                            item_table=ds.item_table)
    meta_path = model.save(tmp_path / "m") / "model.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["use_id"], meta["config"]["min_steps"]
    meta_path.write_text(json.dumps(meta))
    loaded = model_class("unisrec").load(tmp_path / "m")
    assert loaded.config.use_id is True and loaded.config.min_steps == 0
    np.testing.assert_allclose(loaded.score(np.arange(4)), model.score(np.arange(4)), rtol=1e-5, atol=1e-5)


def test_sequential_resume_from_a_checkpoint_without_min_steps(tmp_path: Path) -> None:
    """A checkpoint written before ``min_steps`` existed trained with ``batch_size`` as set: it resumes as such."""
    split = planted_sequences(num_users=60).given_split
    ckpt = tmp_path / "ckpt"
    params = {**SMALL, "min_steps": 0}
    model_class("sasrec")(**params).fit(split.train, options=FitOptions(show_progress=False,
                                                                        checkpoint_dir=str(ckpt)))
    meta_path = ckpt / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["min_steps"]
    meta_path.write_text(json.dumps(meta))
    resume = FitOptions(show_progress=False, checkpoint_dir=str(ckpt), resume=True)
    resumed = model_class("sasrec")(**{**params, "epochs": 2}).fit(split.train, options=resume)
    assert [h["epoch"] for h in resumed.history_] == [1, 2]


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "unisrec"])
def test_default_sequential_config_learns_the_planted_order(name: str) -> None:
    """The default configuration (only the number of epochs capped) ranks the planted next item far above
    popularity; with 400 users the default ``min_steps`` gives 50 steps an epoch instead of 7 of 64."""
    ds = planted_sequences()
    split = ds.given_split
    model = model_class(name)(epochs=8).fit(split.train, options=QUIET, valid=split.valid, item_table=ds.item_table)
    pop = model_class("pop")().fit(split.train)
    ours = evaluate_split(model, split, "test", ks=(10,)).summary["ndcg@10"]
    base = evaluate_split(pop, split, "test", ks=(10,)).summary["ndcg@10"]
    assert ours > 3 * base, (ours, base)
