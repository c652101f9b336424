"""Batch export: the top-k of every user into one Parquet file, in bounded memory.

Users are scored ``batch_size`` at a time through the same paths as the service (an index search with the
user vectors for embedding bundles, the model's scores otherwise; known items excluded unless
``exclude_seen=False``) and each batch is written as one Parquet row group, so memory stays at one batch's
``(batch_size, num_items)`` scores whatever the number of users.

Output columns: ``user_id`` (string), ``item_ids`` (list<string>, best first), ``scores`` (list<float32>);
a user with fewer than ``k`` admissible items gets shorter lists.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError
from ..io import atomic_write
from .service import RecService

SCHEMA = pa.schema([("user_id", pa.string()), ("item_ids", pa.list_(pa.string())),
                    ("scores", pa.list_(pa.float32()))])


def _batch_table(service: RecService, users: np.ndarray, items: np.ndarray, scores: np.ndarray) -> pa.Table:
    valid = items >= 0
    lengths = valid.sum(axis=1)
    offsets = np.zeros(len(users) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.asarray(service.item_ids, dtype=object)[items[valid]]
    item_lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids.tolist(), pa.string()))
    score_lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(scores[valid], pa.float32()))
    user_ids = pa.array([service.user_ids[u] for u in users.tolist()], pa.string())
    return pa.Table.from_arrays([user_ids, item_lists, score_lists], schema=SCHEMA)


def export_recommendations(service: RecService, out: str | Path, *, k: int = 100, batch_size: int = 1024,
                           exclude_seen: bool = True, progress: Any = None) -> dict[str, Any]:
    """Write the top-``k`` of every user to ``out`` (atomically); returns counts and timings.

    ``progress``: an optional callable ``(done_users, total_users)``.
    """
    if k < 1:
        raise ConfigError(f"k: must be >= 1, got {k}")
    if batch_size < 1:
        raise ConfigError(f"batch_size: must be >= 1, got {batch_size}")
    total = len(service.user_ids)
    t = time.perf_counter()
    stats = {"users": total, "k": k, "batches": 0, "rows": 0}

    def write(path: Path) -> None:
        with pq.ParquetWriter(path, SCHEMA) as writer:
            for start in range(0, total, batch_size):
                users = np.arange(start, min(total, start + batch_size), dtype=np.int64)
                items, scores = service.recommend_user_idx(users, k, exclude_seen)
                writer.write_table(_batch_table(service, users, items, scores))
                stats["batches"] += 1
                stats["rows"] += len(users)
                if progress is not None:
                    progress(int(users[-1]) + 1, total)

    atomic_write(out, write)
    seconds = time.perf_counter() - t
    return {**stats, "seconds": round(seconds, 3), "users_per_second": round(total / max(seconds, 1e-9), 1)}
