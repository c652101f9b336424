"""Own data in: an interactions table plus optional item and user tables, from CSV / TSV / Parquet files,
pandas DataFrames or Arrow tables, with a column mapping.

``columns`` maps the roles ``user``, ``item``, ``time``, ``rating``, ``weight`` to column names (``"user=uid,
item=movie"`` or a dict). Without a mapping a role takes the first of its usual names that the table has
(``user_id``/``user``/``userId``..., ``item_id``/``item``/``itemId``..., ``timestamp``/``time``/``date``, ``rating``,
``weight``); ``user`` and ``item`` are required. ``time`` may be numbers or ISO dates (stored as seconds).

The item table is keyed by the item column's name (or ``item_id``); its other columns become item attributes:
numbers -> ``numeric``, list-of-float (Parquet / Arrow) -> ``vector``, strings -> ``text`` (names like title,
description, or values with spaces) else ``categorical``. Items listed only in the item table are added to the
item vocabulary after those with events (content models can recommend them); the user table likewise.
Repeated (user, item) pairs follow ``duplicates`` (:mod:`recembed.data.hygiene`; default ``drop``).
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import ConfigError, DataError
from ..dataset import Dataset
from ..hygiene import apply_duplicates, check_ids, non_utf8_error
from ..interactions import Interactions
from ..tables import Table
from ..vocab import Vocabulary
from .delimited import line_of_row, read_delimited

ROLES = ("user", "item", "time", "rating", "weight")
ALIASES = {
    "user": ("user_id", "user", "userId", "userID", "uid"),
    "item": ("item_id", "item", "itemId", "itemID", "iid"),
    "time": ("timestamp", "time", "ts", "date", "datetime"),
    "rating": ("rating",),
    "weight": ("weight",),
}
TEXT_NAMES = ("title", "name", "text", "desc", "description", "summary", "review", "plot", "overview")


class DuplicatesWarning(UserWarning):
    """Repeated (user, item) pairs were dropped or summed (the message counts them)."""


@dataclass
class _Source:
    label: str  # a file path or "interactions" / "items" / "users"
    line_of: Callable[[int], int | None] | None = None  # 0-based data row -> 1-based file line

    def error(self, message: str, row: int | None = None, field: str | None = None) -> DataError:
        line = self.line_of(row) if (row is not None and self.line_of is not None) else None
        at = f" (row {row}, 0-based)" if row is not None and line is None else ""
        return DataError(message + at, path=self.label, line=line, field=field)


def parse_columns(spec: str | Mapping[str, str] | None, roles: tuple[str, ...] = ROLES) -> dict[str, str]:
    """``"user=uid,item=movie,time=ts"`` (or a dict) -> ``{role: column}``; roles not in ``roles`` are an error
    (an impression file's roles: :data:`recembed.ranking.ctr_files.CTR_ROLES`)."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, str):
        pairs = [p.partition("=") for p in spec.split(",") if p.strip()]
        bad = [a for a, sep, b in pairs if not sep or not a.strip() or not b.strip()]
        if bad:
            raise ConfigError(f"--columns: expected role=column pairs separated by commas, got {spec!r}")
        spec = {a.strip(): b.strip() for a, _, b in pairs}
    unknown = sorted(set(spec) - set(roles))
    if unknown:
        raise ConfigError(f"--columns: unknown role(s) {unknown}; roles are {list(roles)}")
    return dict(spec)


def _resolve(names: list[str], columns: dict[str, str], source: _Source) -> dict[str, str]:
    out = {}
    for role in ROLES:
        if role in columns:
            if columns[role] not in names:
                raise DataError(f"no column {columns[role]!r} (--columns {role}={columns[role]}); the table has "
                                f"{names}", path=source.label, field=columns[role])
            out[role] = columns[role]
            continue
        found = next((a for a in ALIASES[role] if a in names), None)
        if found is not None:
            out[role] = found
        elif role in ("user", "item"):
            raise DataError(f"no {role} column: expected one of {list(ALIASES[role])} or a mapping "
                            f"(--columns {role}=NAME); the table has {names}", path=source.label)
    return out


# -- files -> Arrow tables ------------------------------------------------------------------------
def _csv_header(path: Path, delimiter: str) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh, delimiter=delimiter), [])
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    if not header:
        raise DataError("empty file; expected a header line with column names", path=path, line=1)
    return header


