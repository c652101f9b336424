"""Small seeded datasets with a known answer."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..data.dataset import Dataset
from ..data.splits import Split, random_split
from ..data.synthetic import SyntheticConfig, generate


@lru_cache(maxsize=4)
def planted_dataset(seed: int = 7) -> Dataset:
    """~300 users x 200 items in 8 topics; users' future items come from their past topics."""
    return generate(SyntheticConfig(scale="tiny", seed=seed))


@lru_cache(maxsize=4)
def planted_split(seed: int = 7) -> Split:
    ds = planted_dataset(seed)
    return random_split(ds.interactions, ds.users, ds.items, (0.8, 0.1, 0.1), seed=seed)


def planted_item_table(seed: int = 7, noise: float = 0.2):  # noqa: ANN201
    """The planted dataset's item table plus ``content``: a vector column = one-hot of the item's category
    (which carries its topic) plus Gaussian noise, the kind of signal a content model should pick up."""
    import numpy as np

    from ..encoders import encode_categorical

    ds = planted_dataset(seed)
    onehot, _, _ = encode_categorical(ds.item_table["category"])
    rng = np.random.default_rng(seed)
    table = ds.item_table
    if "content" not in table:
        table.add("content", onehot + noise * rng.standard_normal(onehot.shape).astype(np.float32), "vector")
    return table


def cold_only_ndcg(score, split: Split, cold: np.ndarray, k: int = 10) -> float:  # noqa: ANN001
    """NDCG@k of ``split``'s test items when only the ``cold`` item indices are candidates; ``score`` maps
    user indices to ``(B, I)`` scores (a model's ``score``, or a random scorer as the floor)."""
    from ..evaluation.ranking import evaluate

    mask = np.full(split.train.num_items, -np.inf, dtype=np.float32)
    mask[cold] = 0
    return evaluate(lambda u: score(u) + mask, split.test.csr(), split.train.csr(), ks=(k,)).summary[f"ndcg@{k}"]


@lru_cache(maxsize=4)
def planted_sequences(seed: int = 7, num_users: int = 400, num_groups: int = 16, group_size: int = 10) -> Dataset:
    """Sequences with a planted order: items form ``num_groups`` groups of ``group_size``; a user's next item
    is, with probability 0.9, a uniformly drawn item of the *next* group (else any item). Popularity is flat,
    so only a model that reads the order can rank the next item; the item table's vector column ``content``
    (one-hot group + noise) lets a content model place items it never saw in training. Given split:
    leave-one-out by position."""
    from ..data.readers.formats import _sequence_dataset
    from ..data.tables import Table

    rng = np.random.default_rng(seed)
    seqs, user_ids = [], []
    for u in range(num_users):
        n = int(rng.integers(8, 25))
        g = int(rng.integers(num_groups))
        items = []
        for _ in range(n):
            group = g if rng.random() < 0.9 else int(rng.integers(num_groups))
            items.append(group * group_size + int(rng.integers(group_size)))
            g = (group + 1) % num_groups
        seqs.append([f"i{i}" for i in items])
        user_ids.append(f"u{u}")
    ds = _sequence_dataset("planted-sequences", user_ids, seqs)
    index = np.array([int(i[1:]) for i in ds.items.ids])
    onehot = np.eye(num_groups, dtype=np.float32)[index // group_size]
    table = Table(ds.num_items)
    table.add("content", onehot + 0.1 * rng.standard_normal(onehot.shape).astype(np.float32), "vector")
    ds.item_table = table
    ds.extras["item_group"] = index // group_size
    return ds


@lru_cache(maxsize=4)
def planted_ctr(seed: int = 0, rows: int = 4000, levels: int = 8, strength: float = 3.0):  # noqa: ANN201
    """A seeded CTR dataset (:class:`~recembed.ranking.datasets.CTRData`) whose click depends only on a *cross*
    of two categorical fields: ``P(click) = sigmoid(strength * T[a, b])`` with ``T`` a random ``levels x levels``
    +-1 table whose every row and column sums to zero (a random ``levels/2``-square sign table, Kronecker
    product with ``[[1, -1], [-1, 1]]``, rows and columns shuffled) and the ``(a, b)`` cells drawn equally
    often. So neither ``a`` nor ``b`` alone says anything: logistic regression stays near AUC 0.5 while any
    model of pairwise interactions approaches the Bayes AUC ``p^2 + p(1 - p)``, ``p = sigmoid(strength)``
    (0.95 at 3.0). Noise fields: ``c`` (categorical, 20 levels, also the GAUC user), ``x`` (numeric) and
    ``tags`` (1-3 of 6 tokens). Parts: a random 80 / 10 / 10 split of the rows."""
    from ..ranking.datasets import CTRData
    from ..ranking.schema import Field, Frame, Ragged

    if levels < 2 or levels % 2:
        raise ValueError(f"levels must be even and >= 2, got {levels}")
    rng = np.random.default_rng(seed)
    half = rng.choice(np.array([-1.0, 1.0]), size=(levels // 2, levels // 2))
    table = np.kron(half, np.array([[1.0, -1.0], [-1.0, 1.0]]))
    table = table[rng.permutation(levels)][:, rng.permutation(levels)]
    cells = rng.permutation(np.arange(rows) % (levels * levels))
    a, b = cells // levels, cells % levels
    c = rng.integers(20, size=rows)
    labels = (rng.random(rows) < 1.0 / (1.0 + np.exp(-strength * table[a, b]))).astype(np.float32)
    n_tags = rng.integers(1, 4, size=rows)
    tags = Ragged.from_lists([[f"t{t}" for t in rng.choice(6, size=k, replace=False)] for k in n_tags])
    users = np.asarray([f"u{v}" for v in c], dtype=object)
    cols = {"a": np.asarray([f"a{v}" for v in a], dtype=object), "b": np.asarray([f"b{v}" for v in b], dtype=object),
            "c": users, "x": rng.standard_normal(rows), "tags": tags}
    frame = Frame(cols, labels, users)
    order = rng.permutation(rows)
    cut1, cut2 = int(rows * 0.8), int(rows * 0.9)
    train, valid, test = (frame.take(np.sort(p)) for p in (order[:cut1], order[cut1:cut2], order[cut2:]))
    fields = [Field("a", "categorical"), Field("b", "categorical"), Field("c", "categorical"),
              Field("x", "numeric"), Field("tags", "tags")]
    return CTRData(f"planted-ctr-{seed}", fields, train, valid, test,
                   "planted cross: click = sigmoid(k * T[a, b]), no main effects")
