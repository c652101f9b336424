"""Mult-VAE and DirectAU: annealing, modes, persistence, history scoring, the DirectAU loss."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recembed.errors import ConfigError
from recembed.models.cf.bpr import MFModule
from recembed.models.cf.directau import DirectAU, DirectAUTask
from recembed.models.cf.multvae import MultVAE, MultVAEModule, MultVAETask, kl_weight
from recembed.options import FitOptions
from recembed.testing.fixtures import planted_split

QUIET = FitOptions(show_progress=False)
SMALL_VAE = {"epochs": 5, "patience": 0, "hidden_dims": (32,), "latent_dim": 8, "batch_size": 64}


@pytest.fixture(scope="module")
def split():
    return planted_split()


@pytest.fixture(scope="module")
def vae(split):
    return MultVAE(**SMALL_VAE).fit(split.train, options=QUIET)


# -- Mult-VAE ------------------------------------------------------------------------------------
def test_kl_weight_schedule() -> None:
    assert kl_weight(0, 0.2, 200_000) == 0.0
    assert kl_weight(1_000, 0.2, 200_000) == pytest.approx(0.005)
    assert kl_weight(40_000, 0.2, 200_000) == pytest.approx(0.2)
    assert kl_weight(10**7, 0.2, 200_000) == pytest.approx(0.2)  # capped
    assert kl_weight(5, 0.3, 0) == pytest.approx(0.3)  # no annealing: the cap from the start


def test_task_steps_count_optimizer_steps_across_epochs(split) -> None:
    x = split.train.csr("binary")
    task = MultVAETask(x, 64, anneal_cap=0.2, total_anneal_steps=100)
    n = task.num_batches()
    assert n == -(-int((np.diff(x.indptr) > 0).sum()) // 64)
    steps = [b.step for e in range(3) for b in task.batches(e, np.random.default_rng(e))]
    assert steps == list(range(3 * n))  # a resumed epoch e starts at step e * n, like an uninterrupted run
    assert task.beta(0) == 0.0 and task.beta(10) == pytest.approx(0.1) and task.beta(10**6) == pytest.approx(0.2)


def test_task_batches_cover_each_active_user_once(split) -> None:
    x = sp.csr_matrix(split.train.csr("binary"))
    x = sp.vstack([x, sp.csr_matrix((1, x.shape[1]))]).tocsr()  # a user with no training item
    task = MultVAETask(x, 50, anneal_cap=0.2, total_anneal_steps=100)
    rows = np.vstack([(b.rows.to_dense() if b.rows.is_sparse else b.rows).numpy()
                      for b in task.batches(0, np.random.default_rng(0))])
    assert rows.shape == (x.shape[0] - 1, x.shape[1])
    assert rows.sum() == x.sum()  # every interaction once; the empty user never appears
    assert not (rows.sum(axis=1) == 0).any()


def test_multvae_eval_deterministic_train_stochastic(vae, split) -> None:
    module = vae.module_
    x = torch.from_numpy(split.train.csr("binary")[:8].toarray().astype(np.float32))
    module.eval()
    with torch.no_grad():
        a, mu_a, _ = module(x)
        b, mu_b, _ = module(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(mu_a, mu_b, rtol=0, atol=0)
    module.train()
    try:
        with torch.no_grad():
            c, _, _ = module(x)
            d, _, _ = module(x)
    finally:
        module.eval()
    assert not torch.allclose(c, d)  # dropout + sampled z
    # the model's scores use the evaluation path
    np.testing.assert_allclose(vae.score(np.arange(8)), a.numpy(), rtol=1e-5, atol=1e-5)


def test_multvae_module_shapes() -> None:
    module = MultVAEModule(num_items=30, hidden_dims=(16, 12), latent_dim=4, dropout=0.5).eval()
    logits, mu, logvar = module(torch.zeros(3, 30))
    assert logits.shape == (3, 30) and mu.shape == (3, 4) and logvar.shape == (3, 4)
    assert torch.isfinite(logits).all()  # an empty history scores (the decoder's prior at z = 0)


def test_multvae_score_history_of_own_row_equals_score(vae, split) -> None:
    users = np.array([0, 5, 17, 123])
    rows = split.train.csr("binary")[users]
    np.testing.assert_array_equal(vae.score_history(rows), vae.score(users))
    # scoring in chunks gives the same as scoring one by one
    single = np.vstack([vae.score_history(rows[i]) for i in range(len(users))])
    np.testing.assert_allclose(single, vae.score(users), rtol=1e-5, atol=1e-6)


def test_multvae_save_load_identical_scores(vae, tmp_path) -> None:
    vae.save(tmp_path / "m")
    loaded = MultVAE.load(tmp_path / "m")
    users = np.arange(vae.num_users_)
    np.testing.assert_array_equal(loaded.score(users), vae.score(users))
    row = sp.csr_matrix(([1.0, 1.0], ([0, 0], [3, 7])), shape=(1, vae.num_items_))
    np.testing.assert_array_equal(loaded.score_history(row), vae.score_history(row))


def test_multvae_fit_is_seeded(split) -> None:
    params = {**SMALL_VAE, "epochs": 2}
    a = MultVAE(**params).fit(split.train, options=QUIET).score(np.arange(5))
    b = MultVAE(**params).fit(split.train, options=QUIET).score(np.arange(5))
    np.testing.assert_array_equal(a, b)


def test_multvae_resume_matches_uninterrupted(split, tmp_path) -> None:
    """The annealing step comes from the position in the run, so resuming reproduces the run exactly."""
    params = {**SMALL_VAE, "total_anneal_steps": 10, "anneal_cap": 0.5}  # beta still moving at the resume
    full = MultVAE(**params).fit(split.train, options=QUIET)
    ckpt = str(tmp_path / "ckpt")
    MultVAE(**{**params, "epochs": 2}).fit(split.train, options=FitOptions(show_progress=False,
                                                                          checkpoint_dir=ckpt))
    resumed = MultVAE(**params).fit(split.train, options=FitOptions(show_progress=False, checkpoint_dir=ckpt,
                                                                    resume=True))
    assert [h["loss"] for h in resumed.history_] == pytest.approx([h["loss"] for h in full.history_], rel=1e-5)
    np.testing.assert_allclose(resumed.score(np.arange(10)), full.score(np.arange(10)), rtol=1e-5, atol=1e-5)


def test_multvae_score_history_rejects_wrong_width(vae) -> None:
    with pytest.raises(ValueError, match="columns"):
        vae.score_history(sp.csr_matrix((1, vae.num_items_ + 1)))


@pytest.mark.parametrize("key, value", [("latent_dim", 0), ("dropout", 1.0), ("hidden_dims", (0,)),
                                        ("anneal_cap", -0.1), ("total_anneal_steps", -1)])
def test_multvae_config_validation_names_the_key(key, value) -> None:
    with pytest.raises(ConfigError, match=key):
        MultVAE(**{key: value})


# -- DirectAU ------------------------------------------------------------------------------------
def test_directau_loss_decreases_on_planted_fixture(split) -> None:
    model = DirectAU(epochs=8, patience=0, embedding_dim=16, learning_rate=1e-2).fit(split.train, options=QUIET)
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < losses[0] - 0.3
    assert all(np.isfinite(losses))


def test_directau_scores_are_raw_dot_products(split) -> None:
    model = DirectAU(epochs=2, patience=0, embedding_dim=8).fit(split.train, options=QUIET)
    users = np.array([1, 2, 3])
    expected = model.user_factors_[users] @ model.item_factors_.T
    np.testing.assert_allclose(model.score(users), expected, rtol=1e-5, atol=1e-6)


def test_directau_task_matches_formula(split) -> None:
    torch.manual_seed(0)
    x = split.train.csr("binary")
    module = MFModule(x.shape[0], x.shape[1], 8)
    task = DirectAUTask(x, 64, gamma=2.0)
    batch = next(task.batches(0, np.random.default_rng(0)))
    assert batch.neg_items.shape == (len(batch.users), 0)  # no negatives drawn
    u = torch.nn.functional.normalize(module.user.weight[batch.users], dim=1)
    i = torch.nn.functional.normalize(module.item.weight[batch.pos_items], dim=1)

    def unif(e: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(e, e).pow(2)
        off = ~torch.eye(len(e), dtype=torch.bool)
        return torch.log(torch.exp(-2 * d2[off]).mean())

    expected = (u - i).pow(2).sum(1).mean() + 2.0 * (unif(u) + unif(i)) / 2
    torch.testing.assert_close(task.loss(module, batch, 0), expected, rtol=1e-4, atol=1e-5)


def test_directau_single_pair_batch_is_finite(split) -> None:
    x = split.train.csr("binary")
    module = MFModule(x.shape[0], x.shape[1], 8)
    task = DirectAUTask(x, 1, gamma=1.0)
    batch = next(task.batches(0, np.random.default_rng(0)))
    assert torch.isfinite(task.loss(module, batch, 0))


def test_directau_rejects_unknown_encoder() -> None:
    with pytest.raises(ConfigError, match="encoder"):
        DirectAU(encoder="lightgcn")


def test_multvae_sparse_input_equals_dense(vae, split) -> None:
    from recembed.models.cf.multvae import _sparse_rows

    rows = split.train.csr("binary")[:16]
    module = vae.module_.eval()
    with torch.no_grad():
        dense = module(torch.from_numpy(rows.toarray().astype(np.float32)))
        sparse = module(_sparse_rows(rows))
    for a, b in zip(dense, sparse):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
