"""Matryoshka training (recembed.compact.matryoshka): the nested loss is the weighted sum of the per-prefix losses
(exactly, for every supported task, randomness included), a hand-written check of BPR and SASRec's prefix losses,
a learning test (trained prefixes beat a plain model's prefixes on planted data), metrics.json ``matryoshka``,
``recembed bundle RUN --dim`` round trips through the service, and bad values exit 2 naming the field / flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_rankers import run_main
from test_serve_support import workdir

from recembed.compact.matryoshka import MatryoshkaTask, PrefixView, evaluate_prefixes, truncate
from recembed.errors import ConfigError
from recembed.io import read_json
from recembed.models.cf.bpr import MFModule
from recembed.models.cf.directau import DirectAUTask
from recembed.models.cf.lightgcn import LightGCNModule
from recembed.models.cf.simgcl import NoisyGCNModule, SimGCLConfig, SimGCLTask
from recembed.models.cf.xsimgcl import XSimGCLConfig, XSimGCLTask
from recembed.models.registry import model_class
from recembed.models.sequential.bert4rec import BERT4RecConfig, BERT4RecModule
from recembed.models.sequential.sasrec import SASRecConfig, SASRecModule
from recembed.options import FitOptions
from recembed.runs import load_run
from recembed.serve.bundle import load_bundle
from recembed.serve.service import RecService
from recembed.testing.fixtures import planted_sequences, planted_split
from recembed.training.sequences import MaskedItemTask, NextItemTask, Sequences
from recembed.training.tasks import BPRTask, SoftmaxTask

QUIET = FitOptions(show_progress=False, threads=1)
TERMS = [(4, 1.0), (8, 0.5), (16, 2.0)]


def _cf_case(kind: str):  # noqa: ANN202
    train = planted_split().train.csr("binary")
    if kind == "bpr":
        return MFModule(*train.shape, 16), BPRTask(train, 64, reg_weight=0.01, num_negatives=3)
    if kind == "lightgcn-softmax":
        return LightGCNModule.for_interactions(train, 16, 1), SoftmaxTask(train, 64, num_negatives=8, reg_weight=1e-3)
    if kind == "lightgcn-bpr":
        return LightGCNModule.for_interactions(train, 16, 2), BPRTask(train, 64, reg_weight=1e-3)
    if kind == "simgcl":
        return NoisyGCNModule.for_interactions(train, 16, 2), SimGCLTask(train, 64, SimGCLConfig(embedding_dim=16))
    if kind == "xsimgcl":
        return NoisyGCNModule.for_interactions(train, 16, 2), XSimGCLTask(train, 64, XSimGCLConfig(embedding_dim=16))
    return MFModule(*train.shape, 16), DirectAUTask(train, 64, gamma=0.5)


def _seq_case(kind: str):  # noqa: ANN202
    split = planted_sequences().given_split
    seqs, n = Sequences.from_interactions(split.train), split.train.num_items
    if kind.startswith("sasrec"):
        module = SASRecModule(n, SASRecConfig(embedding_dim=16, max_len=10))
        return module, NextItemTask(seqs, 10, 32, n, num_negatives=8 if kind == "sasrec-sampled" else 0)
    return BERT4RecModule(n, BERT4RecConfig(embedding_dim=16, max_len=10)), MaskedItemTask(seqs, 10, 32, n, 0.3)


CASES = ["bpr", "lightgcn-softmax", "lightgcn-bpr", "simgcl", "xsimgcl", "directau", "sasrec", "sasrec-sampled",
         "bert4rec"]


@pytest.mark.parametrize("kind", CASES)
def test_nested_loss_is_the_weighted_sum_of_the_per_prefix_losses(kind: str) -> None:
    torch.manual_seed(0)
    module, task = _seq_case(kind) if kind.startswith(("sasrec", "bert4rec")) else _cf_case(kind)
    module.train()  # dropout and noise on: the random draws must be the same for every width
    batch = next(iter(task.batches(0, np.random.default_rng(0))))
    nested = MatryoshkaTask(task, TERMS)
    torch.manual_seed(1)
    total = nested.loss(module, batch, 0)
    total.backward()
    grads = [p.grad.clone() for p in module.parameters() if p.grad is not None]
    module.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    parts = nested.prefix_losses(module, batch, 0)  # each width on its own, separate forward passes
    separate = sum(w * parts[d] for d, w in TERMS)
    torch.testing.assert_close(total, separate, rtol=1e-5, atol=1e-6)
    separate.backward()
    for got, want in zip(grads, [p.grad for p in module.parameters() if p.grad is not None]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert len({round(float(v.detach()), 6) for v in parts.values()}) == len(TERMS)  # the widths differ


def test_bpr_prefix_loss_matches_the_formula_on_cut_tables() -> None:
    torch.manual_seed(0)
    module, task = _cf_case("bpr")
    batch = next(iter(task.batches(0, np.random.default_rng(0))))
    users, items = module()
    for dim in (4, 8, 16):
        u, p = users[batch.users, :dim], items[batch.pos_items, :dim]
        n = items[batch.neg_items, :dim]  # (B, k, d)
        diff = (u[:, None] * (p[:, None] - n)).sum(-1)
        want = F.softplus(-diff).mean() + 0.01 * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (2 * len(u))
        torch.testing.assert_close(task.loss(PrefixView(module, dim), batch, 0), want, rtol=1e-5, atol=1e-6)


def test_sasrec_prefix_loss_is_cross_entropy_on_cut_states_and_items() -> None:
    torch.manual_seed(0)
    module, task = _seq_case("sasrec")
    module.eval()  # no dropout: the reference below runs the encoder again
    batch = next(iter(task.batches(0, np.random.default_rng(0))))
    sel = batch.targets > 0
    hidden, table = module.encode(batch.inputs)[sel], module.item_table()
    for dim in (4, 16):
        want = F.cross_entropy(hidden[:, :dim] @ table[:, :dim].T, batch.targets[sel] - 1)
        torch.testing.assert_close(task.loss(PrefixView(module, dim), batch, 0), want, rtol=1e-5, atol=1e-6)


def test_trained_prefixes_beat_a_plain_models_prefixes() -> None:
    """Planted data: a 16-wide BPR cut to 4 coordinates ranks far worse than one trained with dims (4, 8, 16)."""
    split = planted_split()
    base = {"epochs": 40, "patience": 0, "embedding_dim": 16, "learning_rate": 0.01}
    plain = model_class("bpr")(**base).fit(split.train, options=QUIET)
    mrl = model_class("bpr")(**base, matryoshka_dims=(4, 8, 16)).fit(split.train, options=QUIET)
    got = {name: evaluate_prefixes(m, split, dims=[4, 16]) for name, m in (("plain", plain), ("mrl", mrl))}
    ndcg = {name: {d: v["test"]["ndcg@10"] for d, v in res.items()} for name, res in got.items()}
    assert ndcg["mrl"]["4"] > 1.25 * ndcg["plain"]["4"], ndcg
    assert ndcg["mrl"]["16"] > 0.9 * ndcg["plain"]["16"], ndcg  # the full width keeps its quality


def test_truncate_cuts_the_tables_and_keeps_the_original() -> None:
    split = planted_split()
    model = model_class("bpr")(epochs=1, patience=0, embedding_dim=16, matryoshka_dims=(4, 16)).fit(split.train,
                                                                                                     options=QUIET)
    small = truncate(model, 4)
    assert small.user_factors_.shape[1] == 4 and model.user_factors_.shape[1] == 16
    np.testing.assert_allclose(small.score(np.arange(3)), model.user_factors_[:3, :4] @ model.item_factors_[:, :4].T,
                               rtol=1e-5)
    with pytest.raises(ConfigError, match="dim"):
        truncate(model, 17)


def _fit_cli(name: str, *sets: str, data: str = "synthetic:tiny"):  # noqa: ANN202
    out = workdir() / f"mrl-{name}"
    if not (out / "metrics.json").exists():
        args = ["fit", name, "--data", data, "--out", str(out), "--no-progress", "--threads", "1"]
        for s in sets:
            args += ["--set", s]
        code, text = run_main(args)
        assert code == 0, text
    return out


@pytest.mark.parametrize("name", ["bpr", "sasrec"])
def test_bundle_at_a_prefix_serves_the_truncated_model(name: str) -> None:
    run_dir = _fit_cli(name, "epochs=2", "embedding_dim=16", "matryoshka_dims=4,8,16")
    metrics = read_json(run_dir / "metrics.json")
    assert set(metrics["matryoshka"]) == {"4", "8", "16"}
    assert metrics["matryoshka"]["16"]["test"]["ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"], abs=1e-9)
    out = workdir() / f"bundle-mrl-{name}"
    code, text = run_main(["bundle", str(run_dir), "--out", str(out), "--dim", "8", "--overwrite", "--no-progress"])
    assert code == 0, text
    bundle = load_bundle(out)
    assert bundle.manifest["metrics"]["matryoshka"]["dim"] == 8
    assert bundle.manifest["metrics"]["test"] == metrics["matryoshka"]["8"]["test"]
    run = load_run(run_dir)
    small = truncate(run.model, 8)
    users = np.array([0, 5, 9])
    np.testing.assert_allclose(bundle.model.score(users), small.score(users), rtol=1e-5, atol=1e-5)
    if name == "bpr":
        assert bundle.kind == "embedding" and bundle.manifest["serving"]["embedding_dim"] == 8
    service = RecService(bundle)
    answer = service.recommend_user(run.users.lookup(5), k=5)
    assert len(answer) == 5
    if name == "bpr":
        items, _ = small.recommend(5, k=5, exclude=bundle.seen(), exclude_seen=False)
        assert [a["item_id"] for a in answer] == list(run.items.lookup(items))


@pytest.mark.parametrize(("args", "flag"), [
    (["--dim", "17"], "--dim"),
    (["--dim", "0"], "--dim"),
    (["--dim", "x"], "--dim"),
])
def test_bad_dims_exit_2_naming_the_flag(args: list[str], flag: str) -> None:
    run_dir = _fit_cli("bpr", "epochs=2", "embedding_dim=16", "matryoshka_dims=4,8,16")
    code, text = run_main(["bundle", str(run_dir), "--out", str(workdir() / "bad-dim"), *args])
    assert code == 2 and flag in text and "Traceback" not in text, text


def test_a_model_without_embeddings_cannot_be_bundled_at_a_dim() -> None:
    run_dir = _fit_cli("pop")
    code, text = run_main(["bundle", str(run_dir), "--out", str(workdir() / "pop-dim"), "--dim", "8"])
    assert code == 2 and "--dim" in text and "embeddings" in text, text


@pytest.mark.parametrize(("model", "value", "field"), [
    ("bpr", "matryoshka_dims=8,4", "matryoshka_dims"),
    ("bpr", "matryoshka_dims=8,128", "matryoshka_dims"),
    ("bpr", "matryoshka_dims=a,b", "matryoshka_dims"),
    ("sasrec", "matryoshka_weights=1,2", "matryoshka_weights"),
    ("ease", "matryoshka_dims=8", "Matryoshka training is an option of"),
    ("tiger", "matryoshka_dims=8", "not for tiger"),
])
def test_bad_values_exit_2_naming_the_field(model: str, value: str, field: str) -> None:
    code, text = run_main(["fit", model, "--data", "synthetic:tiny", "--set", value, "--no-progress",
                           "--out", str(workdir() / "bad-fit")])
    assert code == 2 and field in text and "Traceback" not in text, text


def test_the_task_keeps_its_identity_and_tensors() -> None:
    """The trainer moves a task's tensor attributes (log-popularity) to the device: the task stays the object."""
    from recembed.compact.matryoshka import matryoshka_task

    _, task = _cf_case("lightgcn-softmax")
    cfg = model_class("lightgcn")(embedding_dim=16, matryoshka_dims=(4, 16)).config
    assert matryoshka_task(task, cfg) is task and isinstance(vars(task)["log_q"], torch.Tensor)
    assert task.loss == task.matryoshka.loss and task.matryoshka.terms == [(4, 1.0), (16, 1.0)]
