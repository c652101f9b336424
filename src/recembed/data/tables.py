"""Item and user attribute tables, row ``i`` = entity index ``i`` of a vocabulary.

Column kinds:

* ``text``        -- free text, ``(n,) object`` of ``str`` (missing: ``""``);
* ``categorical`` -- one token per row, ``(n,) object`` of ``str`` (missing: ``""``);
* ``tags``        -- a set of tokens per row (genres, attributes), ``(n,) object`` of ``tuple[str, ...]``;
* ``numeric``     -- ``(n,) float64``; NaN marks a missing value (encoders impute it, see docs);
* ``vector``      -- ``(n, d) float32`` precomputed content vectors; must be finite (a NaN or inf is
  an error naming the column and row, since it would silently poison every score it touches).

Rows for entities that the source has no metadata for are filled with the missing values above.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError

KINDS = ("text", "categorical", "tags", "numeric", "vector")


@dataclass
class Table:
    """Columns of attributes aligned with a vocabulary (``num_rows == len(vocab)``)."""

    num_rows: int
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in list(self.columns):
            self._check(name, self.columns[name], self.kinds.get(name))

    def _check(self, name: str, values: np.ndarray, kind: str | None) -> None:
        if kind not in KINDS:
            raise DataError(f"unknown column kind {kind!r}; expected one of {KINDS}", field=name)
        if len(values) != self.num_rows:
            raise DataError(f"column has {len(values)} rows, expected {self.num_rows}", field=name)
        if kind == "vector":
            if values.ndim != 2:
                raise DataError(f"vector column must be 2-D (rows, dim), got shape {values.shape}", field=name)
            bad = ~np.isfinite(values).all(axis=1)
            if bad.any():
                raise DataError(
                    f"{int(bad.sum())} row(s) with NaN/inf values, first at row {int(np.flatnonzero(bad)[0])}",
                    field=name,
                )

    def add(self, name: str, values: np.ndarray, kind: str) -> None:
        if kind == "vector":
            values = np.asarray(values, dtype=np.float32)
        elif kind == "numeric":
            values = np.asarray(values, dtype=np.float64)
        else:
            values = np.asarray(values, dtype=object)
        self._check(name, values, kind)
        self.columns[name] = values
        self.kinds[name] = kind

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(f"no column {name!r}; columns: {sorted(self.columns)}") from None

    def names(self, kind: str | None = None) -> list[str]:
        return [n for n in self.columns if kind is None or self.kinds[n] == kind]

    @classmethod
    def from_rows(
        cls,
        num_rows: int,
        row_idx: np.ndarray,
        columns: dict[str, tuple[str, np.ndarray]],
        *,
        source: str = "table",
    ) -> Table:
        """Scatter per-record values onto vocabulary rows; rows never mentioned get missing values.

        ``row_idx`` gives the vocabulary index of each record; a repeated index is an error.
        """
        row_idx = np.asarray(row_idx, dtype=np.int64)
        if len(np.unique(row_idx)) != len(row_idx):
            dup = row_idx[np.flatnonzero(np.bincount(row_idx) > 1)[:1]]
            raise DataError(f"duplicate rows for the same id (index {dup.tolist()})", path=source)
        table = cls(num_rows)
        for name, (kind, values) in columns.items():
            if kind == "vector":
                values = np.asarray(values, dtype=np.float32)
                full = np.zeros((num_rows, values.shape[1]), dtype=np.float32)
            elif kind == "numeric":
                full = np.full(num_rows, np.nan)
            elif kind == "tags":
                full = np.empty(num_rows, dtype=object)
                full[:] = [()] * num_rows
            else:
                full = np.full(num_rows, "", dtype=object)
            if kind == "tags":
                vals = np.empty(len(values), dtype=object)
                vals[:] = [tuple(v) for v in values]
                full[row_idx] = vals
            else:
                full[row_idx] = values
            try:
                table.add(name, full, kind)
            except DataError as exc:  # name the source file too
                err = DataError(str(exc), path=source)
                err.field = exc.field
                raise err from None
        return table

    def title_column(self) -> str | None:
        """The column to show as an item's name: ``title`` if present, else the first text column."""
        for preferred in ("title", "movie_title", "name"):
            if preferred in self.columns and self.kinds[preferred] in ("text", "categorical"):
                return preferred
        texts = self.names("text")
        return texts[0] if texts else None
