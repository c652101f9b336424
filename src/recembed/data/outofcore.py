"""Interactions larger than memory: a Parquet dataset (one file or a folder of many) read in record batches.

Three streaming passes, each holding one record batch plus per-user / per-item arrays, never the interactions:

1. :func:`scan_vocabularies` -- the user and item vocabularies (the unique ids, merged batch by batch; their order
   is sorted, so a re-run gives the same indices).
2. :func:`write_split` -- each event's indices (a hash lookup per batch, ``pyarrow.compute.index_in``) and its part,
   written as Parquet under ``SPLIT/{train,valid,test}/part-*.parquet`` (``user_idx``, ``item_idx`` int32). The part
   is drawn from a hash of the *pair* (user, item, seed): every event of a pair lands in one part, so a pair is never
   in train and test at once (repeated events of a pair are kept as repeated training rows: a streaming pass cannot
   drop duplicates without holding the pairs).
3. :func:`read_part_rows` -- the rows of a part for a set of users (a boolean mask over users), for the evaluation's
   targets and exclusions in bounded memory.

Training batches then stream from the train files (:class:`recembed.training.streaming.StreamingPairTask`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import scipy.sparse as sp

from ..errors import DataError
from ..io import atomic_write
from .vocab import Vocabulary

PARTS = ("train", "valid", "test")
BATCH_ROWS = 1 << 20


def _dataset(path: str | Path) -> ds.Dataset:
    p = Path(path)
    if not p.exists():
        raise DataError("no such file or folder", path=p)
    try:
        return ds.dataset(str(p), format="parquet", exclude_invalid_files=True)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a Parquet dataset ({str(exc).splitlines()[0]})", path=p) from None


def _batches(path: str | Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    data = _dataset(path)
    missing = [c for c in columns if c not in data.schema.names]
    if missing:
        raise DataError(f"missing column(s) {missing}; the files have {data.schema.names} (map them with "
                        "--columns user=...,item=...)", path=path)
    yield from data.to_batches(columns=columns, batch_size=BATCH_ROWS)


def _unique_merge(parts: list[pa.Array]) -> pa.Array:
    return pc.unique(pa.concat_arrays(parts)) if len(parts) > 1 else parts[0]


def scan_vocabularies(path: str | Path, user_col: str = "user_id", item_col: str = "item_id"
                      ) -> tuple[Vocabulary, Vocabulary, int]:
    """One pass: the (sorted) user and item vocabularies and the number of rows."""
    seen: dict[str, list[pa.Array]] = {user_col: [], item_col: []}
    rows = 0
    for batch in _batches(path, [user_col, item_col]):
        rows += batch.num_rows
        for col in (user_col, item_col):
            values = batch.column(col)
            if values.null_count:
                raise DataError(f"{values.null_count} missing id(s) in a batch of {batch.num_rows} rows",
                                path=path, field=col)
            seen[col].append(pc.unique(values.cast(pa.string())))
            if len(seen[col]) >= 8:  # keep the running set compact: memory ~ the number of ids
                seen[col] = [_unique_merge(seen[col])]
    if rows == 0:
        raise DataError("no interactions", path=path)
    vocabs = []
    for col, name in ((user_col, "user"), (item_col, "item")):
        ids = _unique_merge(seen[col])
        vocabs.append(Vocabulary(pc.take(ids, pc.sort_indices(ids)), name=name))
    return vocabs[0], vocabs[1], rows


def _pair_uniform(users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) draw per (user, item) pair, the same for every event of a pair (splitmix64)."""
    x = (users.astype(np.uint64) << np.uint64(32)) ^ items.astype(np.uint64) ^ np.uint64(seed * 0x9E3779B97F4A7C15
                                                                                       % 2**64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


@dataclass(frozen=True)
class StreamedSplit:
    """A split written by :func:`write_split`: where its parts are and their sizes."""

    root: Path
    users: Vocabulary
    items: Vocabulary
    sizes: dict[str, int]

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    def part(self, name: str) -> Path:
        return self.root / name


def write_split(path: str | Path, out: str | Path, users: Vocabulary, items: Vocabulary, *,
                ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 2020,
                user_col: str = "user_id", item_col: str = "item_id") -> StreamedSplit:
    """One pass: every event's indices and part (by pair), written as Parquet under ``out/{part}/``."""
    if len(ratios) != 3 or abs(sum(ratios) - 1) > 1e-6 or min(ratios) < 0:
        raise DataError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
    out = Path(out)
    bounds = np.cumsum(ratios)[:2]
    sizes = dict.fromkeys(PARTS, 0)
    user_ids, item_ids = users.arrow, items.arrow
    for n, batch in enumerate(_batches(path, [user_col, item_col])):
        u = pc.index_in(batch.column(user_col).cast(pa.string()), value_set=user_ids).to_numpy(zero_copy_only=False)
        i = pc.index_in(batch.column(item_col).cast(pa.string()), value_set=item_ids).to_numpy(zero_copy_only=False)
        u, i = u.astype(np.int32), i.astype(np.int32)
        part = np.searchsorted(bounds, _pair_uniform(u, i, seed), side="right")
        for k, name in enumerate(PARTS):
            sel = part == k
            if not sel.any():
                continue
            table = pa.table({"user_idx": u[sel], "item_idx": i[sel]})
            atomic_write(out / name / f"part-{n:05d}.parquet", lambda p, t=table: pq.write_table(t, p))
            sizes[name] += int(sel.sum())
    import json

    meta = {"sizes": sizes, "ratios": list(ratios), "seed": seed, "users": len(users), "items": len(items)}
    atomic_write(out / "_split.json", lambda p: Path(p).write_text(json.dumps(meta)))
    return StreamedSplit(out, users, items, sizes)


def open_split(root: str | Path, users: Vocabulary, items: Vocabulary) -> StreamedSplit:
    """A split :func:`write_split` wrote under ``root`` (its ``_split.json`` is written last)."""
    import json

    meta_path = Path(root) / "_split.json"
    if not meta_path.is_file():
        raise DataError("not a streamed split (no _split.json)", path=root)
    meta = json.loads(meta_path.read_text())
    if meta["users"] != len(users) or meta["items"] != len(items):
        raise DataError(f"split written for {meta['users']} users x {meta['items']} items, not {len(users)} x "
                        f"{len(items)}", path=meta_path)
    return StreamedSplit(Path(root), users, items, {k: int(v) for k, v in meta["sizes"].items()})


def part_batches(split: StreamedSplit, name: str, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[np.ndarray,
                                                                                                  np.ndarray]]:
    """``(user_idx, item_idx)`` int64 arrays of one part, a record batch at a time."""
    folder = split.part(name)
    if not folder.is_dir() or not any(folder.glob("*.parquet")):
        return
    for batch in ds.dataset(str(folder), format="parquet").to_batches(batch_size=batch_rows):
        yield (batch.column("user_idx").to_numpy().astype(np.int64),
               batch.column("item_idx").to_numpy().astype(np.int64))


def read_part_rows(split: StreamedSplit, name: str, keep_users: np.ndarray) -> sp.csr_matrix:
    """The binary ``(num_users, num_items)`` matrix of part ``name`` restricted to ``keep_users`` (a boolean mask
    over users): one pass, holding only the kept users' rows."""
    rows, cols = [], []
    for u, i in part_batches(split, name):
        sel = keep_users[u]
        rows.append(u[sel])
        cols.append(i[sel])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    m = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(split.num_users, split.num_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def users_with_events(split: StreamedSplit, name: str) -> np.ndarray:
    """A boolean mask over users: who has at least one event in part ``name``."""
    mask = np.zeros(split.num_users, dtype=bool)
    for u, _ in part_batches(split, name):
        mask[u] = True
    return mask
