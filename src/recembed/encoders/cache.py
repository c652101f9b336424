"""An on-disk cache of content vectors keyed by (encoder, text hash).

Layout of ``ROOT/<encoder key>/``: ``shard-NNNNN.npy`` float32 matrices and ``index.json`` mapping each
text's SHA-256 to ``[shard, row]``. A new batch of vectors is written as a new shard, then the index is
replaced atomically, so a crash leaves the previous cache intact (an orphan shard at worst). Because the
key is the hash of the text itself, editing an item's text simply misses the cache for that item.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write, read_json, write_json


def text_hash(text: str) -> str:
    """SHA-256 hex digest of the UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class VectorCache:
    """Vectors of one encoder, looked up by the hash of their input text."""

    def __init__(self, root: str | Path, encoder_key: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", encoder_key):
            raise ValueError(f"encoder key must be a plain file name, got {encoder_key!r}")
        self.dir = Path(root) / encoder_key
        self._index: dict[str, list[int]] | None = None
        self._shards: dict[int, np.ndarray] = {}

    @property
    def index(self) -> dict[str, list[int]]:
        if self._index is None:
            path = self.dir / "index.json"
            self._index = read_json(path) if path.exists() else {}
        return self._index

    def _shard(self, n: int) -> np.ndarray:
        if n not in self._shards:
            path = self.dir / f"shard-{n:05d}.npy"
            try:
                self._shards[n] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"cache shard unreadable ({exc}); delete the cache folder to rebuild it",
                                path=path) from None
        return self._shards[n]

    def get(self, hashes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(found (N,) bool, vectors (N, d) float32 or None)``; rows not found are zero."""
        found = np.array([h in self.index for h in hashes], dtype=bool)
        if not found.any():
            return found, None
        locs = [self.index[h] for h, f in zip(hashes, found) if f]
        first = self._shard(locs[0][0])
        out = np.zeros((len(hashes), first.shape[1]), dtype=np.float32)
        rows = np.flatnonzero(found)
        for shard in {s for s, _ in locs}:
            sel = [i for i, (s, _) in enumerate(locs) if s == shard]
            out[rows[sel]] = self._shard(shard)[[locs[i][1] for i in sel]]
        return found, out

    def put(self, hashes: list[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (one row per hash) as a new shard and update the index atomically."""
        if not hashes:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n = max((s for s, _ in self.index.values()), default=-1) + 1
        path = self.dir / f"shard-{n:05d}.npy"

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, vectors, allow_pickle=False)

        atomic_write(path, save)
        index = dict(self.index)
        index.update({h: [n, i] for i, h in enumerate(hashes)})
        write_json(self.dir / "index.json", index)
        self._index = index

    def __len__(self) -> int:
        return len(self.index)
