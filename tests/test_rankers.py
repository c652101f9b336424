"""Conformance of every CTR ranker in the registry (later rankers are covered by being listed in ``RANKERS``):
it fits on the planted-cross data, predicts ``(n,)`` float32 probabilities, saves and loads to identical
predictions, and -- every model but LR -- learns the planted cross of two fields that LR cannot see; the
``recembed fit RANKER --data ml-100k-ctr`` contract; a newcomer's mistakes exit 2 naming the key, no traceback."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DATA_ROOT, data_dir

from recembed.config import field_docs
from recembed.models.registry import RANKERS, model_class
from recembed.options import FitOptions
from recembed.ranking.metrics import auc
from recembed.testing.ctr_fixtures import planted_content_ctr, planted_sequence_ctr
from recembed.testing.fixtures import planted_ctr

QUIET = FitOptions(seed=0, show_progress=False, threads=1)
#: shared by the planted fits: small batches, a higher step size and a short cap keep each fit around a second
COMMON = {"epochs": 20, "patience": 3, "learning_rate": 3e-3, "batch_size": 128, "min_steps": 0}
#: per-model settings for speed (small widths); a ranker missing here runs with its defaults
PARAMS: dict[str, dict] = {
    "lr": {},
    "fm": {"embedding_dim": 8},
    "deepfm": {"embedding_dim": 8, "hidden_units": (32,)},
    "dcnv2": {"embedding_dim": 8, "hidden_units": (32,)},
    "autoint": {"embedding_dim": 8, "attention_dim": 8, "attention_layers": 1, "dnn_hidden_units": (32,)},
    "masknet": {"embedding_dim": 8, "hidden_units": (32, 32)},
    "finalmlp": {"embedding_dim": 8, "mlp1_hidden_units": (32,), "mlp2_hidden_units": (32, 16),
                 "fs_hidden_units": (32,)},
}
#: the structures beside the defaults, each of which must learn the cross too
VARIANTS = [
    ("dcnv2", {"structure": "stacked", "low_rank_mixture": True, "low_rank": 4, "num_experts": 2}),
    ("dcnv2", {"hidden_units": ()}),  # the cross network alone
    ("autoint", {"use_dnn": False, "use_wide": True, "use_scale": True, "layer_norm": True}),  # plain AutoInt
    ("masknet", {"model_type": "parallel", "hidden_units": (32,), "parallel_num_blocks": 2,
                 "parallel_block_dim": 16}),
    ("finalmlp", {"fs1_context": ("c",), "fs2_context": ("a", "tags")}),
    ("finalmlp", {"use_fs": False}),
]
#: AUC over LR's on the planted cross (measured: LR 0.46-0.54, the others 0.90-0.97 on two data / fit seeds)
GAP = 0.25
_FITTED: dict[str, object] = {}
#: rankers that read a behaviour sequence (and content vectors) run on their own planted data here; what they
#: learn is tested in test_rankers_sequence.py
SEQUENCE_DATA = {"din": planted_sequence_ctr, "qin": planted_content_ctr}
CROSS = sorted(set(RANKERS) - set(SEQUENCE_DATA))


def data_for(name: str):  # noqa: ANN201
    return SEQUENCE_DATA.get(name, planted_ctr)()


def fitted(name: str):  # noqa: ANN201
    """``name`` fitted once per session on the planted data (tests share the fit)."""
    if name not in _FITTED:
        data = data_for(name)
        _FITTED[name] = model_class(name)(**{**COMMON, **PARAMS.get(name, {})}).fit(
            data.train, schema=data.schema(), valid=data.valid, options=QUIET)
    return _FITTED[name]


def test_auc_reference_lr_cannot_see_the_cross() -> None:
    """The planted data has no main effects, so the gap below means something: LR sits near chance."""
    data = planted_ctr()
    assert abs(auc(data.test.labels, fitted("lr").predict(data.test)) - 0.5) < 0.1


@pytest.mark.parametrize("name", sorted(RANKERS))
def test_predict_shape_dtype_range(name: str) -> None:
    data = data_for(name)
    p = fitted(name).predict(data.test)
    assert p.shape == (len(data.test),) and p.dtype == np.float32
    assert np.all((p > 0) & (p < 1)) and np.isfinite(p).all()


@pytest.mark.parametrize("name", sorted(RANKERS))
def test_save_load_round_trip(name: str, tmp_path) -> None:
    from recembed.models.ranking.base import Ranker

    data = data_for(name)
    model = fitted(name)
    model.save(tmp_path / "m")
    loaded = Ranker.load(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    np.testing.assert_array_equal(loaded.predict(data.test), model.predict(data.test))


@pytest.mark.parametrize("name", [n for n in CROSS if n != "lr"])
def test_learns_the_planted_cross(name: str) -> None:
    data = planted_ctr()
    lr = auc(data.test.labels, fitted("lr").predict(data.test))
    got = auc(data.test.labels, fitted(name).predict(data.test))
    assert got >= lr + GAP, f"{name}: test AUC {got:.3f}, LR {lr:.3f}"


@pytest.mark.parametrize(("name", "extra"), VARIANTS, ids=[f"{n}-{'-'.join(e)}" for n, e in VARIANTS])
def test_variants_learn_the_cross_and_round_trip(name: str, extra: dict, tmp_path) -> None:
    from recembed.models.ranking.base import Ranker

    data = planted_ctr()
    model = model_class(name)(**{**COMMON, **PARAMS[name], **extra}).fit(
        data.train, schema=data.schema(), valid=data.valid, options=QUIET)
    lr = auc(data.test.labels, fitted("lr").predict(data.test))
    got = auc(data.test.labels, model.predict(data.test))
    assert got >= lr + GAP, f"{name} {extra}: test AUC {got:.3f}, LR {lr:.3f}"
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(Ranker.load(tmp_path / "m").predict(data.test), model.predict(data.test))


@pytest.mark.parametrize("name", sorted(RANKERS))
def test_config_fields_documented_and_bad_values_named(name: str) -> None:
    from recembed.errors import ConfigError

    cls = model_class(name)
    docs: dict[str, str] = {}
    for klass in reversed(cls.Config.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(field_docs(klass))
    assert {f.name for f in dataclasses.fields(cls.Config)} <= set(docs)
    with pytest.raises(ConfigError, match="embedding_dim"):
        cls(embedding_dim=0)
    assert (sys.modules[cls.__module__].__doc__ or "").strip(), "a header naming the paper and the deviations"


def test_finalmlp_unknown_context_field_is_named() -> None:
    from recembed.errors import ConfigError

    data = planted_ctr()
    with pytest.raises(ConfigError, match="nosuch"):
        model_class("finalmlp")(**PARAMS["finalmlp"], epochs=1, fs1_context=("nosuch",)).fit(
            data.train, schema=data.schema(), options=QUIET)


# -- the command line ------------------------------------------------------------------------------------------------
def run_main(args: list[str]) -> tuple[int, str]:
    """The real entry point ``recembed.cli.main:main`` (its error handling and exit codes) under click's runner
    isolation: ``(exit code, stdout + stderr)``."""
    from recembed.cli.main import main

    runner = CliRunner()
    with runner.isolation() as streams:
        old, sys.argv = sys.argv, ["recembed", *args]
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = old
        sys.stdout.flush()
        sys.stderr.flush()
        out = streams[0].getvalue().decode() + streams[1].getvalue().decode()
    return code, " ".join(out.split())


def test_cli_fit_ranker_writes_the_ctr_metrics(tmp_path) -> None:
    data_dir("ml-100k")
    out = tmp_path / "run"
    code, text = run_main(["fit", "dcnv2", "--data", "ml-100k-ctr", "--data-root", str(DATA_ROOT), "--out", str(out),
                           "--no-progress", "--threads", "1", "--set", "epochs=1", "--set", "embedding_dim=8",
                           "--set", "hidden_units=32"])
    assert code == 0, text
    m = json.loads((out / "metrics.json").read_text())
    for key in ("auc", "logloss", "gauc"):
        assert np.isfinite(m["test"][key]), key
    assert 0.5 < m["valid"]["auc"] < 1 and 0.5 < m["test"]["auc"] < 1
    assert m["training"]["epochs_run"] == 1 and m["training"]["seconds_per_epoch"] > 0
    assert (out / "model" / "model.safetensors").exists()


@pytest.mark.parametrize(("args", "named"), [
    (["fit", "dcnv2", "--data", "ml-100k-ctr", "--set", "nosuchkey=3"], "nosuchkey"),
    (["fit", "finalmlp", "--data", "ml-100k-ctr", "--set", "num_heads=3"], "num_heads"),
    (["fit", "autoint", "--data", "ml-100k-ctr", "--set", "use_dnn=maybe"], "use_dnn"),
    (["fit", "masknet", "--data", "ml-100k-ctr", "--split", "loo"], "ml-100k-ctr is a CTR dataset"),
    (["fit", "dcnv2", "--data", "ml-100k"], "not found under the data root"),  # interaction data: its own loader
])
def test_cli_bad_input_exits_2_naming_it(args: list[str], named: str, tmp_path) -> None:
    code, text = run_main([*args, "--out", str(tmp_path / "x"), "--data-root", str(tmp_path / "no-data")])
    assert code == 2, text
    assert named in text, text
    assert "Traceback" not in text
    assert not (tmp_path / "x").exists()


def test_vector_fields_are_l2_normalised_and_old_schemas_keep_raw_values() -> None:
    from recembed.ranking.schema import Field, Frame, Schema

    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    frame = Frame({"v": x}, np.array([1.0, 0.0, 1.0]), np.array(["a", "b", "c"], dtype=object))
    schema = Schema([Field("v", "vector")]).fit(frame)
    np.testing.assert_allclose(schema.encode(frame).arrays["v"], [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-6)
    raw = Schema([Field("v", "vector", normalize="none")]).fit(frame)
    np.testing.assert_array_equal(raw.encode(frame).arrays["v"], x)
    saved = schema.to_dict()
    assert saved["fields"][0]["normalize"] == "l2" and Schema.from_dict(saved).fields[0].normalize == "l2"
    del saved["fields"][0]["normalize"]  # a schema saved before the option: raw vectors, as it was trained on
    assert Schema.from_dict(saved).fields[0].normalize == "none"
    with pytest.raises(Exception, match="normalize"):
        Field("v", "vector", normalize="max")


def test_id_dropout_masks_the_named_fields_in_training_batches_only() -> None:
    from recembed.errors import ConfigError
    from recembed.models.ranking.base import CTRTask
    from recembed.ranking.schema import OOV

    data = planted_ctr(seed=1, rows=2000)
    schema = data.schema()
    enc = schema.encode(data.train)
    task = CTRTask(enc, 256, 0.0, id_dropout=0.4, id_fields=("a",))
    masked = total = 0
    for inputs, _ in task.batches(0, np.random.default_rng(0)):
        masked += int((inputs["a"] == OOV).sum())
        total += len(inputs["a"])
        assert (inputs["b"] != OOV).all()  # other fields untouched
    assert 0.33 < masked / total < 0.47  # ~40% of the rows (a's training values are never OOV themselves)
    model = model_class("deepfm")(id_dropout=0.3, id_dropout_fields="a", epochs=2)
    model.fit(data.train, schema=schema, valid=data.valid, options=FitOptions(seed=0, show_progress=False))
    np.testing.assert_array_equal(model.predict(data.test), model.predict(data.test))  # scoring never masks
    with pytest.raises(ConfigError, match="id_dropout_fields"):
        model_class("deepfm")(id_dropout=0.3, id_dropout_fields="nope", epochs=1).fit(
            data.train, schema=schema, valid=data.valid, options=FitOptions(seed=0, show_progress=False))
