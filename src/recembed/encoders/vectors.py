"""Precomputed content vectors (image / audio / text embeddings) from ``.npy`` or Parquet files, aligned
to the item vocabulary.

* ``.npy``: an ``(n, d)`` matrix. Row ``r`` belongs to item id ``ids[r]`` when ``ids`` is given; else to the
  ``r``-th item whose ``present`` mask entry is true when a mask is given; else to item *index* ``r`` (the MMRec
  convention: row = the dataset's item index), and then the file must have one row per item: with fewer rows,
  a missing middle row would silently shift every later item onto its neighbour's vector.
* Parquet: an id column (``item_id`` by default) and either one list column of floats or several
  numeric columns (all non-id columns, in file order).

float16 input is widened to float32. The result is ``(vectors (I, d) float32, present (I,) bool)``:
items the file does not cover get a zero row and ``present=False``; a NaN / inf value, a ragged list,
an id the vocabulary does not know (unless ``unknown="ignore"``), a duplicated id or a wrong width is an
error naming the file, the row and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.vocab import Vocabulary
from ..errors import DataError


def _matrix_from_parquet(path: Path, id_column: str) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", path=path) from None
    if id_column not in table.column_names:
        raise DataError(f"no id column {id_column!r}; columns: {table.column_names}", path=path, field=id_column)
    ids = np.asarray(table.column(id_column).cast(pa.string()).to_pylist(), dtype=object)
    others = [c for c in table.column_names if c != id_column]
    if not others:
        raise DataError("no vector column besides the id column", path=path)
    first = table.column(others[0])
    t = first.type
    if len(others) == 1 and (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        lists = first.to_pylist()
        widths = np.array([len(v) if v is not None else -1 for v in lists])
        if (widths < 0).any():
            raise DataError("missing (null) vector", path=path, line=int(np.flatnonzero(widths < 0)[0]),
                            field=others[0])
        if (widths != widths[0]).any():
            bad = int(np.flatnonzero(widths != widths[0])[0])
            raise DataError(f"vector of length {widths[bad]}, expected {widths[0]} like row 0", path=path,
                            line=bad, field=others[0])
        return ids, np.asarray(lists, dtype=np.float32)
    cols = []
    for c in others:
        col = table.column(c)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise DataError(f"expected a numeric column (or one list column), got {col.type}", path=path, field=c)
        cols.append(col.to_numpy(zero_copy_only=False).astype(np.float32))
    return ids, np.stack(cols, axis=1)


def load_vectors(path: str | Path, items: Vocabulary, *, ids: Sequence[str] | np.ndarray | None = None,
                 id_column: str = "item_id", dim: int | None = None, unknown: str = "error",
                 present: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a vector file and align it to ``items``; see the module docstring. ``present``: a ``(num_items,)``
    boolean missing mask for a ``.npy`` with fewer rows than items (row ``r`` = the ``r``-th present item)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path)
    if path.suffix == ".npy":
        try:
            matrix = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"not a readable .npy array ({exc})", path=path) from None
        row_ids = None if ids is None else np.asarray([str(x) for x in ids], dtype=object)
    elif path.suffix in (".parquet", ".pq"):
        row_ids, matrix = _matrix_from_parquet(path, id_column)
    else:
        raise DataError(f"unsupported vector file type {path.suffix!r}; expected .npy or .parquet", path=path)
    if matrix.ndim != 2:
        raise DataError(f"expected a 2-D (rows, dim) array, got shape {matrix.shape}", path=path)
    if not np.issubdtype(matrix.dtype, np.number):
        raise DataError(f"expected numbers, got dtype {matrix.dtype}", path=path)
    matrix = matrix.astype(np.float32, copy=False)  # float16 storage is widened here
    if dim is not None and matrix.shape[1] != dim:
        raise DataError(f"vectors have {matrix.shape[1]} dimensions, expected {dim}", path=path)
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise DataError(f"{int(bad.sum())} row(s) with NaN/inf values, first at row {int(np.flatnonzero(bad)[0])}",
                        path=path, line=int(np.flatnonzero(bad)[0]))
    n_items = len(items)
    if present is not None:
        if row_ids is not None:
            raise DataError("give row ids or a missing mask, not both", path=path)
        mask = np.asarray(present)
        if mask.shape != (n_items,) or not np.isin(mask, (0, 1)).all():
            raise DataError(f"the missing mask must hold {n_items} booleans (one per item), got shape {mask.shape}",
                            path=path)
        mask = mask.astype(bool)
        if int(mask.sum()) != matrix.shape[0]:
            raise DataError(f"{matrix.shape[0]} rows but the missing mask marks {int(mask.sum())} items present; "
                            "expected one row per present item, in item order", path=path)
        rows = np.flatnonzero(mask)
        src = np.arange(matrix.shape[0])
    elif row_ids is None:
        if matrix.shape[0] != n_items:
            raise DataError(f"{matrix.shape[0]} rows but the item vocabulary has {n_items} items; a .npy row is an "
                            "item index, so a missing row would shift every later item: give one row per item, or "
                            "say which rows are which: NAME=PATH,ids=IDS.txt (one item id a line, row order), "
                            "NAME=PATH,mask=MASK.npy (num_items booleans, True = has a row), or a Parquet file "
                            "with an item_id column", path=path)
        rows = np.arange(matrix.shape[0])
        src = np.arange(matrix.shape[0])
    else:
        if len(row_ids) != matrix.shape[0]:
            raise DataError(f"{len(row_ids)} ids for {matrix.shape[0]} rows", path=path)
        rows = items.index(row_ids, unknown="ignore" if unknown == "ignore" else "error", source=str(path))
        src = np.flatnonzero(rows >= 0)
        rows = rows[src]
        if len(np.unique(rows)) != len(rows):
            dup = int(src[np.flatnonzero(np.bincount(rows)[rows] > 1)[0]])
            raise DataError(f"item id {row_ids[dup]!r} appears more than once", path=path, line=dup)
    out = np.zeros((n_items, matrix.shape[1]), dtype=np.float32)
    out[rows] = matrix[src]
    present = np.zeros(n_items, dtype=bool)
    present[rows] = True
    return out, present