def read_table_file(path: str | Path) -> tuple[pa.Table, _Source]:
    """A CSV / TSV (header required) or Parquet file as an Arrow table; CSV columns are read as strings
    (ragged rows and bad quoting are errors naming the line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path), _Source(str(path))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"not a readable Parquet file ({exc})", path=path) from None
    if suffix not in (".csv", ".tsv", ".tab", ".txt"):
        raise DataError(f"expected a .csv, .tsv or .parquet file, got {path.suffix!r}", path=path)
    delimiter = "\t" if suffix in (".tsv", ".tab") else ","
    header = _csv_header(path, delimiter)
    if len(set(header)) != len(header):
        raise DataError(f"repeated column names in the header {header}", path=path, line=1)
    cols = read_delimited(path, {name: "text" for name in header}, delimiter=delimiter)
    table = pa.table({k: pa.array(v.tolist(), type=pa.string()) for k, v in cols.items()})
    quoting = delimiter == ","
    return table, _Source(str(path), lambda row: line_of_row(path, row, delimiter=delimiter, quoting=quoting))


def _as_arrow(obj: Any, label: str) -> pa.Table:
    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, Mapping):
        return pa.table({k: np.asarray(v) if not isinstance(v, (pa.Array, pa.ChunkedArray)) else v
                         for k, v in obj.items()})
    if type(obj).__module__.startswith("pandas"):
        return pa.Table.from_pandas(obj, preserve_index=False)
    raise DataError(f"{label}: expected a pandas DataFrame, an Arrow table or a dict of columns, got "
                    f"{type(obj).__name__}")


# -- column conversions --------------------------------------------------------------------------
def _ids(col: pa.ChunkedArray | pa.Array, source: _Source, field: str) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_floating(arr.type):  # integer ids with a hole become floats in pandas: 3.0 -> "3"
        vals = arr.to_numpy(zero_copy_only=False)
        whole = np.isfinite(vals) & (vals == np.round(vals))
        if whole.all():
            arr = pa.array(vals.astype(np.int64))
    check_ids(arr, path=source.label, field=field, line_of=source.line_of)
    return pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))


def _numbers(col: pa.ChunkedArray | pa.Array, source: _Source, field: str, *, time: bool = False) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if time and (pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type)):
        arr = pc.cast(pc.cast(arr, pa.timestamp("s")) if pa.types.is_date(arr.type) else arr, pa.timestamp("s"))
        arr = pc.cast(arr, pa.int64())
    elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        text = pc.utf8_trim_whitespace(arr)
        try:
            arr = pc.cast(text, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if not time:
                raise _first_bad_number(text, source, field) from None
            try:
                arr = pc.cast(pc.cast(text, pa.timestamp("s")), pa.int64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise _first_bad_number(text, source, field, dates=True) from None
    try:
        out = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise source.error(f"expected numbers, found type {arr.type}", field=field) from None
    bad = ~np.isfinite(out)
    if bad.any():
        raise source.error(f"a missing or NaN/inf value ({int(bad.sum())} such row(s)); expected a number",
                           int(np.flatnonzero(bad)[0]), field)
    return out


def _first_bad_number(text: pa.Array, source: _Source, field: str, dates: bool = False) -> DataError:
    for row, value in enumerate(text.to_pylist()):
        try:
            float(value)
        except (TypeError, ValueError):
            if dates:
                try:
                    pc.cast(pa.array([value]), pa.timestamp("s"))
                    continue
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    pass
            expected = "a number or an ISO date (2024-01-31 or 2024-01-31T12:00:00)" if dates else "a number"
            return source.error(f"expected {expected}, found {value!r}", row, field)
    return source.error("a value is not a number", field=field)


def _kind(name: str, arr: pa.Array) -> str:
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "vector"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return "numeric"
    text = pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))
    filled = pc.filter(text, pc.greater(pc.utf8_length(text), 0))
    if len(filled):
        try:
            pc.cast(filled, pa.float64())
            return "numeric"
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if any(t in name.lower() for t in TEXT_NAMES):
        return "text"
    spaces = pc.sum(pc.cast(pc.match_substring(filled, " "), pa.int64())).as_py() or 0
    return "text" if len(filled) and spaces / len(filled) >= 0.5 else "categorical"


def _attribute_table(table: pa.Table, key: str, vocab: Vocabulary, source: _Source) -> Table:
    ids = _ids(table.column(key), source, key)
    rows = vocab.index(ids, source=source.label)
    order = np.argsort(rows, kind="stable")
    repeated = np.flatnonzero(np.diff(rows[order]) == 0)
    if len(repeated):
        row = int(order[repeated[0] + 1])
        raise source.error(f"id {ids[row].as_py()!r} has more than one row (first at row {int(order[repeated[0]])}"
                           "); expected one row per id", row, key)
    columns: dict[str, tuple[str, Any]] = {}
    for name in table.column_names:
        if name == key:
            continue
        arr = table.column(name).combine_chunks()
        kind = _kind(name, arr)
        if kind == "vector":
            lists = arr.to_pylist()
            if any(v is None for v in lists) or len({len(v) for v in lists}) > 1:
                raise source.error("vector column rows must all be present and of one length", field=name)
            values: Any = np.asarray(lists, dtype=np.float32)
        elif kind == "numeric" and not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)  # nulls -> NaN (missing)
        elif kind == "numeric":
            text = pc.utf8_trim_whitespace(arr)
            text = pc.if_else(pc.equal(text, ""), pa.scalar(None, type=pa.string()), text)
            values = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
        else:
            values = np.asarray(pc.fill_null(pc.cast(arr, pa.string()), "").to_pylist(), dtype=object)
        columns[name] = (kind, values)
    return Table.from_rows(len(vocab), rows, columns, source=source.label)


def _key_column(table: pa.Table, role: str, mapped: str, source: _Source) -> str:
    for name in (mapped, f"{role}_id", *ALIASES[role]):
        if name in table.column_names:
            return name
    raise DataError(f"no {role} id column: expected {mapped!r} (the interactions' {role} column) or "
                    f"'{role}_id'; the table has {table.column_names}", path=source.label)


# -- the one builder -------------------------------------------------------------------------------
def build_own_dataset(interactions: pa.Table, source: _Source, *, items: tuple[pa.Table, _Source] | None = None,
                      users: tuple[pa.Table, _Source] | None = None, columns: str | Mapping[str, str] | None = None,
                      duplicates: str = "drop", name: str = "data") -> Dataset:
    """Vocabularies, events under the duplicate policy, and attribute tables (see the module docstring)."""
    roles = _resolve(interactions.column_names, parse_columns(columns), source)
    u = _ids(interactions.column(roles["user"]), source, roles["user"])
    i = _ids(interactions.column(roles["item"]), source, roles["item"])
    values = {key: _numbers(interactions.column(roles[role]), source, roles[role], time=role == "time")
              for role, key in (("time", "timestamp"), ("rating", "rating"), ("weight", "weight")) if role in roles}
    item_key = None if items is None else _key_column(items[0], "item", roles["item"], items[1])
    user_key = None if users is None else _key_column(users[0], "user", roles["user"], users[1])
    item_keys = None if items is None else _ids(items[0].column(item_key), items[1], item_key)
    users_keys = None if users is None else _ids(users[0].column(user_key), users[1], user_key)
    user_vocab = Vocabulary.from_values(u, *([users_keys] if users_keys is not None else []), name="user")
    item_vocab = Vocabulary.from_values(i, *([item_keys] if item_keys is not None else []), name="item")
    inter = Interactions(user_vocab.index(u, source=source.label), item_vocab.index(i, source=source.label),
                         len(user_vocab), len(item_vocab), rating=values.get("rating"),
                         timestamp=values.get("timestamp"), weight=values.get("weight"))
    inter, n_dup = apply_duplicates(inter, duplicates)
    if n_dup and duplicates != "keep":
        verb = "dropped (each pair's first event kept)" if duplicates == "drop" else "summed into one event per pair"
        warnings.warn(f"{source.label}: {n_dup} event(s) repeat an earlier (user, item) pair: {verb}; "
                      "duplicates='keep' (--duplicates keep) keeps them", DuplicatesWarning, stacklevel=2)
    ds = Dataset(name, user_vocab, item_vocab, inter)
    ds.extras["duplicates"] = {"policy": duplicates, "repeated_events": n_dup}
    if items is not None:
        ds.item_table = _attribute_table(items[0], item_key, item_vocab, items[1])
    if users is not None:
        ds.user_table = _attribute_table(users[0], user_key, user_vocab, users[1])
    return ds


def read_own(path: str | Path, *, items: str | Path | None = None, users: str | Path | None = None,
             columns: str | Mapping[str, str] | None = None, duplicates: str = "drop",
             name: str | None = None) -> Dataset:
    """An interactions file (CSV / TSV / Parquet) with optional item and user table files."""
    path = Path(path)
    table, source = read_table_file(path)
    side = {k: read_table_file(p) if p is not None else None for k, p in (("items", items), ("users", users))}
    return build_own_dataset(table, source, items=side["items"], users=side["users"], columns=columns,
                             duplicates=duplicates, name=name or path.stem)


def dataset_from_frames(interactions: Any, items: Any = None, users: Any = None, *,
                        columns: str | Mapping[str, str] | None = None, duplicates: str = "drop",
                        name: str = "data") -> Dataset:
    """:meth:`Dataset.from_pandas` / :meth:`Dataset.from_arrow`: in-memory tables (rows named 0-based)."""
    side = {k: (_as_arrow(v, k), _Source(k)) if v is not None else None for k, v in (("items", items),
                                                                                      ("users", users))}
    return build_own_dataset(_as_arrow(interactions, "interactions"), _Source("interactions"),
                             items=side["items"], users=side["users"], columns=columns, duplicates=duplicates,
                             name=name)
