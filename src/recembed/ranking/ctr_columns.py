"""The columns of a user's own impression (CTR) file: roles, inferred field kinds, and Arrow columns -> a
:class:`~recembed.ranking.schema.Frame` (the one conversion, for a whole file and for each streamed record batch).

Roles (:data:`CTR_ROLES`; ``--columns role=NAME``, else found by the usual names): ``label`` (0 / 1 or boolean;
``label`` / ``click`` / ``clicked``), ``user`` (a field, and the group of GAUC; ``user_id`` / ``user`` / ...;
without one GAUC is over one group), ``item`` (a field), ``time`` (orders the default split; not a field). A
column ``part`` (train / valid / test) is a given split, not a field. Every other column is a field of the kind
its Arrow type gives (:func:`column_kind`; ``--field-kinds name=kind`` overrides):

* booleans, integers, and strings that all parse as integers -> ``categorical`` (integers are IDs);
* floats, strings that parse as numbers, timestamps / dates (as seconds) -> ``numeric``;
* ``list<string>`` / ``list<int>``, and strings holding ``^`` (as :meth:`CTRData.write_csv` writes token lists),
  else ``|`` -> ``tags`` (split on that delimiter; empty tokens dropped);
* ``fixed_size_list<float>`` / ``list<float>`` (Parquet; every row one length, a null row zeros) -> ``vector``;
* other strings -> ``categorical``; those (not user / item) with more distinct training values than half the
  training rows get ``min_count`` 2, as :data:`recembed.ranking.implicit.HIGH_CARDINALITY`.

Missing values: a categorical / tag -> the OOV bucket, a numeric -> NaN (0 after standardisation, schema.py); a
missing or non-0/1 label is an error naming the file, line (row) and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..data.readers.own import ALIASES, _numbers, _Source, parse_columns
from ..errors import ConfigError, DataError
from .implicit import HIGH_CARDINALITY
from .schema import Field, Frame, Ragged

CTR_ROLES = ("user", "item", "time", "label")
LABEL_ALIASES = ("label", "click", "clicked")
PART_COLUMN = "part"
TAG_DELIMITERS = ("^", "|")
FIELD_KINDS = ("categorical", "tags", "numeric", "vector")


def parse_field_kinds(spec: str | dict[str, str] | None) -> dict[str, str]:
    """``"price=numeric,zip=categorical"`` -> ``{column: kind}`` (kinds: :data:`FIELD_KINDS`)."""
    if not spec:
        return {}
    pairs = dict(spec) if isinstance(spec, dict) else {}
    if isinstance(spec, str):
        for item in (p for p in spec.split(",") if p.strip()):
            name, sep, kind = item.partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"--field-kinds: expected column=kind pairs separated by commas, got {spec!r}")
            pairs[name.strip()] = kind.strip()
    bad = {k: v for k, v in pairs.items() if v not in FIELD_KINDS}
    if bad:
        raise ConfigError(f"--field-kinds: unknown kind(s) {bad}; kinds are {list(FIELD_KINDS)}")
    return pairs


def _plain(col: Any) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _filled(arr: pa.Array) -> pa.Array:
    text = pc.utf8_trim_whitespace(arr)
    return pc.filter(text, pc.fill_null(pc.greater(pc.utf8_length(text), 0), False))


def _delimiter(arr: pa.Array) -> str | None:
    for d in TAG_DELIMITERS:
        if pc.any(pc.fill_null(pc.match_substring(arr, d), False)).as_py():
            return d
    return None


def column_kind(name: str, col: Any) -> tuple[str, str | None]:
    """``(kind, tag delimiter or None)`` of a column from its Arrow type (and, for strings, its values)."""
    arr = _plain(col)
    t = arr.type
    if _is_list(t):
        v = t.value_type
        if pa.types.is_floating(v):
            return "vector", None
        if _is_text(v) or pa.types.is_integer(v):
            return "tags", None
    elif pa.types.is_boolean(t) or pa.types.is_integer(t):
        return "categorical", None
    elif pa.types.is_floating(t) or pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "numeric", None
    elif _is_text(t):
        filled = _filled(arr)
        for target, kind in ((pa.int64(), "categorical"), (pa.float64(), "numeric")):
            try:
                if len(filled):
                    pc.cast(filled, target)
                    return kind, None
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        d = _delimiter(filled)
        return ("tags", d) if d else ("categorical", None)
    raise DataError(f"a column of type {t} is none of the field kinds {list(FIELD_KINDS)}; drop it from the file",
                    field=name)


@dataclass
class CTRColumns:
    """What an impression file's columns are: the roles, and every field column's kind."""

    label: str
    user: str | None = None
    item: str | None = None
    time: str | None = None
    part: str | None = None
    kinds: dict[str, str] = field(default_factory=dict)
    delimiters: dict[str, str] = field(default_factory=dict)

    def roles(self) -> dict[str, str]:
        return {r: getattr(self, r) for r in CTR_ROLES if getattr(self, r)}

    def needed(self) -> list[str]:
        """The columns a reader must read, in order."""
        return list(dict.fromkeys([self.label, *(c for c in (self.user, self.time, self.part) if c), *self.kinds]))

    def high_cardinality(self) -> list[str]:
        """Categorical fields whose ``min_count`` the training part decides (not user / item)."""
        return [n for n, k in self.kinds.items() if k == "categorical" and n not in (self.user, self.item)]

    def fields(self, train: Frame | None = None) -> list[Field]:
        """The fields; with ``train``, near-unique categoricals get ``min_count`` 2."""
        high = set(self.high_cardinality()) if train is not None else set()
        out = []
        for name, kind in self.kinds.items():
            distinct = len(set(train.columns[name].tolist()) - {None}) if name in high else 0
            out.append(Field(name, kind, min_count=2 if distinct > HIGH_CARDINALITY * len(train or ()) else 1))
        return out


def header_names(path: Path) -> list[str]:
    """The column names of a CSV / TSV / Parquet file without reading its rows."""
    from ..data.readers.own import _csv_header

    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"not a readable Parquet file ({exc})", path=path) from None
    return _csv_header(path, "\t" if path.suffix.lower() == ".tsv" else ",")


def infer_columns(table: Any, source: _Source, columns: str | dict[str, str] | None = None,
                  field_kinds: dict[str, str] | None = None) -> CTRColumns:
    """The roles and field kinds of ``table`` (an Arrow table or record batch)."""
    names = list(table.schema.names)
    roles = parse_columns(columns, CTR_ROLES)
    for role, col in roles.items():
        if col not in names:
            raise DataError(f"no column {col!r} (--columns {role}={col}); the file has {names}", path=source.label,
                            field=col)
    if len(set(roles.values())) != len(roles):
        raise ConfigError(f"--columns: one column for two roles in {roles}")
    label = roles.get("label") or next((a for a in LABEL_ALIASES if a in names), None)
    if label is None:
        raise DataError(f"no label column: expected one of {list(LABEL_ALIASES)} or a mapping --columns "
                        f"label=NAME (the 0/1 click column); the file has {names}", path=source.label)
    found = {r: roles.get(r) or next((a for a in ALIASES[r] if a in names and a != label), None)
             for r in ("user", "item", "time")}
    part = PART_COLUMN if PART_COLUMN in names and PART_COLUMN not in (label, *found.values()) else None
    kinds = dict(field_kinds or {})
    unknown = sorted(set(kinds) - set(names))
    taken = sorted(set(kinds) & {label, found["time"], part} - {None})
    if unknown or taken:
        raise ConfigError(f"--field-kinds: {'no column ' + repr(unknown) if unknown else repr(taken) + ' is a role'}"
                          f"; the file has {names}")
    out = CTRColumns(label, found["user"], found["item"], found["time"], part)
    for name in names:
        if name in (label, found["time"], part):
            continue
        kind, delim = column_kind(name, table.column(name))
        if name in (found["user"], found["item"]):
            kind, delim = "categorical", None
        if name in kinds:
            if kinds[name] == "tags" and _is_text(_plain(table.column(name)).type):
                delim = _delimiter(_filled(_plain(table.column(name)))) or TAG_DELIMITERS[0]
            kind = kinds[name]
        out.kinds[name] = kind
        if kind == "tags" and delim:
            out.delimiters[name] = delim
    return out


# -- Arrow columns -> a Frame -------------------------------------------------------------------------------
def _row(rows: np.ndarray | None, r: int) -> int:
    return int(rows[r]) if rows is not None else r


def labels_of(col: Any, source: _Source, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """0/1 labels (numbers, booleans or the strings 0 / 1 / true / false); anything else an error naming the row."""
    arr = _plain(col)
    if _is_text(arr.type):
        text = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
        one = pc.fill_null(pc.is_in(text, value_set=pa.array(["1", "1.0", "true"])), False).to_numpy(False)
        zero = pc.fill_null(pc.is_in(text, value_set=pa.array(["0", "0.0", "false"])), False).to_numpy(False)
        y = np.where(one, 1.0, np.where(zero, 0.0, np.nan))
    elif pa.types.is_boolean(arr.type) or pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        y = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    else:
        raise source.error(f"the label must be 0 or 1 (or true / false), found a column of type {arr.type}",
                           field=name)
    bad = ~((y == 0) | (y == 1))
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        value = arr[r].as_py()
        what = "a missing label" if value is None or str(value).strip() == "" else f"the label {value!r}"
        raise source.error(f"{what}; the label must be 0 or 1 (or true / false) ({int(bad.sum())} such row(s))",
                           _row(rows, r), name)
    return y.astype(np.float32)


def tokens_of(col: Any) -> np.ndarray:
    """Tokens as an object array of str, missing (null / empty) -> None (the OOV bucket)."""
    arr = _plain(col)
    if pa.types.is_floating(arr.type):  # integer codes with holes: 3.0 -> "3"
        vals = arr.to_numpy(zero_copy_only=False)
        if np.all(np.isnan(vals) | (vals == np.round(vals))):
            arr = pc.cast(pc.cast(arr, pa.int64(), safe=False), pa.string())
    text = pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    return np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)


def numbers_of(col: Any, source: _Source, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """float64, missing -> NaN; a value that is not a number is an error naming the row."""
    arr = _plain(col)
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
        return _numbers(arr.fill_null(0) if arr.null_count else arr, source, name, time=True)
    if _is_text(arr.type):
        text = pc.utf8_trim_whitespace(arr)
        arr = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        try:
            arr = pc.cast(arr, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            for r, v in enumerate(arr.to_pylist()):
                try:
                    float(v) if v is not None else None
                except ValueError:
                    raise source.error(f"expected a number (empty = missing), found {v!r}", _row(rows, r),
                                       name) from None
    return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def tags_of(col: Any, delimiter: str | None) -> Ragged:
    arr = _plain(col)
    if _is_text(arr.type):
        arr = pc.split_pattern(arr, delimiter or TAG_DELIMITERS[0])
    n = len(arr)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.utf8_trim_whitespace(pc.cast(pc.list_flatten(arr), pa.string()))
    keep = pc.fill_null(pc.greater(pc.utf8_length(flat), 0), False).to_numpy(zero_copy_only=False)
    owner = np.repeat(np.arange(n), lengths)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[keep], minlength=n), out=offsets[1:])
    return Ragged(np.asarray(flat.to_numpy(zero_copy_only=False), dtype=object)[keep], offsets)


def vectors_of(col: Any, source: _Source, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """``(n, d)`` float32 from list<float>; every present row one length, a null row zeros."""
    arr = _plain(col)
    if not _is_list(arr.type):
        raise source.error(f"a vector column needs a list of floats per row (Parquet), found type {arr.type}",
                           field=name)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    present = ~np.isnan(lengths.astype(np.float64))
    widths = lengths[present].astype(np.int64)
    d = int(widths[0]) if len(widths) else 0
    if len(widths) and (widths != d).any():
        r = int(np.flatnonzero(present)[np.flatnonzero(widths != d)[0]])
        raise source.error(f"a vector of {int(lengths[r])} values where earlier rows have {d}; every row of a "
                           "vector column needs one length", _row(rows, r), name)
    out = np.zeros((len(arr), d), dtype=np.float32)
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False).astype(np.float32)
    out[present] = np.nan_to_num(flat.reshape(-1, d) if d else flat.reshape(len(widths), 0))
    return out


def to_frame(table: Any, cols: CTRColumns, source: _Source, rows: np.ndarray | None = None) -> Frame:
    """The rows of ``table`` (an Arrow table or record batch) as a :class:`Frame` (``rows``: each row's number
    in the file, for errors; default 0..n-1)."""
    out: dict[str, Any] = {}
    for name, kind in cols.kinds.items():
        col = table.column(name)
        if kind == "categorical":
            out[name] = tokens_of(col)
        elif kind == "numeric":
            out[name] = numbers_of(col, source, name, rows)
        elif kind == "tags":
            out[name] = tags_of(col, cols.delimiters.get(name))
        else:
            out[name] = vectors_of(col, source, name, rows)
    labels = labels_of(table.column(cols.label), source, cols.label, rows)
    if cols.user:
        users = out[cols.user] if cols.user in out else tokens_of(table.column(cols.user))
        users = np.where(pd_null(users), "", users).astype(object)
    else:
        users = np.zeros(len(labels), dtype=np.int64)
    return Frame(out, labels, users)


def pd_null(values: np.ndarray) -> np.ndarray:
    return np.fromiter((v is None for v in values), dtype=bool, count=len(values))
