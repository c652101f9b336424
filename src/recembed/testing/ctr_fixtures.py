"""Small seeded CTR datasets with a planted behaviour-sequence signal (for DIN / QIN tests).

* :func:`planted_sequence_ctr` -- items have categories; a row clicks exactly when the target's category is one
  of its history's categories (label noise aside). A first-order model (LR: one weight per token, history tokens
  averaged) cannot express "the target matches the history"; target attention can.
* :func:`planted_content_ctr` -- items carry a content vector (a ``vector`` field, a function of the item); a row
  clicks when the target's vector points the same way as its history's mean vector. Many items, each seen a few
  times, so the signal is easier to read from the content than to learn per item ID.

Both are random 80 / 10 / 10 splits of rows from a fixed seed.
"""

from __future__ import annotations

import numpy as np

from ..ranking.datasets import CTRData
from ..ranking.schema import Field, Frame, Ragged


def _split(name: str, fields: list[Field], frame: Frame, seed: int, description: str) -> CTRData:
    order = np.random.default_rng(seed + 1).permutation(len(frame))
    a, b = int(0.8 * len(frame)), int(0.9 * len(frame))
    parts = [frame.take(np.sort(order[s])) for s in (slice(0, a), slice(a, b), slice(b, None))]
    return CTRData(name, fields, *parts, description=description)


def _histories(rng: np.random.Generator, n_rows: int, n_items: int, min_len: int, max_len: int) -> list[np.ndarray]:
    lengths = rng.integers(min_len, max_len + 1, n_rows)
    return [rng.choice(n_items, size=k, replace=False) for k in lengths]


def planted_sequence_ctr(seed: int = 0, n_rows: int = 10000, n_users: int = 300, n_items: int = 120,
                         n_cates: int = 8, hist_len: tuple[int, int] = (2, 6), noise: float = 0.05) -> CTRData:
    """Click = the target's category appears among the history's categories (``noise`` of labels flipped).

    Half the targets are drawn from a category of the history (those click), half uniformly (which match about
    40% of the time), so about 70% of rows click and no category clicks more often than another on its own."""
    rng = np.random.default_rng(seed)
    cate_of = rng.integers(0, n_cates, n_items)
    by_cate = [np.flatnonzero(cate_of == c) for c in range(n_cates)]
    hists = _histories(rng, n_rows, n_items, *hist_len)
    targets = rng.integers(0, n_items, n_rows)
    matched = rng.random(n_rows) < 0.5
    for r in np.flatnonzero(matched):
        c = cate_of[rng.choice(hists[r])]
        targets[r] = rng.choice(by_cate[c])
    clicks = np.array([cate_of[t] in set(cate_of[h].tolist()) for t, h in zip(targets, hists)])
    flip = rng.random(n_rows) < noise
    labels = (clicks ^ flip).astype(np.float32)
    users = np.asarray([f"u{u}" for u in rng.integers(0, n_users, n_rows)], dtype=object)
    item_name = np.asarray([f"i{i}" for i in range(n_items)], dtype=object)
    cate_name = np.asarray([f"c{c}" for c in cate_of], dtype=object)
    cols = {"user_id": users, "item_id": item_name[targets], "cate": cate_name[targets],
            "hist_items": Ragged.from_lists([item_name[h] for h in hists]),
            "hist_cates": Ragged.from_lists([cate_name[h] for h in hists])}
    fields = [Field("user_id", "categorical"), Field("item_id", "categorical"), Field("cate", "categorical"),
              Field("hist_items", "sequence", vocab_from="item_id"),
              Field("hist_cates", "sequence", vocab_from="cate")]
    return _split("planted-seq-ctr", fields, Frame(cols, labels, users), seed,
                  "click = the target's category is in the history's")


def planted_content_ctr(seed: int = 0, n_rows: int = 8000, n_users: int = 300, n_items: int = 400, dim: int = 8,
                        hist_len: tuple[int, int] = (2, 6), noise: float = 0.05) -> CTRData:
    """Click = ``<c_target, mean_j c_hist_j> > 0`` for unit content vectors ``c`` (``noise`` of labels flipped)."""
    rng = np.random.default_rng(seed)
    content = rng.standard_normal((n_items, dim)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    hists = _histories(rng, n_rows, n_items, *hist_len)
    targets = rng.integers(0, n_items, n_rows)
    score = np.array([content[t] @ content[h].mean(0) for t, h in zip(targets, hists)])
    flip = rng.random(n_rows) < noise
    labels = ((score > 0) ^ flip).astype(np.float32)
    users = np.asarray([f"u{u}" for u in rng.integers(0, n_users, n_rows)], dtype=object)
    item_name = np.asarray([f"i{i}" for i in range(n_items)], dtype=object)
    cols = {"user_id": users, "item_id": item_name[targets], "content": content[targets],
            "hist_items": Ragged.from_lists([item_name[h] for h in hists])}
    fields = [Field("user_id", "categorical"), Field("item_id", "categorical"), Field("content", "vector"),
              Field("hist_items", "sequence", vocab_from="item_id")]
    return _split("planted-content-ctr", fields, Frame(cols, labels, users), seed,
                  "click = the target's content vector agrees with the history's mean")
