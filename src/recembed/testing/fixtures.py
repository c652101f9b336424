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
