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
