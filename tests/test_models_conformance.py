"""Every registered model passes the conformance suite (recembed.testing.conformance)."""

from __future__ import annotations

from recembed.models.registry import MODELS
from recembed.testing.conformance import RecommenderConformance


class TestPop(RecommenderConformance):
    model_name = "pop"


class TestItemKNN(RecommenderConformance):
    model_name = "itemknn"
    params = {"k": 50}


class TestEASE(RecommenderConformance):
    model_name = "ease"
    params = {"l2": 50.0}


class TestGFCF(RecommenderConformance):
    model_name = "gfcf"
    params = {"num_factors": 32}


def test_every_registered_model_has_a_conformance_class() -> None:
    covered = {cls.model_name for cls in RecommenderConformance.__subclasses__()}
    assert set(MODELS) <= covered, f"models without conformance tests: {set(MODELS) - covered}"
