"""THE training loop: learns, clears gradients, stops early, checkpoints, resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from recembed.errors import DataError
from recembed.options import FitOptions
from recembed.training.trainer import TrainConfig, Trainer


class LinearTask:
    """loss = sum(w * c) for a constant c: the gradient is c at every step, whatever w is."""

    def __init__(self, n_batches: int = 3) -> None:
        self.n = n_batches
        self.c = torch.tensor([1.0, -2.0, 0.5])

    def num_batches(self) -> int:
        return self.n

    def batches(self, epoch, rng):  # noqa: ANN001, ANN201
        yield from range(self.n)

    def loss(self, module, batch, epoch):  # noqa: ANN001, ANN201
        return (module.w * self.c).sum()


class Weights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))


class RegressionTask:
    """Noisy linear regression with batches drawn from the epoch's generator (tests determinism)."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.x = torch.tensor(rng.normal(size=(256, 5)), dtype=torch.float32)
        self.y = self.x @ torch.tensor([1.0, -1.0, 2.0, 0.0, 0.5]) + 0.1 * torch.randn(256)

    def num_batches(self) -> int:
        return 8

    def batches(self, epoch, rng):  # noqa: ANN001, ANN201
        order = rng.permutation(256)
        for i in range(8):
            yield torch.from_numpy(order[i * 32 : (i + 1) * 32])

    def loss(self, module, batch, epoch):  # noqa: ANN001, ANN201
        pred = module(self.x[batch])
        noise = 0.01 * torch.randn(())  # uses the torch generator: must be reproducible too
        return ((pred.squeeze(-1) - self.y[batch]) ** 2).mean() + noise * 0


def _reg_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.2), nn.Linear(8, 1))


def test_gradients_are_cleared_between_steps() -> None:
    module = Weights()
    lr, steps = 0.1, 3 * 2
    Trainer(TrainConfig(epochs=2, optimizer="sgd", learning_rate=lr), FitOptions(show_progress=False)).fit(
        module, LinearTask(3)
    )
    # accumulated gradients would move w by lr * c * (1 + 2 + ... + steps)
    np.testing.assert_allclose(module.w.detach().numpy(), -lr * steps * np.array([1.0, -2.0, 0.5]), rtol=1e-6)


def test_loss_decreases() -> None:
    result = Trainer(TrainConfig(epochs=15, learning_rate=0.02), FitOptions(show_progress=False)).fit(
        _reg_module(), RegressionTask()
    )
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.3 * losses[0]


def test_early_stopping_stops_and_restores_best() -> None:
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.2, 0.1, 0.05, 0.0, 0.0, 0.0])
    module = _reg_module()
    snapshots = []

    def validate() -> float:
        snapshots.append({k: v.clone() for k, v in module.state_dict().items()})
        return next(scores)

    cfg = TrainConfig(epochs=10, patience=3, learning_rate=0.02)
    result = Trainer(cfg, FitOptions(show_progress=False)).fit(module, RegressionTask(), validate)
    assert result.stopped_early and len(result.history) == 5
    assert result.best_epoch == 2 and result.best_metric == pytest.approx(0.3)
    for k, v in module.state_dict().items():  # the best epoch's weights are restored
        torch.testing.assert_close(v, snapshots[1][k])


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_resume_reproduces_uninterrupted_run(tmp_path) -> None:
    opts = FitOptions(show_progress=False, seed=3)
    full = _reg_module()
    Trainer(TrainConfig(epochs=6, learning_rate=0.01), opts).fit(full, RegressionTask())

    ckpt = FitOptions(show_progress=False, seed=3, checkpoint_dir=str(tmp_path / "ck"), resume=True)
    part = _reg_module()
    Trainer(TrainConfig(epochs=3, learning_rate=0.01), ckpt).fit(part, RegressionTask())
    resumed = _reg_module()  # fresh weights: everything must come from the checkpoint
    result = Trainer(TrainConfig(epochs=6, learning_rate=0.01), ckpt).fit(resumed, RegressionTask())
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5, 6]
    for k, v in _state(full).items():
        torch.testing.assert_close(_state(resumed)[k], v, rtol=0, atol=0)


def test_deterministic_for_a_seed() -> None:
    runs = []
    for _ in range(2):
        m = _reg_module()
        Trainer(TrainConfig(epochs=3, learning_rate=0.01), FitOptions(show_progress=False, seed=5)).fit(
            m, RegressionTask())
        runs.append(_state(m))
    for k in runs[0]:
        torch.testing.assert_close(runs[0][k], runs[1][k], rtol=0, atol=0)


