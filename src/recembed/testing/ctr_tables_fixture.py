"""A tiny seeded CTR dataset with a planted user x item cross, and semantic IDs for its items (tests of the
embedding tables and the semantic-ID fields).

Users and items each fall in one of ``groups`` groups (``u % groups``, ``i % groups``); a row is a click with
probability 0.9 when the two groups match and 0.1 otherwise, so the signal is an interaction of the user and
item fields (a first-order model cannot see it; FM / DeepFM can). ``hist_items`` holds a few items of the user's
group (a ``sequence`` field sharing ``item_id``'s vocabulary); ``cate`` is the item's group.
"""

from __future__ import annotations

import numpy as np

from ..ranking.datasets import CTRData
from ..ranking.schema import Field, Frame, Ragged
from ..semantic.ids import SemanticIds


def planted_ctr(seed: int = 0, num_users: int = 60, num_items: int = 80, rows: int = 6000, groups: int = 4,
                hist_len: int = 3) -> CTRData:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, num_users, rows)
    i = rng.integers(0, num_items, rows)
    match = (u % groups) == (i % groups)
    labels = (rng.random(rows) < np.where(match, 0.9, 0.1)).astype(np.float32)
    per_group = num_items // groups
    hist = [[f"i{(u_ % groups) + groups * int(rng.integers(0, per_group))}" for _ in range(hist_len)] for u_ in u]
    users = np.asarray([f"u{x}" for x in u], dtype=object)
    cols = {"user_id": users, "item_id": np.asarray([f"i{x}" for x in i], dtype=object),
            "cate": np.asarray([f"c{x % groups}" for x in i], dtype=object),
            "hist_items": Ragged.from_lists(hist)}
    frame = Frame(cols, labels, users)
    fields = [Field("user_id", "categorical"), Field("item_id", "categorical"), Field("cate", "categorical"),
              Field("hist_items", "sequence", max_len=hist_len + 1, vocab_from="item_id")]
    order = rng.permutation(rows)
    a, b = int(rows * 0.8), int(rows * 0.9)
    train, valid, test = (frame.take(np.sort(order[s])) for s in (slice(0, a), slice(a, b), slice(b, rows)))
    return CTRData("planted-ctr", fields, train, valid, test, "planted user-group x item-group cross")


def planted_item_codes(num_items: int = 80, groups: int = 4, missing: int = 8) -> tuple[SemanticIds, np.ndarray]:
    """``(codes, item ids)`` for items ``i{missing}..i{num_items-1}`` (the first ``missing`` items have no code):
    level 1 the item's group, level 2 ``(i // groups) % 5``, level 3 ``i // (5 * groups)``."""
    items = np.arange(missing, num_items)
    codes = np.stack([items % groups, (items // groups) % 5, items // (5 * groups)], axis=1)
    sizes = (groups, 5, int(codes[:, 2].max()) + 1)
    return SemanticIds(codes, sizes, "planted"), np.asarray([f"i{x}" for x in items], dtype=object)
