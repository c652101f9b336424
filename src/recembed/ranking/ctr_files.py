"""A user's own impression (CTR) file for the rankers (docs/ctr_data.md)::

    recembed fit deepfm --data impressions.csv|.tsv|.parquet --columns label=clicked[,user=uid,item=ad,time=ts]
        [--split time:0.8,0.1,0.1 | random:0.8,0.1,0.1 | part | FOLDER] [--field-kinds price=numeric]
        [--set stream=auto|true|false] --out RUN

The columns (roles, inferred kinds, missing values): :mod:`recembed.ranking.ctr_columns`. Splits
(:func:`parse_ctr_split`): ``time:a,b,c`` (rows ordered by the time column, ties in file order, cut in that
order, as ml-100k-ctr), ``random:a,b,c`` (seeded), ``part`` (the file's ``part`` column: train / valid / test)
or a folder with ``train``, ``valid`` and ``test`` files of the same columns (``--data FOLDER`` or ``--split
FOLDER``). Default: ``part`` when the column is there, else ``time:0.8,0.1,0.1`` with a time column, else
``random:0.8,0.1,0.1``.

Streaming (:mod:`recembed.ranking.ctr_stream`): ``stream=true`` streams Parquet files; ``auto`` (the default)
streams when every file is Parquet and their uncompressed size (the Parquet metadata) is above
:data:`STREAM_SHARE` of the available memory. A streamed file's split is a folder of files or the ``part``
column (a time / random split would need every row at once).

What ``config.json`` records under ``data`` (:func:`load_ctr_file`'s spec) is enough for
:func:`recembed.ranking.importance.load_run_data` to read the same parts again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.readers.own import _numbers, read_table_file
from ..data.splits import _check_ratios
from ..errors import ConfigError, DataError
from .ctr_columns import LABEL_ALIASES, PART_COLUMN, CTRColumns, header_names, infer_columns, to_frame, tokens_of
from .datasets import PARTS, CTRData, _time_split

SUFFIXES = (".parquet", ".pq", ".csv", ".tsv")
SPLIT_HELP = "time:a,b,c, random:a,b,c, part (the file's 'part' column) or a folder with train / valid / test files"
#: ``stream=auto`` streams when the Parquet data's uncompressed size exceeds this share of the available memory
#: (a Frame's Python strings take several times the Arrow bytes)
STREAM_SHARE = 0.25
#: rows a streamed fit shuffles together (``--set stream_buffer=N``; :mod:`recembed.ranking.ctr_stream`)
DEFAULT_BUFFER = 262_144
#: ``--set`` keys read here, not by the model
STREAM_KEYS = ("stream", "stream_buffer")


def part_files(folder: Path) -> dict[str, Path] | None:
    """``{part: file}`` when ``folder`` holds one ``train`` / ``valid`` / ``test`` file each (else None)."""
    if not folder.is_dir():
        return None
    found = {p: [folder / f"{p}{s}" for s in SUFFIXES if (folder / f"{p}{s}").is_file()] for p in PARTS}
    if not all(found.values()):
        return None
    many = [p for p, f in found.items() if len(f) > 1]
    if many:
        raise DataError(f"more than one {many[0]} file: {[f.name for f in found[many[0]]]}", path=folder)
    return {p: f[0] for p, f in found.items()}


def wants_ctr_file(data: str, columns: str | None, split: str | None, field_kinds: str | None,
                   set_keys: list[str]) -> bool:
    """Whether ``recembed fit RANKER --data DATA`` reads an impression file rather than interactions: a label
    role in ``--columns``, a ``label`` / ``click`` / ``clicked`` column, or an option only impression files take
    (``--field-kinds``, ``--split time:|part``, ``--set stream``)."""
    path = Path(data)
    files = part_files(path)
    first = files["train"] if files else path
    if not (first.is_file() and first.suffix.lower() in SUFFIXES):
        return False
    if columns and any(p.partition("=")[0].strip() == "label" for p in columns.split(",")):
        return True
    if field_kinds or any(k in STREAM_KEYS for k in set_keys) or \
            (split or "").split(":", 1)[0] in ("time", "part"):
        return True
    return any(a in header_names(first) for a in LABEL_ALIASES)


def parse_ctr_split(spec: str | None) -> tuple[str, Any]:
    """``(kind, arg)``: ``("time" | "random", ratios)``, ``("part", None)``, ``("files", folder)`` or
    ``("auto", None)``."""
    if spec is None or spec == "":
        return "auto", None
    kind, _, arg = spec.strip().partition(":")
    kind = "time" if kind == "temporal" else kind
    if kind in ("time", "random"):
        try:
            ratios = tuple(float(x) for x in arg.split(",")) if arg else (0.8, 0.1, 0.1)
        except ValueError:
            raise ConfigError(f"--split {spec!r}: the ratios must be numbers, e.g. {kind}:0.8,0.1,0.1") from None
        ratios = _check_ratios(ratios, kind)
        if ratios[1] <= 0:
            raise ConfigError(f"--split {spec!r}: a ranker early-stops on the validation part; give it a share")
        return kind, ratios
    if spec == "part":
        return "part", None
    if part_files(Path(spec)) is not None:
        return "files", Path(spec)
    raise ConfigError(f"--split {spec!r}: an impression file takes {SPLIT_HELP}"
                      + (" (no train / valid / test files there)" if Path(spec).is_dir() else ""))


def _spec_of(kind: str, arg: Any) -> str:
    if kind in ("time", "random"):
        return f"{kind}:{','.join(f'{r:g}' for r in arg)}"
    return str(Path(arg).resolve()) if kind == "files" else kind


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def parquet_bytes(paths: list[Path]) -> int:
    """Uncompressed size of Parquet files' data, from their metadata."""
    import pyarrow.parquet as pq

    md = [pq.ParquetFile(p).metadata for p in paths]
    return int(sum(m.row_group(g).total_byte_size for m in md for g in range(m.num_row_groups)))


