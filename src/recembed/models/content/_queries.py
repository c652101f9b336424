"""Helpers of the query-aware model (:mod:`.queryue`): training queries from an item column, item texts, the
users' recent items."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...errors import ConfigError, DataError

_AUTO_TEXT = ("title", "summary", "description", "text")


def item_queries(table: Any, column: str, template: str = "{}") -> tuple[list[str], sp.csr_matrix]:
    """``(query texts (Q,), item x query (I, Q) CSR)`` from a tags / categorical item column ("" = the first tags
    column, else the first categorical one); each distinct category becomes ``template.format(category)``."""
    if table is None:
        raise ConfigError("queryue needs an item table with a tags or categorical column of categories (genres)")
    names = [column] if column else (table.names("tags") or table.names("categorical"))
    if not names:
        raise ConfigError("query_column: the item table has no tags / categorical column to build queries from; "
                          f"columns: {table.names()}")
    name = names[0]
    if name not in table.names() or table.kinds[name] not in ("tags", "categorical"):
        raise ConfigError(f"query_column: {name!r} is not a tags / categorical column; tags: {table.names('tags')}, "
                          f"categorical: {table.names('categorical')}")
    values = table[name]
    rows = [tuple(v) if table.kinds[name] == "tags" else (() if v is None or v == "" else (v,)) for v in values]
    cats = sorted({str(c) for r in rows for c in r if str(c).strip()})
    pos = {c: j for j, c in enumerate(cats)}
    lens = [sum(str(c) in pos for c in r) for r in rows]
    cols = [pos[str(c)] for r in rows for c in r if str(c) in pos]
    m = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (np.repeat(np.arange(len(rows)), lens), cols)),
                      shape=(len(rows), len(cats)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return [template.format(c) for c in cats], m


def item_texts(table: Any, columns: str) -> list[str]:
    """One text per item: the chosen text columns joined with '. ' (empty parts skipped)."""
    text_cols = table.names("text") if table is not None else []
    names = [c for c in columns.split(",") if c] or [c for c in _AUTO_TEXT if c in text_cols] or text_cols
    if not names:
        raise ConfigError("text_columns: the item table has no text columns (use item_content=vectors)")
    for n in names:
        if n not in text_cols:
            raise ConfigError(f"text_columns: {n!r} is not a text column; text columns: {text_cols}")
    parts = [table[n] for n in names]
    return [". ".join(str(p[i]) for p in parts if p[i] is not None and str(p[i]).strip())
            for i in range(table.num_rows)]


def last_items(indptr: np.ndarray, items: np.ndarray, length: int) -> np.ndarray:
    """``(U, length)`` int64: each user's last ``length`` items (oldest first), left-padded with -1."""
    counts = np.diff(indptr)
    out = np.full((len(counts), length), -1, dtype=np.int64)
    take = np.minimum(counts, length)
    rows = np.repeat(np.arange(len(counts)), take)
    within = np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)  # 0..take-1 per user
    src = np.repeat(indptr[1:] - take, take) + within
    out[rows, length - np.repeat(take, take) + within] = items[src]
    return out


def _per_user(queries: Sequence[str] | str | None, n: int) -> list[str]:
    out = [queries] * n if isinstance(queries, str) or queries is None else list(queries)
    if len(out) != n:
        raise DataError(f"{len(out)} queries for {n} users", field="query")
    return out
