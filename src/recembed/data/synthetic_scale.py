"""The synthetic catalog at scale: 10M+ interactions, 1M users, 1M items, written as a Parquet dataset in chunks.

The same planted structure as :mod:`recembed.data.synthetic` (items in topics with power-law popularity inside a
topic; each user has a few interests; a small share of uniform noise), drawn without any Python loop over users,
items or events, one chunk of events at a time, so generating 100M rows needs the memory of one chunk plus the
per-user and per-item arrays (``(U,)`` activity, ``(U, k)`` interests; items are implicit: item ``t + T r`` is the
``r``-th most popular item of topic ``t``). No text or metadata: the scale set is for the interaction pipeline
(vocabulary, split, training, evaluation), not for the content models.

    recembed synth-scale --interactions 10000000 --users 1000000 --items 1000000 --out data/synth-10m

Columns: ``user_id`` and ``item_id`` (int64 external ids: a fixed permutation of the indices, so a reader must
build a vocabulary, as with real ids) and ``timestamp`` (int64 seconds). Files: ``part-00000.parquet`` ...,
``rows_per_file`` rows each; a ``_SUCCESS.json`` with the configuration is written last.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError
from ..io import atomic_write


@dataclass(frozen=True)
class ScaleConfig:
    interactions: int = 10_000_000
    users: int = 1_000_000
    items: int = 1_000_000
    topics: int = 256
    """Topics (the planted clusters); each holds ``items / topics`` items."""
    interests_per_user: int = 2
    noise: float = 0.05
    """Share of events drawn uniformly from the whole catalog."""
    popularity_exponent: float = 0.9
    activity_sigma: float = 1.0
    """Log-normal spread of the users' activity (heavy users and light ones)."""
    rows_per_file: int = 1_000_000
    seed: int = 7

    def __post_init__(self) -> None:
        for name in ("interactions", "users", "items", "topics", "interests_per_user", "rows_per_file"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        if self.topics > self.items:
            raise ConfigError(f"--topics: at most --items ({self.items}), got {self.topics}")
        if not 0 <= self.noise <= 1:
            raise ConfigError(f"--noise: must be in [0, 1], got {self.noise}")


def write_scaled(out_dir: str | Path, config: ScaleConfig | None = None, progress=None) -> dict:  # noqa: ANN001
    """Write the dataset described by ``config`` to ``out_dir`` (deterministic for a seed); returns its summary."""
    cfg = config or ScaleConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    activity = rng.lognormal(0.0, cfg.activity_sigma, cfg.users)
    activity_cdf = np.cumsum(activity / activity.sum())
    interests = rng.integers(0, cfg.topics, (cfg.users, cfg.interests_per_user), dtype=np.int32)  # (U, k)
    per_topic = -(-cfg.items // cfg.topics)
    rank_w = np.arange(1, per_topic + 1, dtype=np.float64) ** (-cfg.popularity_exponent)
    rank_cdf = np.cumsum(rank_w / rank_w.sum())
    user_ids = rng.permutation(cfg.users).astype(np.int64) * 7 + 1_000_003  # external ids, not the indices
    item_ids = rng.permutation(cfg.items).astype(np.int64) * 11 + 5_000_011
    files, written = 0, 0
    while written < cfg.interactions:
        n = min(cfg.rows_per_file, cfg.interactions - written)
        chunk_rng = np.random.default_rng([cfg.seed, files])
        users = np.minimum(np.searchsorted(activity_cdf, chunk_rng.random(n)), cfg.users - 1)
        topic = interests[users, chunk_rng.integers(0, cfg.interests_per_user, n)]
        rank = np.minimum(np.searchsorted(rank_cdf, chunk_rng.random(n)), per_topic - 1)
        items = topic.astype(np.int64) + cfg.topics * rank
        items = np.where(items < cfg.items, items, chunk_rng.integers(0, cfg.items, n))  # a short last topic
        noisy = chunk_rng.random(n) < cfg.noise
        items[noisy] = chunk_rng.integers(0, cfg.items, int(noisy.sum()))
        table = pa.table({"user_id": user_ids[users], "item_id": item_ids[items],
                          "timestamp": chunk_rng.integers(1_600_000_000, 1_700_000_000, n, dtype=np.int64)})
        atomic_write(out / f"part-{files:05d}.parquet", lambda p, t=table: pq.write_table(t, p))
        files += 1
        written += n
        if progress is not None:
            progress(n)
    summary = {**asdict(cfg), "files": files, "columns": ["user_id", "item_id", "timestamp"]}
    atomic_write(out / "_SUCCESS.json", lambda p: Path(p).write_text(json.dumps(summary, indent=2)))
    return summary
