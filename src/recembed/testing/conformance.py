"""The conformance suite: a test class for a model declares ``model_name`` and ``params`` and inherits
every check below (pytest collects them)::

    class TestEASE(RecommenderConformance):
        model_name = "ease"
        params = {"l2": 50.0}
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from ..config import build_config, config_to_dict
from ..errors import ConfigError, DataError, NotFittedError
from ..evaluation.ranking import evaluate
from ..models.registry import model_class
from .fixtures import planted_split


class RecommenderConformance:
    model_name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}
    #: how much better than popularity the model must rank held-out items on the planted fixture
    min_gain_over_pop: ClassVar[float] = 1.5

    @classmethod
    def fit_context(cls) -> dict[str, Any]:
        """Extra ``fit`` context (content models: ``item_table``)."""
        return {}

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls):  # noqa: ANN201
        split = planted_split()
        model = model_class(cls.model_name)(**cls.params).fit(split.train, **cls.fit_context())
        return model, split

    def _ndcg(self, model, split) -> float:  # noqa: ANN001
        return evaluate(model.score, split.test.csr(), split.train.csr(), ks=(10,)).summary["ndcg@10"]

    def test_name_matches_registry(self) -> None:
        assert model_class(self.model_name).name == self.model_name

    def test_learns_planted_signal(self, fitted) -> None:  # noqa: ANN001
        model, split = fitted
        pop = model_class("pop")().fit(split.train)
        ours, base = self._ndcg(model, split), self._ndcg(pop, split)
        if self.model_name == "pop":
            assert ours == pytest.approx(base)
        elif self.model_name == "random":  # the floor: planted tastes make popularity far better than chance
            assert ours < 0.5 * base, f"ndcg@10 {ours:.4f} vs pop {base:.4f}"
        else:
            assert ours > self.min_gain_over_pop * base, f"ndcg@10 {ours:.4f} vs pop {base:.4f}"

    def test_scores_shape_and_finite(self, fitted) -> None:  # noqa: ANN001
        model, split = fitted
        s = model.score(np.array([0, 1, 2]))
        assert s.shape == (3, split.train.num_items)
        assert s.dtype == np.float32
        assert np.isfinite(s).all()

    def test_batch_equals_single(self, fitted) -> None:  # noqa: ANN001
        model, _ = fitted
        users = np.array([3, 17, 42])
        items, scores = model.recommend(users, k=10)
        assert items.shape == (3, 10)
        for row, u in enumerate(users):
            single_items, single_scores = model.recommend(int(u), k=10)
            np.testing.assert_array_equal(single_items, items[row])
            np.testing.assert_allclose(single_scores, scores[row], rtol=1e-5)

    def test_exclude_seen(self, fitted) -> None:  # noqa: ANN001
        model, split = fitted
        train = split.train.csr()
        users = np.arange(20)
        items, _ = model.recommend(users, k=20)
        for row, u in enumerate(users):
            seen = set(train[u].indices.tolist())
            assert not seen & set(items[row].tolist())
        with_seen, _ = model.recommend(users, k=20, exclude_seen=False)
        if self.model_name not in ("pop",):
            assert any(set(train[u].indices.tolist()) & set(with_seen[r].tolist()) for r, u in enumerate(users))

    def test_unknown_user_index(self, fitted) -> None:  # noqa: ANN001
        model, split = fitted
        with pytest.raises(DataError, match="out of range"):
            model.recommend(split.train.num_users + 5)
        with pytest.raises(DataError, match="out of range"):
            model.score(np.array([-1]))

    def test_unfitted_raises(self) -> None:
        model = model_class(self.model_name)(**self.params)
        with pytest.raises(NotFittedError):
            model.recommend(0)

    def test_similar_items(self, fitted) -> None:  # noqa: ANN001
        model, _ = fitted
        items, scores = model.similar_items(5, k=5)
        assert items.shape == (5,) and 5 not in items.tolist()
        assert np.all(np.diff(scores) <= 1e-6)

    def test_save_load_roundtrip(self, fitted, tmp_path) -> None:  # noqa: ANN001
        model, _ = fitted
        model.save(tmp_path / "m")
        assert not list((tmp_path / "m").glob("*.pkl"))
        loaded = type(model).load(tmp_path / "m")
        users = np.arange(10)
        np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-6)
        assert config_to_dict(loaded.config) == config_to_dict(model.config)

    def test_config_roundtrip_and_unknown_key(self) -> None:
        cls = model_class(self.model_name)
        cfg = build_config(cls.Config, self.params)
        assert build_config(cls.Config, config_to_dict(cfg)) == cfg
        with pytest.raises(ConfigError, match="no_such_key"):
            cls(no_such_key=1)

    def test_params_not_mutated(self) -> None:
        params = dict(self.params)
        model_class(self.model_name)(**params)
        assert params == self.params


class ContentConformance(RecommenderConformance):
    """Conformance for content models: fitted with the planted fixture's item table (vector column
    ``content``). Subclass it like :class:`RecommenderConformance`."""

    @classmethod
    def fit_context(cls) -> dict[str, Any]:
        from .fixtures import planted_item_table

        return {"item_table": planted_item_table()}