def test_corrupted_checkpoint_is_a_clear_error(tmp_path) -> None:
    ckpt = FitOptions(show_progress=False, checkpoint_dir=str(tmp_path), resume=True)
    Trainer(TrainConfig(epochs=1), ckpt).fit(_reg_module(), RegressionTask())
    weights = next(tmp_path.glob("checkpoint-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(DataError, match="SHA-256"):
        Trainer(TrainConfig(epochs=2), ckpt).fit(_reg_module(), RegressionTask())


def test_incompatible_checkpoint_is_a_clear_error(tmp_path) -> None:
    ckpt = FitOptions(show_progress=False, checkpoint_dir=str(tmp_path), resume=True)
    Trainer(TrainConfig(epochs=1), ckpt).fit(_reg_module(), RegressionTask())
    with pytest.raises(DataError, match="learning_rate"):
        Trainer(TrainConfig(epochs=2, learning_rate=0.5), ckpt).fit(_reg_module(), RegressionTask())
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    meta["format"] = 99
    (tmp_path / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="checkpoint"):
        Trainer(TrainConfig(epochs=2), ckpt).fit(_reg_module(), RegressionTask())


def test_interrupt_writes_checkpoint(tmp_path) -> None:
    class Interrupting(RegressionTask):
        def loss(self, module, batch, epoch):  # noqa: ANN001, ANN201
            if epoch == 2:
                raise KeyboardInterrupt
            return super().loss(module, batch, epoch)

    ckpt = FitOptions(show_progress=False, checkpoint_dir=str(tmp_path), resume=True)
    with pytest.raises(KeyboardInterrupt):
        Trainer(TrainConfig(epochs=5), ckpt).fit(_reg_module(), Interrupting())
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 2


def test_nan_loss_is_reported() -> None:
    class NaNTask(LinearTask):
        def loss(self, module, batch, epoch):  # noqa: ANN001, ANN201
            return module.w.sum() * float("nan")

    with pytest.raises(FloatingPointError, match="learning_rate"):
        Trainer(TrainConfig(epochs=1), FitOptions(show_progress=False)).fit(Weights(), NaNTask())


def test_select_best_false_keeps_last_weights_and_dict_metrics_are_logged() -> None:
    scores = iter([0.3, 0.1, 0.2])
    module = _reg_module()

    def validate() -> dict[str, float]:
        v = next(scores)
        return {"ndcg@10": v, "recall@10": 2 * v}

    cfg = TrainConfig(epochs=3, patience=0, learning_rate=0.02, select_best=False)
    result = Trainer(cfg, FitOptions(show_progress=False)).fit(module, RegressionTask(), validate)
    last = _state(module)
    assert result.best_epoch == 1 and [h["valid_recall@10"] for h in result.history] == pytest.approx([0.6, 0.2, 0.4])
    again = _reg_module()
    Trainer(TrainConfig(epochs=3, patience=0, learning_rate=0.02), FitOptions(show_progress=False)).fit(
        again, RegressionTask())
    for k, v in last.items():  # the same as a run without validation: no restore of epoch 1
        torch.testing.assert_close(v, _state(again)[k])


def test_time_budget_stops_before_an_epoch_that_would_overrun() -> None:
    class SlowTask(RegressionTask):
        def loss(self, module, batch, epoch):  # noqa: ANN001, ANN201
            import time

            time.sleep(0.01)  # 8 batches: >= 0.08 s per epoch
            return super().loss(module, batch, epoch)

    cfg = TrainConfig(epochs=50, learning_rate=0.02, time_budget_s=0.25)
    result = Trainer(cfg, FitOptions(show_progress=False)).fit(_reg_module(), SlowTask())
    assert result.stopped_by_budget and not result.stopped_early
    assert 1 <= len(result.history) <= 3
    assert result.history[-1]["elapsed_seconds"] <= 0.25


def test_cosine_schedule_anneals_the_step_size() -> None:
    module = Weights()
    cfg = TrainConfig(epochs=4, optimizer="sgd", learning_rate=0.1, lr_schedule="cosine")
    Trainer(cfg, FitOptions(show_progress=False)).fit(module, LinearTask(1))
    lrs = [0.1 * 0.5 * (1 + np.cos(np.pi * e / 4)) for e in range(4)]  # 0.1, 0.085, 0.05, 0.015
    np.testing.assert_allclose(module.w.detach().numpy(), -sum(lrs) * np.array([1.0, -2.0, 0.5]), rtol=1e-6)


def test_cold_items_split_validates_among_cold_items() -> None:
    """On a cold-items split every validation positive is an unseen item: the mixed ranking can stay at 0 and
    select nothing, so validation (``valid_candidates=auto``) ranks among the cold validation items."""
    from recembed.data.splits import cold_items_split
    from recembed.models.registry import model_class
    from recembed.testing.fixtures import planted_dataset, planted_item_table, planted_split

    ds = planted_dataset()
    split = cold_items_split(ds.interactions, ds.users, ds.items, 0.2, seed=3)
    params = {"epochs": 3, "learning_rate": 0.01, "batch_size": 1024, "patience": 0}
    auto = model_class("vbpr")(**params).fit(split.train, valid=split.valid, item_table=planted_item_table())
    mixed = model_class("vbpr")(**params, valid_candidates="all").fit(split.train, valid=split.valid,
                                                                     item_table=planted_item_table())
    assert auto.valid_candidates_ == "cold" and mixed.valid_candidates_ == "all"
    # fewer candidates: the same model scores higher when only cold items compete
    assert auto.history_[0]["valid_ndcg@10"] > mixed.history_[0]["valid_ndcg@10"]
    warm_split = planted_split()
    plain = model_class("bpr")(**params).fit(warm_split.train, valid=warm_split.valid)
    assert plain.valid_candidates_ == "all"


@pytest.mark.parametrize("negatives", [1, 3])
@pytest.mark.parametrize("row_l2", [0.0, 0.05])
def test_fused_bpr_matches_autograd(negatives, row_l2) -> None:
    """bpr_on_tables' hand-written backward equals autograd through the plain formula (values and gradients)."""
    from recembed.training.tasks import PairBatch, bpr_on_tables

    g = torch.Generator().manual_seed(negatives)
    users_t = torch.randn(30, 8, generator=g, requires_grad=True)
    items_t = torch.randn(50, 8, generator=g, requires_grad=True)
    batch = PairBatch(torch.randint(0, 30, (64,), generator=g), torch.randint(0, 50, (64,), generator=g),
                      torch.randint(0, 50, (64, negatives), generator=g))
    scale = torch.linspace(0.5, 2.0, 30).unsqueeze(1)  # a non-leaf table, as LightGCN's propagated ones
    fused = bpr_on_tables(users_t * scale, items_t, batch, row_l2=row_l2)
    grads = torch.autograd.grad(fused, (users_t, items_t))
    u, p, n = (users_t * scale)[batch.users], items_t[batch.pos_items], items_t[batch.neg_items]
    plain = -torch.nn.functional.logsigmoid((u * p).sum(-1, keepdim=True) - (u.unsqueeze(1) * n).sum(-1)).mean()
    plain = plain + row_l2 * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (2 * 64)
    expected = torch.autograd.grad(plain, (users_t, items_t))
    torch.testing.assert_close(fused, plain)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


def test_checkpoint_without_a_newer_config_key_resumes_at_its_default(tmp_path) -> None:
    """A key added to TrainConfig later (here valid_sample) must not make older checkpoints unusable, but a
    non-default value of it is a configuration change."""
    ckpt = FitOptions(show_progress=False, checkpoint_dir=str(tmp_path), resume=True)
    Trainer(TrainConfig(epochs=1), ckpt).fit(_reg_module(), RegressionTask())
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    del meta["config"]["valid_sample"]  # as written before the key existed
    (tmp_path / "checkpoint.json").write_text(json.dumps(meta))
    result = Trainer(TrainConfig(epochs=2), ckpt).fit(_reg_module(), RegressionTask())
    assert [r["epoch"] for r in result.history] == [1, 2]
    with pytest.raises(DataError, match="valid_sample"):
        Trainer(TrainConfig(epochs=3, valid_sample=5), ckpt).fit(_reg_module(), RegressionTask())


def test_valid_sample_validates_on_a_fixed_user_sample() -> None:
    from recembed.models.registry import model_class
    from recembed.testing.fixtures import planted_split

    split = planted_split()
    n_valid = len(np.unique(split.valid.user_idx))
    assert n_valid > 20
    params = {"epochs": 2, "patience": 0, "valid_sample": 20}
    a = model_class("bpr")(**params).fit(split.train, valid=split.valid)
    b = model_class("bpr")(**params).fit(split.train, valid=split.valid)
    full = model_class("bpr")(epochs=2, patience=0).fit(split.train, valid=split.valid)
    assert [r["valid_users"] for r in a.history_] == [20, 20]
    assert [r["valid_ndcg@10"] for r in a.history_] == [r["valid_ndcg@10"] for r in b.history_]  # same sample
    assert full.history_[0]["valid_users"] == n_valid
