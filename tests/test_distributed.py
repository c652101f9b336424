"""[Scale] Devices and data-parallel training: ``--device`` / ``--precision`` / ``--distributed`` under torchrun.

The DDP tests start the real command under ``python -m torch.distributed.run --nproc_per_node 2`` (gloo, two CPU
processes) on the generated ``synthetic:tiny`` catalog: 2-rank MF-BPR equals 1-rank MF-BPR with the same global
batch (the last, short batch split 2 / 3 rows, so the per-rank loss weighting is exercised), and a 2-rank run
stopped and resumed equals the uninterrupted 2-rank run exactly. The device tests run on every device this
machine has (the CPU; CUDA and MPS where present) and check that an absent one is refused with exit code 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_rankers import run_main

from recembed.errors import ConfigError
from recembed.runs import load_run
from recembed.training.device import resolve_device, to_device
from recembed.training.distributed import shard_batch
from recembed.training.tasks import PairBatch

# 3,977 training pairs / batch 331: 12 full batches and a last one of 5 rows (rank 0 takes 2, rank 1 takes 3)
BPR = ["--data", "synthetic:tiny", "--set", "batch_size=331", "--set", "min_steps=0", "--set", "patience=0",
       "--no-progress", "--threads", "1", "--ks", "10"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + \
    (["mps"] if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available() else [])


def torchrun(args: list[str], cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(29500 + os.getpid() % 1000), "-m", "recembed", *args, "--distributed"]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def factors(run: Path) -> tuple[np.ndarray, np.ndarray]:
    model = load_run(run).model
    return model.user_factors_, model.item_factors_


def test_two_ranks_equal_one_rank_with_the_same_global_batch(tmp_path: Path) -> None:
    code, text = run_main(["fit", "bpr", *BPR, "--set", "epochs=3", "--out", str(tmp_path / "one")])
    assert code == 0, text
    torchrun(["fit", "bpr", *BPR, "--set", "epochs=3", "--out", "two"], cwd=tmp_path)
    assert not (tmp_path / "two" / "rank1").exists()
    (u1, i1), (u2, i2) = factors(tmp_path / "one"), factors(tmp_path / "two")
    assert not np.allclose(u1, 0)
    np.testing.assert_allclose(u2, u1, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(i2, i1, atol=2e-5, rtol=1e-4)
    import json

    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["test"]["ndcg@10"] == pytest.approx(m1["test"]["ndcg@10"], abs=1e-6)
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["environment"] == {"device": "cpu", "precision": "fp32", "world_size": 2}
    assert m1["training"]["epochs_run"] == m2["training"]["epochs_run"] == 3


def test_resume_under_ddp_is_exact(tmp_path: Path) -> None:
    torchrun(["fit", "bpr", *BPR, "--set", "epochs=4", "--out", "straight"], cwd=tmp_path)
    torchrun(["fit", "bpr", *BPR, "--set", "epochs=2", "--checkpoint-dir", "ckpt", "--out", "first"], cwd=tmp_path)
    done = torchrun(["fit", "bpr", *BPR, "--set", "epochs=4", "--checkpoint-dir", "ckpt", "--resume",
                     "--out", "resumed"], cwd=tmp_path)
    assert "resumed at epoch 2" in done.stderr + done.stdout
    (u1, i1), (u2, i2) = factors(tmp_path / "straight"), factors(tmp_path / "resumed")
    np.testing.assert_array_equal(u2, u1)
    np.testing.assert_array_equal(i2, i1)


@pytest.mark.parametrize("model,extra", [("sasrec", ["--split", "loo", "--set", "epochs=2", "--set", "max_len=20"]),
                                         ("deepfm", ["--set", "epochs=2"])])
def test_sequential_models_and_rankers_train_under_ddp(tmp_path: Path, model: str, extra: list[str]) -> None:
    torchrun(["fit", model, "--data", "synthetic:tiny", "--no-progress", "--threads", "1", *extra, "--out", "run"],
             cwd=tmp_path)
    import json

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["training"]["epochs_run"] == 2


def test_distributed_outside_torchrun_exits_2(tmp_path: Path) -> None:
    code, text = run_main(["fit", "bpr", *BPR, "--distributed", "--out", str(tmp_path / "r")])
    assert code == 2 and "--distributed" in text and "torchrun" in text and "Traceback" not in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: nothing to refuse")
def test_an_absent_cuda_device_is_refused_with_exit_2(tmp_path: Path) -> None:
    code, text = run_main(["fit", "bpr", *BPR, "--device", "cuda", "--out", str(tmp_path / "r")])
    assert code == 2 and "--device cuda" in text and "not available" in text and "Traceback" not in text
    with pytest.raises(ConfigError, match="--device"):
        resolve_device("tpu")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", ["bpr", "lightgcn", "sasrec"])
def test_models_train_on_every_device_here(tmp_path: Path, device: str, model: str) -> None:
    """The same code path for any device: batches, task tensors and propagation go where the module is;
    the fitted weights come back to the host; on the CPU the result equals the default fit exactly."""
    split = ["--split", "loo"] if model == "sasrec" else []
    args = ["fit", model, "--data", "synthetic:tiny", *split, "--set", "epochs=2", "--no-progress", "--threads", "1",
            "--ks", "10"]
    code, text = run_main([*args, "--device", device, "--out", str(tmp_path / "dev")])
    assert code == 0, text
    if device == "cpu":
        code, text = run_main([*args, "--out", str(tmp_path / "default")])
        import json

        a = json.loads((tmp_path / "dev" / "metrics.json").read_text())["test"]
        b = json.loads((tmp_path / "default" / "metrics.json").read_text())["test"]
        assert a["ndcg@10"] == b["ndcg@10"]


def test_bf16_autocast_trains_and_learns(tmp_path: Path) -> None:
    """SASRec's attention and feed-forward layers run in bfloat16 under ``--precision bf16``: the fit learns the
    synthetic catalog's planted tastes as far as fp32 does (both well above popularity) without being identical."""
    import json

    args = ["--data", "synthetic:tiny", "--split", "loo", "--set", "epochs=10", "--set", "patience=0", "--no-progress",
            "--threads", "1", "--ks", "10"]
    out = {}
    for name, extra in (("bf16", ["--precision", "bf16"]), ("fp32", []), ("pop", None)):
        model = "pop" if extra is None else "sasrec"
        code, text = run_main(["fit", model, *(args if extra is not None else args[:4] + args[-4:]), *(extra or []),
                               "--out", str(tmp_path / name)])
        assert code == 0, text
        out[name] = json.loads((tmp_path / name / "metrics.json").read_text())["test"]["ndcg@10"]
    assert out["bf16"] > 1.3 * out["pop"] and out["fp32"] > 1.3 * out["pop"]
    assert out["bf16"] != out["fp32"]  # autocast did change the arithmetic
    assert abs(out["bf16"] - out["fp32"]) < 0.25 * out["fp32"]
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["environment"]["precision"] == "bf16"


