"""Impression files larger than memory: the ranker reads Parquet record batches, never the whole file.

* The schema is fitted in one pass over the training part's record batches (:meth:`Schema.fit_batches`: token
  counts, numeric mean / deviation, tag lengths and vector widths accumulated batch by batch).
* Training (:class:`StreamTask`, beside :class:`~recembed.models.ranking.base.CTRTask`): every epoch visits the
  training file's row groups in an order drawn from the epoch's generator, reads each in record batches of
  :data:`READ_ROWS`, collects ``buffer_rows`` rows (``--set stream_buffer=N``, default :data:`DEFAULT_BUFFER`),
  encodes them, shuffles them, and yields full batches; the remainder joins the next buffer. Peak memory is the
  buffer (plus the vocabularies and the model), not the file: the row group is the unit of shuffling, so write
  the file with row groups well below the buffer (``pyarrow.parquet.write_table(..., row_group_size=...)``).
* Validation and test are scored batch by batch (:func:`score_stream`); only labels, probabilities and integer
  user codes (for GAUC) are kept, 16 bytes a row.

The split: a folder with ``train`` / ``valid`` / ``test`` Parquet files, or a ``part`` column (then every pass
reads the file and keeps its part's rows). Kinds are inferred on the first :data:`INFER_ROWS` rows of the
training file (a later value that does not fit its kind is an error naming the row).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ..data.readers.own import _Source
from ..errors import ConfigError, DataError
from ..models.ranking.base import CTRTask
from .ctr_columns import PART_COLUMN, CTRColumns, infer_columns, to_frame, tokens_of
from .ctr_files import DEFAULT_BUFFER  # noqa: F401  (re-exported: the module docstring's default)
from .datasets import PARTS
from .implicit import HIGH_CARDINALITY
from .schema import Encoded, Frame, Schema

READ_ROWS = 65_536
INFER_ROWS = 100_000


@dataclass
class StreamPart:
    path: Path
    value: str | None  # the ``part`` column's value of this part's rows (None: every row of the file)
    rows: int


class StreamedCTR:
    """The duck twin of :class:`~recembed.ranking.datasets.CTRData` for streamed files: ``name``, ``fields``,
    :meth:`sizes`, :meth:`schema` (one pass), and :meth:`frames` instead of in-memory parts."""

    streamed = True

    def __init__(self, name: str, columns: CTRColumns, parts: dict[str, StreamPart], buffer_rows: int,
                 split_kind: str) -> None:
        self.name, self.ctr_columns, self.parts = name, columns, parts
        self.buffer_rows, self.split_kind, self.split_spec = buffer_rows, split_kind, split_kind
        self.fields = columns.fields()
        self.read_rows = min(READ_ROWS, buffer_rows)
        self.max_frame_rows = 0
        self.description = f"impressions streamed from {name}"

    def sizes(self) -> dict[str, int]:
        return {p: self.parts[p].rows for p in PARTS}

    def __repr__(self) -> str:
        return f"StreamedCTR({self.name!r}, {self.sizes()}, fields={[f.name for f in self.fields]})"

    def frames(self, part: str, rng: np.random.Generator | None = None) -> Iterator[Frame]:
        """The part's rows as Frames of at most ``read_rows`` rows (row groups in ``rng``'s order, if given)."""
        import pyarrow.parquet as pq

        sp = self.parts[part]
        pf = pq.ParquetFile(sp.path)
        md = pf.metadata
        starts = np.r_[0, np.cumsum([md.row_group(g).num_rows for g in range(md.num_row_groups)])]
        groups = rng.permutation(md.num_row_groups) if rng is not None else range(md.num_row_groups)
        source = _Source(str(sp.path))
        for g in groups:
            row0 = int(starts[g])
            for batch in pf.iter_batches(batch_size=self.read_rows, row_groups=[int(g)],
                                         columns=self.ctr_columns.needed(), use_threads=False):
                rows = np.arange(row0, row0 + batch.num_rows)
                row0 += batch.num_rows
                if sp.value is not None:
                    keep = tokens_of(batch.column(PART_COLUMN)) == sp.value
                    batch, rows = batch.filter(pa.array(keep)), rows[keep]
                if batch.num_rows:
                    self.max_frame_rows = max(self.max_frame_rows, batch.num_rows)
                    yield to_frame(batch, self.ctr_columns, source, rows)

    def schema(self) -> Schema:
        """The fields' schema fitted in one pass over the training part (near-unique categoricals: min_count 2)."""
        high = {n: HIGH_CARDINALITY for n in self.ctr_columns.high_cardinality()}
        schema = Schema(list(self.fields)).fit_batches(self.frames("train"), high_cardinality=high)
        self.fields = list(schema.fields)
        return schema


