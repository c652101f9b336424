"""A seeded impression log with a planted signal, as an Arrow table a user would bring as a CTR file (for
``tests/test_ctr_files.py`` and ``benchmarks/ctr_stream.py``).

A row clicks with probability ``p_hit`` when ``(cat == "a") xor flag`` and ``1 - p_hit`` otherwise: a cross of
two fields that neither carries alone (a first-order model cannot see it, DeepFM's pairwise term can). The other
columns are what a log holds: an integer user id, a string item id, a float ``price`` (noise), ``genres`` (tags:
``list<string>``, or ``^``-joined strings with ``joined_tags``), a 4-d ``emb`` vector (``fixed_size_list``), an
integer time ``ts`` and the 0/1 label ``clicked``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def planted_impressions(n: int, seed: int = 0, *, p_hit: float = 0.9, users: int = 200, items: int = 500,
                        vector: bool = True, joined_tags: bool = False, start: int = 0) -> pa.Table:
    """``n`` impressions (rows ``start .. start + n - 1`` of the same seeded log: chunks written one after the
    other equal one call over all rows, so a benchmark can write a file larger than memory)."""
    rng = np.random.default_rng([seed, start])
    cat = np.asarray(["a", "b", "c", "d"], dtype=object)[rng.integers(0, 4, n)]
    flag = rng.random(n) < 0.5
    hit = (cat == "a") ^ flag
    clicked = np.where(rng.random(n) < np.where(hit, p_hit, 1 - p_hit), 1, 0).astype(np.int8)
    genre_names = np.asarray(["drama", "comedy", "news", "sport", "music"], dtype=object)
    g1, g2 = rng.integers(0, 5, n), rng.integers(0, 5, n)
    cols: dict[str, pa.Array] = {
        "user_id": pa.array(rng.integers(0, users, n)),
        "ad": pa.array(np.char.add("i", rng.integers(0, items, n).astype(str)).astype(object), pa.string()),
        "cat": pa.array(cat, pa.string()),
        "flag": pa.array(flag),
        "price": pa.array(rng.normal(10.0, 3.0, n)),
        "ts": pa.array(np.arange(start, start + n, dtype=np.int64) * 7),
        "clicked": pa.array(clicked),
    }
    if joined_tags:
        cols["genres"] = pa.array([f"{genre_names[a]}^{genre_names[b]}" for a, b in zip(g1, g2)], pa.string())
    else:
        flat = np.empty(2 * n, dtype=object)
        flat[0::2], flat[1::2] = genre_names[g1], genre_names[g2]
        cols["genres"] = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)),
                                                  pa.array(flat, pa.string()))
    if vector:
        values = pa.array(rng.normal(0, 1, 4 * n).astype(np.float32))
        cols["emb"] = pa.FixedSizeListArray.from_arrays(values, 4)
    return pa.table(cols)