def test_shard_batch_splits_rows_and_weights_the_mean() -> None:
    batch = PairBatch(torch.arange(5), torch.arange(5) + 10, torch.arange(10).view(5, 2))
    parts = [shard_batch(batch, r, 2) for r in range(2)]
    assert [len(p.users) for p, _ in parts] == [2, 3]
    assert [w for _, w in parts] == [pytest.approx(0.8), pytest.approx(1.2)]  # N b_r / B: they average to 1
    assert torch.equal(torch.cat([p.neg_items for p, _ in parts]), batch.neg_items)
    (inputs, labels), w = shard_batch(({"a": torch.ones(4, 3), "b": torch.zeros(4)}, torch.arange(4.0)), 1, 2)
    assert inputs["a"].shape == (2, 3) and labels.tolist() == [2.0, 3.0] and w == 1.0


@pytest.mark.parametrize("device", DEVICES)
def test_to_device_moves_every_tensor_of_a_batch(device: str) -> None:
    d = resolve_device(device)
    batch = to_device(PairBatch(torch.arange(3), torch.arange(3), torch.zeros(3, 1, dtype=torch.long)), d)
    assert {t.device.type for t in (batch.users, batch.pos_items, batch.neg_items)} == {d.type}


def test_rank_topk_takes_torch_scores() -> None:
    import scipy.sparse as sp

    from recembed.evaluation.ranking import _device_topk, rank_topk

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 30)).astype(np.float32)
    exclude = sp.random(6, 30, density=0.2, format="csr", random_state=1)
    a, sa = rank_topk(lambda u: scores[u], np.arange(6), exclude, 5, num_items=30)
    b, sb = rank_topk(lambda u: torch.from_numpy(scores[u]), np.arange(6), exclude, 5, num_items=30)
    c, sc = _device_topk(torch.from_numpy(scores), exclude, 5, 30)  # the accelerator step, run on the CPU here
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(sa, sc)