def open_stream(path: Path, files: dict[str, Path] | None, kind: str, columns: Any,
                field_kinds: dict[str, str] | None, buffer_rows: int) -> StreamedCTR:
    """A :class:`StreamedCTR` over a folder's part files or one file with a ``part`` column."""
    import pyarrow.parquet as pq

    if not files and kind not in ("auto", "part"):
        raise ConfigError(f"--split {kind}: a streamed file's split is a folder of train / valid / test Parquet files "
                          "or a 'part' column (a time / random split needs every row at once); or stream=false")
    first = files["train"] if files else path
    try:
        head = next(pq.ParquetFile(first).iter_batches(batch_size=INFER_ROWS), None)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", path=first) from None
    if head is None or head.num_rows == 0:
        raise DataError("no rows; expected one row per impression", path=first)
    cols = infer_columns(head, _Source(str(first)), columns, field_kinds)
    if files:
        parts = {}
        for p, f in files.items():
            names = pq.read_schema(f).names
            missing = [c for c in cols.needed() if c not in names]
            if missing:
                raise DataError(f"no column(s) {missing}: the train / valid / test files need the same columns",
                                path=f)
            parts[p] = StreamPart(f, None, pq.ParquetFile(f).metadata.num_rows)
        return StreamedCTR(path.stem, cols, parts, buffer_rows, "files")
    if not cols.part:
        raise ConfigError(f"{path}: a streamed file needs a 'part' column (train / valid / test) or a folder of "
                          "train / valid / test Parquet files (--data FOLDER); or stream=false for a time / random "
                          "split in memory")
    counts = dict.fromkeys(PARTS, 0)
    row0 = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_ROWS, columns=[PART_COLUMN]):
        values = tokens_of(batch.column(0))
        bad = ~np.isin(values.astype(str), PARTS)
        if bad.any():
            r = row0 + int(np.flatnonzero(bad)[0])
            raise _Source(str(path)).error(f"the part {values[r - row0]!r}; expected one of {list(PARTS)}", r,
                                           PART_COLUMN)
        for p in PARTS:
            counts[p] += int((values == p).sum())
        row0 += batch.num_rows
    return StreamedCTR(path.stem, cols, {p: StreamPart(path, p, counts[p]) for p in PARTS}, buffer_rows, "part")


def _concat(parts: list[Encoded]) -> Encoded:
    return Encoded({k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays},
                   np.concatenate([p.labels for p in parts]), np.concatenate([p.users for p in parts]))


def _take(enc: Encoded, rows: np.ndarray) -> Encoded:
    return Encoded({k: v[rows] for k, v in enc.arrays.items()}, enc.labels[rows], enc.users[rows])


class StreamTask(CTRTask):
    """Binary cross-entropy over a streamed training part (see the module docstring): :class:`CTRTask`'s loss,
    its own batches. ``max_buffered`` records the most encoded rows held at once."""

    def __init__(self, data: StreamedCTR, schema: Schema, batch_size: int, buffer_rows: int,
                 embedding_l2: float) -> None:  # noqa: D107  (CTRTask's __init__ takes encoded rows: not called)
        self.data, self.schema, self.batch_size, self.l2 = data, schema, batch_size, embedding_l2
        self.buffer_rows = max(buffer_rows, batch_size)
        self.rows = data.sizes()["train"]
        self.max_buffered = 0

    def num_batches(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Any]:
        pending: list[Frame] = []
        held, carry = 0, None
        for frame in self.data.frames("train", rng=rng):
            pending.append(frame)
            held += len(frame)
            if held + (len(carry) if carry is not None else 0) >= self.buffer_rows:
                carry = yield from self._emit(pending, carry, rng, last=False)
                pending, held = [], 0
        yield from self._emit(pending, carry, rng, last=True)

    def _emit(self, pending: list[Frame], carry: Encoded | None, rng: np.random.Generator, last: bool):  # noqa: ANN202
        parts = ([carry] if carry is not None else []) + ([self.schema.encode(Frame.concat(pending))] if pending
                                                          else [])
        if not parts:
            return None
        enc = parts[0] if len(parts) == 1 else _concat(parts)
        self.max_buffered = max(self.max_buffered, len(enc))
        order = rng.permutation(len(enc))
        full = len(enc) if last else len(enc) // self.batch_size * self.batch_size
        labels = torch.from_numpy(enc.labels)
        for s in range(0, full, self.batch_size):
            rows = order[s : s + self.batch_size]
            yield enc.batch(rows), labels[rows]
        return _take(enc, np.sort(order[full:])) if full < len(enc) else None


def score_stream(model: Any, module: Any, data: StreamedCTR, part: str) -> tuple[np.ndarray, np.ndarray,
                                                                                np.ndarray]:
    """``(labels, probabilities, user codes)`` of a streamed part, batch by batch (file order)."""
    labels, probs, users = [], [], []
    codes: dict[Any, int] = {}
    for frame in data.frames(part):
        enc = model.schema_.encode(frame)
        probs.append(model._predict(module, enc))
        labels.append(enc.labels)
        uniq, inv = np.unique(np.asarray(frame.users), return_inverse=True)
        ids = np.fromiter((codes.setdefault(u, len(codes)) for u in uniq.tolist()), dtype=np.int64, count=len(uniq))
        users.append(ids[inv])
    if not labels:
        return np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.concatenate(labels), np.concatenate(probs), np.concatenate(users)
