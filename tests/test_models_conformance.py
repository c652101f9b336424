"""Every registered model passes the conformance suite (recembed.testing.conformance)."""

from __future__ import annotations

from recembed.models.registry import MODELS, model_class
from recembed.testing.conformance import ContentConformance, RecommenderConformance


class TestPop(RecommenderConformance):
    model_name = "pop"


class TestRandom(RecommenderConformance):
    model_name = "random"


class TestItemKNN(RecommenderConformance):
    model_name = "itemknn"
    params = {"k": 50}


class TestEASE(RecommenderConformance):
    model_name = "ease"
    params = {"l2": 50.0}


class TestBPR(RecommenderConformance):
    model_name = "bpr"
    params = {"epochs": 40, "learning_rate": 0.01, "batch_size": 1024, "patience": 0}


class TestLightGCN(RecommenderConformance):
    model_name = "lightgcn"
    params = {"epochs": 25, "learning_rate": 0.01, "batch_size": 1024, "num_layers": 2, "patience": 0}


class TestLightGCNXavier(RecommenderConformance):
    model_name = "lightgcn"
    params = {**TestLightGCN.params, "init": "xavier"}


def test_lightgcn_init_option_sets_the_layer0_scale() -> None:
    from recembed.options import FitOptions
    from recembed.testing.fixtures import planted_split

    train = planted_split().train.csr("binary")
    stds = {}
    for init in ("normal", "xavier"):
        model = model_class("lightgcn")(init=init)
        model._context = {}
        module, _ = model._build(train, FitOptions(show_progress=False))
        users, items = module.ego()
        stds[init] = (float(users.detach().std()), float(items.detach().std()))
    assert abs(stds["normal"][0] - 0.1) < 0.01
    for block, rows in zip(stds["xavier"], train.shape):
        assert abs(block - (2.0 / (rows + 64)) ** 0.5) < 0.15 * (2.0 / (rows + 64)) ** 0.5


class TestSimGCL(RecommenderConformance):
    model_name = "simgcl"
    # the fixture is tiny and dense: a strong contrastive weight (0.2) trades ranking for uniformity here
    params = {"epochs": 20, "learning_rate": 0.01, "batch_size": 1024, "patience": 0, "cl_weight": 0.02}


class TestXSimGCL(RecommenderConformance):
    model_name = "xsimgcl"
    params = {"epochs": 20, "learning_rate": 0.01, "batch_size": 1024, "patience": 0, "cl_weight": 0.02}


class TestGFCF(RecommenderConformance):
    model_name = "gfcf"
    params = {"num_factors": 32}


class TestBSPM(RecommenderConformance):
    model_name = "bspm"
    params = {"factor_dim": 32, "idl_beta": 0.2, "solver_shr": "rk4", "t_s": 2.5}


class TestMultVAE(RecommenderConformance):
    model_name = "multvae"
    params = {"epochs": 20, "hidden_dims": (64,), "latent_dim": 16, "batch_size": 32, "learning_rate": 3e-3,
              "patience": 0}


class TestDirectAU(RecommenderConformance):
    model_name = "directau"
    # weight decay keeps popular items' raw norms larger (scores are raw dot products): on the planted
    # fixture that is the difference between 1.1x and 1.9x popularity's NDCG@10
    params = {"epochs": 10, "embedding_dim": 32, "gamma": 0.4, "batch_size": 128, "learning_rate": 0.01,
              "weight_decay": 1e-3, "patience": 0}


def test_every_registered_model_has_a_conformance_class() -> None:
    import importlib
    from pathlib import Path

    for path in Path(__file__).parent.glob("test_*.py"):  # classes in other test files count when run alone too
        importlib.import_module(path.stem)

    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    covered = {getattr(c, "model_name", None) for c in subclasses(RecommenderConformance)}
    assert set(MODELS) <= covered, f"models without conformance tests: {set(MODELS) - covered}"


class TestVBPR(ContentConformance):
    model_name = "vbpr"
    params = {"epochs": 30, "learning_rate": 0.01, "batch_size": 1024, "patience": 0}


class TestBM3(ContentConformance):
    model_name = "bm3"
    params = {"epochs": 30, "learning_rate": 0.01, "batch_size": 512, "patience": 0}


class TestCEASE(ContentConformance):
    model_name = "cease"
    params = {"l2": 50.0, "content_weight": 20.0}
