"""Data hygiene that tells: missing-looking ids, repeated (user, item) pairs, pairs in two split parts,
undecodable text. Each check either fixes the data under an explicit, documented policy and says how much it
changed, or fails with a :class:`~recembed.errors.DataError` naming the file, the row and the field.

Duplicate policies (``duplicates=``, the CLI's ``--duplicates``):

* ``keep`` -- every event stays an event (the user x item matrix is still binary; ``csr("count")`` counts);
* ``drop`` (default for own data) -- one event per pair: its first (earliest timestamp, file order on ties);
* ``sum`` -- one event per pair at its first event's place: ``weight`` = the events' summed weights (1 each
  without a weight column), ``rating`` = their mean, ``timestamp`` = the first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError
from .interactions import Interactions

DUPLICATE_POLICIES = ("keep", "drop", "sum")
# ids that are a missing value written out by pandas / Python / JSON / R, not a real id
MISSING_ID_TOKENS = ("", "nan", "none", "null", "<na>", "nat")


def check_ids(values: pa.Array | np.ndarray, *, path: str | Path | None, field: str,
              line_of: Callable[[int], int | None] | None = None, row_base: str = "row") -> None:
    """Refuse null, empty and literal ``NaN`` / ``None`` / ``null`` ids: a DataError naming the file, the line
    (``line_of(row)``, else the 0-based row) and the field."""
    arr = values if isinstance(values, pa.Array) else pa.array(np.asarray(values, dtype=object), type=pa.string())
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    token = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
    bad = pc.or_kleene(pc.is_null(arr), pc.is_in(token, value_set=pa.array(MISSING_ID_TOKENS)))
    bad = bad.to_numpy(zero_copy_only=False)
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    value = arr[row].as_py()
    shown = "a null" if value is None else ("an empty value" if not value.strip() else f"{value!r}")
    line = line_of(row) if line_of is not None else None
    where = "" if line is not None else f" at {row_base} {row} (0-based)"
    raise DataError(f"{shown} where an id was expected{where} ({int(bad.sum())} such row(s)); ids must not be "
                    "missing: drop or fill those rows", path=path, line=line, field=field)


def first_pair_events(inter: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """``(first, group)``: the index of each pair's first event (time order, file order on ties), in event
    order, and for every event the position of its pair in ``first``."""
    key = inter.pairs_key()
    t = inter.timestamp if inter.timestamp is not None else np.zeros(len(inter))
    order = np.lexsort((np.arange(len(inter)), t, key))  # by pair, then time, then file order
    k = key[order]
    starts = np.ones(len(k), dtype=bool)
    starts[1:] = k[1:] != k[:-1]
    first_sorted = order[starts]
    group_sorted = np.cumsum(starts) - 1
    keep = np.sort(first_sorted)  # keep event order
    rank = np.empty(len(first_sorted), dtype=np.int64)
    rank[np.argsort(first_sorted)] = np.arange(len(first_sorted))
    group = np.empty(len(inter), dtype=np.int64)
    group[order] = rank[group_sorted]
    return keep, group


def apply_duplicates(inter: Interactions, policy: str) -> tuple[Interactions, int]:
    """Apply a duplicate policy (see the module docstring); returns the new events and the number of
    events that repeated an earlier pair."""
    if policy not in DUPLICATE_POLICIES:
        raise DataError(f"duplicates policy must be one of {DUPLICATE_POLICIES}, got {policy!r}",
                        field="duplicates")
    n_dup = inter.num_duplicates()
    if policy == "keep" or n_dup == 0:
        return inter, n_dup
    keep, group = first_pair_events(inter)
    if policy == "drop":
        return inter.subset(keep), n_dup
    weights = np.ones(len(inter)) if inter.weight is None else inter.weight.astype(np.float64)
    weight = np.bincount(group, weights=weights, minlength=len(keep))
    rating = None
    if inter.rating is not None:
        rating = np.bincount(group, weights=inter.rating, minlength=len(keep)) / np.bincount(group)
    return Interactions(inter.user_idx[keep], inter.item_idx[keep], inter.num_users, inter.num_items,
                        rating=rating, timestamp=None if inter.timestamp is None else inter.timestamp[keep],
                        weight=weight), n_dup


def non_utf8_error(path: str | Path) -> DataError:
    """The DataError for a file that is not UTF-8: names the 1-based line and the byte in it (found by
    decoding line by line; only called once decoding failed)."""
    path = Path(path)
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataError(f"not UTF-8 text (byte {exc.start + 1} of the line: {raw[exc.start:exc.start + 1]!r}"
                                 "); save the file as UTF-8", path=path, line=lineno)
    return DataError("not UTF-8 text; save the file as UTF-8", path=path)