def stream_options(params: dict[str, str]) -> dict[str, Any]:
    """Pop ``stream`` (auto | true | false) and ``stream_buffer`` (rows shuffled together) from ``--set``."""
    stream = params.pop("stream", "auto").lower()
    if stream not in ("auto", "true", "false"):
        raise ConfigError(f"stream: expected auto, true or false, got {stream!r}")
    raw = params.pop("stream_buffer", str(DEFAULT_BUFFER))
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"stream_buffer: expected a positive number of rows, got {raw!r}")
    return {"stream": stream, "buffer_rows": int(raw)}


def load_ctr_file(data: str | Path, *, columns: str | dict[str, str] | None = None, split: str | None = None,
                  field_kinds: dict[str, str] | None = None, seed: int = 2020, stream: str = "auto",
                  buffer_rows: int | None = None) -> tuple[Any, dict[str, Any]]:
    """``(CTRData or StreamedCTR, spec)`` of an impression file or folder (see the module docstring); ``spec`` is
    what config.json records under ``data`` (``ctr_file``: columns, split, kinds, stream)."""
    path = Path(data)
    files = part_files(path)
    kind, arg = ("files", path) if files else parse_ctr_split(split)
    if files and split not in (None, "", str(path)) and parse_ctr_split(split) != ("files", path):
        raise ConfigError(f"--split {split}: {path} holds its own train / valid / test files")
    if kind == "files":
        files = part_files(Path(arg))
    elif not path.is_file():
        raise DataError("file not found (an impression file: .csv, .tsv or .parquet)", path=path)
    paths = list(files.values()) if files else [path]
    bad = [p for p in paths if p.suffix.lower() not in SUFFIXES]
    if bad:
        raise DataError(f"expected a .csv, .tsv or .parquet file, got {bad[0].suffix!r}", path=bad[0])
    parquet = all(p.suffix.lower() in (".parquet", ".pq") for p in paths)
    if stream == "true" and not parquet:
        raise ConfigError("stream=true: streaming reads Parquet files (row group by row group); convert the CSV "
                          "(e.g. pyarrow.csv.read_csv(...) then pyarrow.parquet.write_table) or drop stream")
    streamed = stream == "true" or (stream == "auto" and parquet and
                                    parquet_bytes(paths) > STREAM_SHARE * available_memory())
    if streamed:
        from .ctr_stream import open_stream

        ctr = open_stream(path, files, kind, columns, field_kinds, buffer_rows or DEFAULT_BUFFER)
        ctr.split_spec = _spec_of(ctr.split_kind, arg)
    else:
        ctr = _in_memory(path, files, kind, arg, columns, field_kinds, seed)
    cols: CTRColumns = ctr.ctr_columns
    spec = {"data": str(data), "ctr_file": {
        "path": str(path.resolve()), "columns": cols.roles(), "split": ctr.split_spec, "kinds": dict(cols.kinds),
        "stream": streamed, **({"buffer_rows": ctr.buffer_rows} if streamed else {})}}
    return ctr, spec


