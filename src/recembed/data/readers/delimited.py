"""Delimited text (CSV / TSV) with a fast path and a precise error path.

The fast path parses with ``pyarrow.csv``. When anything is wrong with the file (ragged rows, a
missing column, an empty id, a value that is not a number), the file is re-read line by line to find
the *first* problem, and a :class:`~recembed.errors.DataError` names the file, the 1-based line and
the field, and says what was expected. Blank lines are skipped (and still counted for line numbers).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ...errors import DataError
from ..hygiene import check_ids, non_utf8_error

# column types: "str" (an id or token; must be non-empty), "text" (any string, may be empty),
# "float", "int"
_NUMERIC = {"float": pa.float64(), "int": pa.int64()}


def read_delimited(
    path: str | Path,
    columns: Mapping[str, str],
    *,
    delimiter: str = ",",
    header: bool = True,
    names: list[str] | None = None,
    quoting: bool | None = None,
    optional: tuple[str, ...] = (),
) -> dict[str, np.ndarray]:
    """Read the named ``columns`` (name -> type) of a delimited file.

    Parameters
    ----------
    columns : mapping of column name to ``"str" | "text" | "float" | "int"``
        Columns to return. ``"str"`` values must be non-empty; numeric values must parse.
    header : bool
        Whether the first line holds column names. Without one, ``names`` gives them.
    quoting : bool or None
        Honour ``"`` quotes. Default: on for ``,``, off for tabs and spaces.
    optional : tuple of str
        Columns that may be absent from the file (absent ones are not returned).

    Returns
    -------
    dict of column name -> ``(N,)`` array: ``object`` for str/text, float64 / int64 for numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    if quoting is None:
        quoting = delimiter == ","
    if not header and names is None:
        raise ValueError("names are required when the file has no header")
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=None if header else names, autogenerate_column_names=False, block_size=1 << 24
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char='"' if quoting else False, ignore_empty_lines=True
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                strings_can_be_null=False,
                include_columns=None,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        _diagnose(path, columns, delimiter, header, names, quoting, optional)
        raise DataError(f"could not parse ({exc})", path=path) from None

    present = set(table.column_names)
    missing = [c for c in columns if c not in present and c not in optional]
    if missing:
        raise DataError(
            f"missing column(s) {missing}; the file has {table.column_names}", path=path,
            line=1 if header else None,
        )
    out: dict[str, np.ndarray] = {}
    for name, kind in columns.items():
        if name not in present:
            continue
        col = table.column(name).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        if kind in _NUMERIC:
            try:
                num = pc.cast(pc.utf8_trim_whitespace(col), _NUMERIC[kind])
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                _diagnose(path, columns, delimiter, header, names, quoting, optional)
                raise DataError(f"a value is not a valid {kind}", path=path, field=name) from None
            out[name] = num.to_numpy(zero_copy_only=False)
        else:
            if kind == "str":
                empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0)
                if pc.any(empty).as_py():
                    _diagnose(path, columns, delimiter, header, names, quoting, optional)
                    raise DataError("an empty value where an id was expected", path=path, field=name)
                check_ids(col, path=path, field=name, line_of=lambda row: line_of_row(
                    path, row, delimiter=delimiter, quoting=quoting, header=header))
            out[name] = np.asarray(col.to_pylist(), dtype=object)
    return out


def _diagnose(
    path: Path,
    columns: Mapping[str, str],
    delimiter: str,
    header: bool,
    names: list[str] | None,
    quoting: bool,
    optional: tuple[str, ...],
) -> None:
    """Re-read ``path`` line by line and raise a DataError at the first problem found."""
    try:
        fh = open(path, encoding="utf-8", newline="")
        with fh:
            reader = csv.reader(
                fh, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE, strict=True
            )
            field_names = names
            width = None if names is None else len(names)
            for row in reader:
                line = reader.line_num
                if not row:  # an empty line (the fast path skips only those; "  " is a malformed row)
                    continue
                if field_names is None:
                    field_names = row
                    width = len(row)
                    missing = [c for c in columns if c not in row and c not in optional]
                    if missing:
                        raise DataError(f"missing column(s) {missing}; the header has {row}", path=path, line=line)
                    continue
                if len(row) != width:
                    raise DataError(
                        f"expected {width} fields ({delimiter!r}-separated: {field_names}), found {len(row)}: "
                        f"{delimiter.join(row)[:120]!r}",
                        path=path, line=line,
                    )
                for name, kind in columns.items():
                    if name not in field_names:
                        continue
                    value = row[field_names.index(name)].strip()
                    if kind == "str" and not value:
                        raise DataError("empty value where an id was expected", path=path, line=line, field=name)
                    if kind in _NUMERIC:
                        try:
                            float(value) if kind == "float" else int(value)
                        except ValueError:
                            raise DataError(
                                f"expected a{'n integer' if kind == 'int' else ' number'}, found {value!r}",
                                path=path, line=line, field=name,
                            ) from None
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    except csv.Error as exc:
        raise DataError(f"malformed quoting ({exc})", path=path) from None


def line_of_row(
    path: str | Path, row: int, *, delimiter: str = "\t", quoting: bool = False, header: bool = True
) -> int | None:
    """The 1-based line of data row ``row`` (0-based, as in :func:`read_delimited`'s arrays).

    Empty lines are skipped but counted, as :func:`read_delimited` does. Only called on error paths.
    """
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            quote = csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
            reader = csv.reader(fh, delimiter=delimiter, quoting=quote)
            k = -1 if header else 0
            for rec in reader:
                if not rec:
                    continue
                if k == row:
                    return reader.line_num
                k += 1
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    return None


def read_token_lines(path: str | Path, *, min_tokens: int = 1) -> list[list[str]]:
    """Whitespace-separated token lines (sequence / adjacency files); blank lines are skipped.

    A line with fewer than ``min_tokens`` tokens is an error naming its line number.
    """
    return [tokens for _, tokens in numbered_token_lines(path, min_tokens=min_tokens)]


def numbered_token_lines(path: str | Path, *, min_tokens: int = 1) -> list[tuple[int, list[str]]]:
    """:func:`read_token_lines` with the 1-based line number of each kept line."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < min_tokens:
            raise DataError(f"expected at least {min_tokens} whitespace-separated values, found {len(tokens)}",
                            path=path, line=lineno)
        out.append((lineno, tokens))
    return out
