"""Score-level ensembles (models/ensemble.py): conformance, the combination formula, member settings, the
save format, and the `recembed ensemble` command."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from recembed.cli.main import cli
from recembed.data.interactions import Interactions
from recembed.errors import ConfigError, DataError
from recembed.evaluation.ranking import evaluate
from recembed.models.base import Recommender
from recembed.models.ensemble import Ensemble, EnsembleConfig, member_params
from recembed.models.registry import model_class
from recembed.options import FitOptions
from recembed.testing.conformance import RecommenderConformance
from recembed.testing.fixtures import planted_split

BPR = "epochs=30;learning_rate=0.01;batch_size=1024;patience=0"


class TestEnsemble(RecommenderConformance):
    model_name = "ensemble"
    params = {"members": ("bpr", "ease"), "params": f"bpr.{BPR.replace(';', ';bpr.')};l2=50"}


def test_member_params_bare_keys_go_to_members_that_have_them() -> None:
    cfg = EnsembleConfig(members=("bpr", "ease", "bpr"), params="epochs=5; l2=10 ;bpr.learning_rate=0.1")
    assert member_params(cfg) == [{"epochs": "5", "learning_rate": "0.1"}, {"l2": "10"},
                                  {"epochs": "5", "learning_rate": "0.1"}]


@pytest.mark.parametrize(("params", "match"), [
    ("no_such=1", "'no_such' is not a setting of any member"),
    ("ease.epochs=3", "'epochs' is not a setting of member 'ease'"),
    ("epochs", "expected key=value"),
])
def test_member_params_errors(params: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        member_params(EnsembleConfig(members=("bpr", "ease"), params=params))


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="weights"):
        Ensemble(members=("pop", "ease"), weights=(1.0,))
    with pytest.raises(ConfigError, match="weights"):
        Ensemble(members=("pop", "ease"), weights=(0.0, 0.0))
    with pytest.raises(ConfigError, match="members"):
        Ensemble(members=())


@pytest.fixture(scope="module")
def members():
    split = planted_split()
    bpr = [model_class("bpr")(epochs=30, learning_rate=0.01, batch_size=1024, patience=0).fit(
        split.train, options=FitOptions(seed=s, show_progress=False)) for s in (1, 2, 3)]
    return split, bpr


def test_scores_are_the_weighted_mean_of_standardised_member_scores(members) -> None:
    split, bpr = members
    users = np.arange(7)
    ens = Ensemble.from_models(bpr, weights=[1.0, 2.0, 1.0])
    raw = [m.score(users).astype(np.float64) for m in bpr]
    z = [(s - s.mean(1, keepdims=True)) / s.std(1, keepdims=True) for s in raw]
    np.testing.assert_allclose(ens.score(users), 0.25 * z[0] + 0.5 * z[1] + 0.25 * z[2], rtol=1e-4, atol=1e-5)
    mean = Ensemble.from_models(bpr, combine="mean")
    np.testing.assert_allclose(mean.score(users), sum(raw) / 3, rtol=1e-5, atol=1e-5)


def test_seed_ensemble_ranks_no_worse_than_its_average_member(members) -> None:
    split, bpr = members

    def ndcg(model: Recommender) -> float:
        return evaluate(model.score, split.test.csr(), split.train.csr(), ks=(10,)).summary["ndcg@10"]

    single = [ndcg(m) for m in bpr]
    assert ndcg(Ensemble.from_models(bpr)) >= np.mean(single) - 0.005, single


def test_fit_seeds_members_in_turn() -> None:
    split = planted_split()
    params = {"members": ("bpr", "bpr"), "params": BPR.replace("30", "3")}
    ens = Ensemble(**params).fit(split.train, options=FitOptions(seed=11, show_progress=False))
    alone = [model_class("bpr")(epochs=3, learning_rate=0.01, batch_size=1024, patience=0).fit(
        split.train, options=FitOptions(seed=s, show_progress=False)) for s in (11, 12)]
    for m, ref in zip(ens.members_, alone, strict=True):
        np.testing.assert_allclose(m.score(np.arange(5)), ref.score(np.arange(5)), rtol=1e-5, atol=1e-6)
    assert not np.allclose(ens.members_[0].score(np.arange(5)), ens.members_[1].score(np.arange(5)))


def test_similar_items_combine_the_members_similarities(members) -> None:
    _, bpr = members
    cos = []
    for m in bpr[:2]:
        e = m.item_embeddings() / np.linalg.norm(m.item_embeddings(), axis=1, keepdims=True)
        cos.append(e @ e[4])
    items, scores = Ensemble.from_models(bpr[:2], combine="mean").similar_items(4, k=5)
    np.testing.assert_allclose(scores, (cos[0][items] + cos[1][items]) / 2, rtol=1e-4, atol=1e-5)
    z = [(c - c.mean()) / c.std() for c in cos]
    items, scores = Ensemble.from_models(bpr[:2]).similar_items(4, k=5)
    np.testing.assert_allclose(scores, (z[0][items] + z[1][items]) / 2, rtol=1e-4, atol=1e-4)
    assert 4 not in items.tolist()


def test_members_must_share_users_and_items(members) -> None:
    split, bpr = members
    train = split.train
    fewer_items = Interactions(train.user_idx, train.item_idx, train.num_users, train.num_items + 1)
    other = model_class("pop")().fit(fewer_items)
    with pytest.raises(DataError, match="different users x items"):
        Ensemble.from_models([bpr[0], other])


def test_missing_member_is_a_clear_error(members, tmp_path) -> None:
    _, bpr = members
    Ensemble.from_models(bpr[:2]).save(tmp_path / "e")
    import shutil

    shutil.rmtree(tmp_path / "e" / "members" / "1")
    with pytest.raises(DataError, match="member 1"):
        Recommender.load(tmp_path / "e")


def test_cli_fit_ensemble_records_each_members_training(tmp_path) -> None:
    res = CliRunner().invoke(cli, ["fit", "ensemble", "--data", "synthetic:tiny", "--out", str(tmp_path / "e"),
                                   "--no-progress", "--set", "members=bpr,bpr",
                                   "--set", "params=epochs=3;patience=0;learning_rate=0.01"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert [x["model"] for x in m["members"]] == ["bpr", "bpr"]
    assert all(x["epochs_run"] == 3 for x in m["members"])
    assert (tmp_path / "e" / "model" / "members" / "1" / "model.safetensors").exists()


def test_cli_ensemble_of_runs(tmp_path) -> None:
    runner = CliRunner()
    for model, sets in (("pop", []), ("ease", ["--set", "l2=50"])):
        res = runner.invoke(cli, ["fit", model, "--data", "synthetic:tiny", "--out", str(tmp_path / model),
                                  "--no-progress", *sets])
        assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["ensemble", str(tmp_path / "pop"), str(tmp_path / "ease"), "--weights", "1,3",
                              "--out", str(tmp_path / "ens"), "--no-progress"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    ease = json.loads((tmp_path / "ease" / "metrics.json").read_text())
    assert m["model"] == "ensemble" and m["split_hash"] == ease["split_hash"]
    assert 0 < m["test"]["ndcg@10"] <= 1
    res = runner.invoke(cli, ["evaluate", str(tmp_path / "ens")])  # the run loads and re-scores identically
    assert res.exit_code == 0, res.output
    assert "matches the stored test metrics: True" in res.output
    res = runner.invoke(cli, ["fit", "pop", "--data", "synthetic:tiny", "--seed", "5", "--out",
                              str(tmp_path / "pop5"), "--no-progress"])
    res = runner.invoke(cli, ["ensemble", str(tmp_path / "pop5"), str(tmp_path / "ease"), "--out",
                              str(tmp_path / "bad")])
    assert res.exit_code != 0 and "split_hash differs" in str(res.exception)


def test_members_checkpoint_in_their_own_folders_and_resume(tmp_path) -> None:
    split = planted_split()
    params = {"members": ("bpr", "bpr"), "params": BPR.replace("30", "4") + ";checkpoint_every=1"}
    opts = FitOptions(seed=3, show_progress=False, checkpoint_dir=str(tmp_path / "ck"))
    first = Ensemble(**params).fit(split.train, options=opts)
    assert (tmp_path / "ck" / "member-0" / "checkpoint.json").exists()
    assert (tmp_path / "ck" / "member-1" / "checkpoint.json").exists()
    resumed = Ensemble(**params).fit(split.train, options=replace(opts, resume=True))
    np.testing.assert_allclose(resumed.score(np.arange(6)), first.score(np.arange(6)), rtol=1e-5, atol=1e-6)