def _in_memory(path: Path, files: dict[str, Path] | None, kind: str, arg: Any, columns: Any,
               field_kinds: dict[str, str] | None, seed: int) -> CTRData:
    if files:
        tables = {p: read_table_file(f) for p, f in files.items()}
        for p, (t, src) in tables.items():
            if t.num_rows == 0:
                raise DataError("no rows (the file has a header only); expected one row per impression",
                                path=src.label)
        cols = infer_columns(tables["train"][0], tables["train"][1], columns, field_kinds)
        for p, (t, src) in tables.items():
            missing = [c for c in cols.needed() if c not in t.column_names]
            if missing:
                raise DataError(f"no column(s) {missing}: the train / valid / test files need the same columns",
                                path=src.label)
        frames = {p: to_frame(t, cols, src) for p, (t, src) in tables.items()}
        split_spec = _spec_of("files", arg)
    else:
        table, src = read_table_file(path)
        if table.num_rows == 0:
            raise DataError("no rows (the file has a header only); expected one row per impression", path=path)
        cols = infer_columns(table, src, columns, field_kinds)
        if kind == "auto":
            kind, arg = ("part", None) if cols.part else ("time", (0.8, 0.1, 0.1)) if cols.time else \
                ("random", (0.8, 0.1, 0.1))
        frame = to_frame(table, cols, src)
        n = table.num_rows
        if kind == "part":
            rows = part_rows(table.column(cols.part) if cols.part else None, src)
        elif kind == "time":
            if not cols.time:
                raise ConfigError(f"--split time: {path} has no time column (timestamp / time / ts / date / "
                                  "datetime, or --columns time=NAME)")
            order = np.argsort(_numbers(table.column(cols.time), src, cols.time, time=True), kind="stable")
            rows = _time_split(n, order, (arg[0], arg[0] + arg[1]))
        else:
            rows = _time_split(n, np.random.default_rng(seed).permutation(n), (arg[0], arg[0] + arg[1]))
        frames = dict(zip(PARTS, (frame.take(r) for r in rows)))
        split_spec = _spec_of(kind, arg)
    if not len(frames["train"]):
        raise DataError("the training part is empty", path=path)
    ctr = CTRData(path.stem, cols.fields(frames["train"]), frames["train"], frames["valid"], frames["test"],
                  f"impressions from {path.name}")
    ctr.ctr_columns, ctr.split_spec = cols, split_spec  # type: ignore[attr-defined]
    return ctr


def part_rows(col: Any, src: Any) -> list[np.ndarray]:
    """Row indices of train / valid / test from a ``part`` column (another value: an error naming the row)."""
    if col is None:
        raise ConfigError(f"--split part: the file has no {PART_COLUMN!r} column (train / valid / test per row)")
    values = tokens_of(col)
    known = np.isin(values.astype(str), PARTS)
    if not known.all():
        r = int(np.flatnonzero(~known)[0])
        raise src.error(f"the part {values[r]!r}; expected one of {list(PARTS)}", r, PART_COLUMN)
    return [np.flatnonzero(values == p) for p in PARTS]
