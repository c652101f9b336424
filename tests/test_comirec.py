"""ComiRec-SA (multi-interest sequential model): the learned interests split a planted two-interest history."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from recembed.data.interactions import Interactions
from recembed.errors import ConfigError, DataError
from recembed.models.registry import model_class
from recembed.options import FitOptions

from test_sequential import FAST, SequentialConformance

QUIET = FitOptions(show_progress=False, threads=1)
GROUP = 25  # items 0..24 are group 0, 25..49 group 1


def two_interest_sequences(seed: int = 3, num_users: int = 300, length: int = 12, switch: float = 0.25
                           ) -> Interactions:
    """Every user alternates between the two item groups in runs: the next item stays in the last item's group
    with probability ``1 - switch``, else moves to the other group (items uniform within a group; the first
    group at random). One vector follows the current run; a two-interest user keeps both groups."""
    rng = np.random.default_rng(seed)
    groups = (np.cumsum(rng.random((num_users, length)) < switch, axis=1) + rng.integers(2, size=(num_users, 1))) % 2
    items = groups * GROUP + rng.integers(GROUP, size=(num_users, length))
    users = np.repeat(np.arange(num_users), length)
    return Interactions(users, items.ravel(), num_users, 2 * GROUP,
                        timestamp=np.tile(np.arange(length), num_users).astype(np.int64))


@pytest.fixture(scope="module")
def planted() -> tuple[Interactions, Any, Any]:
    train = two_interest_sequences()
    params = {**FAST, "epochs": 30, "dropout": 0.0}
    comirec = model_class("comirec")(num_interests=2, **params).fit(train, options=QUIET)
    sasrec = model_class("sasrec")(**params).fit(train, options=QUIET)
    return train, comirec, sasrec


def _groups_in(top: np.ndarray) -> np.ndarray:
    """``(U,)`` number of distinct groups among each row's items."""
    g = top // GROUP
    return (g == 0).any(1).astype(int) + (g == 1).any(1).astype(int)


def test_each_learned_interest_aligns_to_one_group(planted) -> None:  # noqa: ANN001
    train, model, _ = planted
    users = np.arange(train.num_users)
    v = model.user_interests(users)  # (U, 2, D)
    assert v.shape == (train.num_users, 2, model.config.embedding_dim)
    top = np.argsort(-(v @ model.item_embeddings().T), axis=-1)[..., :10]  # (U, 2, 10) each interest's items
    share = (top // GROUP == 0).mean(-1)  # share of group 0 in each interest's top 10
    pure = (share >= 0.9) | (share <= 0.1)
    split = pure.all(1) & ((share[:, 0] >= 0.9) != (share[:, 1] >= 0.9))  # both pure, different groups
    assert split.mean() > 0.8, f"interests split the two groups for {split.mean():.2f} of users"


def test_multi_interest_list_covers_both_groups_single_vector_one(planted) -> None:  # noqa: ANN001
    train, comirec, sasrec = planted
    users = np.arange(train.num_users)
    ours, _ = comirec.recommend(users, k=10)
    single, _ = sasrec.recommend(users, k=10)
    assert (_groups_in(ours) == 2).mean() > 0.8
    assert (_groups_in(single) == 1).mean() > 0.8  # one vector: the group that comes next only
    # and the single vector is right about the next group: the multi-interest list keeps it in its list
    nxt = 1 - (np.asarray([train.item_idx[train.user_idx == u][-1] for u in users[:20]]) // GROUP)
    assert ((single[:20] // GROUP) == nxt[:, None]).mean() > 0.9
    assert ((ours[:20] // GROUP) == nxt[:, None]).any(1).all()


def test_recommend_multi_is_the_max_score_top_k(planted) -> None:  # noqa: ANN001
    train, model, _ = planted
    users = np.arange(0, train.num_users, 7)
    a, sa = model.recommend(users, k=15)
    b, sb = model.recommend_multi(users, k=15)
    np.testing.assert_allclose(sb, sa, rtol=1e-5, atol=1e-5)
    assert (a == b).mean() > 0.99  # ties aside, the same items
    items, scores = model.recommend_multi(3, k=5)
    assert items.shape == (5,) and not set(items.tolist()) & set(train.item_idx[train.user_idx == 3].tolist())
    scores = model.score_histories([[1, 2, 25]])
    v = model.interests([[1, 2, 25]])[0]
    np.testing.assert_allclose(scores[0], (v @ model.item_embeddings().T).max(0), rtol=1e-4, atol=1e-4)


def test_bad_input_is_a_clear_error(planted) -> None:  # noqa: ANN001
    _, model, _ = planted
    with pytest.raises(ConfigError, match="num_interests"):
        model_class("comirec")(num_interests=0)
    with pytest.raises(DataError, match="out of range"):
        model.interests([[0, 999]])


class TestComiRec(SequentialConformance):
    model_name = "comirec"
    params: ClassVar[dict[str, Any]] = {"epochs": 25, **FAST}
    # the fixture plants a strict order (next group after the last one); ComiRec's interests are weighted bags
    # of the history scored by a symmetric inner product, which cannot tell the next group from the previous
    # one (K = 1 reaches ~4.6x pop, K = 4 ~2.1x): it must still beat popularity clearly, not by 3x
    min_gain_over_pop: ClassVar[float] = 1.5
