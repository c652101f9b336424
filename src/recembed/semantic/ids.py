"""Semantic IDs: every item as a short tuple of discrete codes, ``codes[i] = (c_1, ..., c_L)``.

``codes`` is an ``(num_items, L)`` int64 array with ``0 <= codes[:, l] < sizes[l]``; row ``i`` belongs to the
item with index ``i`` in the dataset's item vocabulary. Tokenizers (residual k-means, RQ-VAE, FSQ) produce
them from item vectors; :meth:`SemanticIds.read_index_json` reads precomputed codes (LETTER / LC-Rec files).

Two items may share a tuple (a *collision*); :meth:`SemanticIds.deduplicated` appends one extra level that
numbers the items inside each shared tuple (TIGER, Section 3.1), after which every item's code is unique.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..io import atomic_write, read_json, write_json

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SemanticIds:
    """Codes of every item. ``codes (I, L)`` int64; ``sizes`` the codebook size of each level."""

    codes: np.ndarray
    sizes: tuple[int, ...]
    method: str = "unknown"
    info: dict[str, Any] = field(default_factory=dict)
    """Free-form facts about how the codes were made (tokenizer config, losses, source file)."""

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes)
        if codes.ndim != 2:
            raise DataError(f"semantic IDs must be a 2-D (items, levels) array, got shape {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise DataError(f"semantic IDs must be integers, got dtype {codes.dtype}")
        if len(self.sizes) != codes.shape[1]:
            raise DataError(f"{codes.shape[1]} code levels but {len(self.sizes)} codebook sizes")
        object.__setattr__(self, "codes", codes.astype(np.int64, copy=False))
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))
        if codes.size:
            lo, hi = codes.min(axis=0), codes.max(axis=0)
            for level, (a, b, s) in enumerate(zip(lo, hi, self.sizes)):
                if a < 0 or b >= s:
                    raise DataError(f"level {level}: codes must lie in [0, {s}), found {int(a)}..{int(b)}")

    @property
    def num_items(self) -> int:
        return int(self.codes.shape[0])

    @property
    def num_levels(self) -> int:
        return int(self.codes.shape[1])

    # ------------------------------------------------------------------ collisions
    def group_sizes(self) -> np.ndarray:
        """``(I,)``: how many items share each item's full tuple (1 = unique)."""
        _, inverse, counts = np.unique(self.codes, axis=0, return_inverse=True, return_counts=True)
        return counts[inverse.reshape(-1)]

    def is_unique(self) -> bool:
        return bool(self.num_items == 0 or (self.group_sizes() == 1).all())

    def deduplicated(self, min_size: int | None = None) -> SemanticIds:
        """Append a level numbering the items that share a tuple (0 for the first, 1 for the next, ...).

        The new level's codebook size is the largest group (or ``min_size`` when larger), so a lone item gets
        code 0. The result is unique by construction.
        """
        if self.num_items == 0:
            return SemanticIds(np.zeros((0, self.num_levels + 1), np.int64), (*self.sizes, 1), self.method,
                               dict(self.info))
        _, inverse = np.unique(self.codes, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        sorted_groups = inverse[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
        rank_sorted = np.arange(self.num_items) - np.repeat(starts, np.diff(np.r_[starts, self.num_items]))
        rank = np.empty(self.num_items, np.int64)
        rank[order] = rank_sorted
        size = max(int(rank.max()) + 1, int(min_size or 1))
        info = dict(self.info, deduplicated=True)
        return SemanticIds(np.concatenate([self.codes, rank[:, None]], axis=1), (*self.sizes, size), self.method, info)

    # ------------------------------------------------------------------ statistics
    def stats(self) -> dict[str, Any]:
        """Codebook utilisation per level and collision statistics."""
        groups = self.group_sizes() if self.num_items else np.zeros(0, np.int64)
        per_level = []
        for level, size in enumerate(self.sizes):
            col = self.codes[:, level]
            counts = np.bincount(col, minlength=size).astype(np.float64)
            p = counts / max(counts.sum(), 1.0)
            nz = p[p > 0]
            per_level.append({
                "codebook_size": size,
                "used": int((counts > 0).sum()),
                "utilisation": float((counts > 0).mean()) if size else 0.0,
                "perplexity": float(np.exp(-(nz * np.log(nz)).sum())) if nz.size else 0.0,
            })
        n_tuples = int(np.unique(self.codes, axis=0).shape[0]) if self.num_items else 0
        return {
            "method": self.method,
            "num_items": self.num_items,
            "levels": self.num_levels,
            "sizes": list(self.sizes),
            "distinct_tuples": n_tuples,
            "collision_rate": float((groups > 1).mean()) if self.num_items else 0.0,
            "max_items_per_tuple": int(groups.max()) if self.num_items else 0,
            "per_level": per_level,
        }

    # ------------------------------------------------------------------ prefixes
    def items_with_prefix(self, prefix: tuple[int, ...] | list[int]) -> np.ndarray:
        """Indices of the items whose first ``len(prefix)`` codes equal ``prefix``."""
        prefix = np.asarray(prefix, dtype=np.int64)
        if prefix.size > self.num_levels:
            raise DataError(f"prefix has {prefix.size} codes, the semantic IDs only {self.num_levels} levels")
        return np.flatnonzero((self.codes[:, : prefix.size] == prefix).all(axis=1))

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``semantic_ids.json`` (sizes, method, info) and ``semantic_ids.safetensors`` (codes)."""
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / "semantic_ids.safetensors",
                     lambda p: save_file({"codes": np.ascontiguousarray(self.codes)}, str(p)))
        write_json(directory / "semantic_ids.json", {
            "format_version": FORMAT_VERSION, "sizes": list(self.sizes), "method": self.method, "info": self.info,
            "stats": self.stats(),
        })
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SemanticIds:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        directory = Path(directory)
        meta = read_json(directory / "semantic_ids.json")
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"unsupported semantic-ID format version {meta.get('format_version')!r} "
                            f"(expected {FORMAT_VERSION})", path=directory / "semantic_ids.json")
        try:
            codes = load_file(str(directory / "semantic_ids.safetensors"))["codes"]
        except (SafetensorError, OSError, KeyError) as exc:
            raise DataError(f"unreadable codes ({exc})", path=directory / "semantic_ids.safetensors") from None
        return cls(codes, tuple(meta["sizes"]), meta.get("method", "unknown"), meta.get("info", {}))

    @classmethod
    def read_index_json(cls, path: str | Path, item_ids: np.ndarray, *, id_offset: int = 0,
                        method: str = "file") -> SemanticIds:
        """Read a LETTER / LC-Rec ``*.index.json`` file: ``{"<item>": ["<a_183>", "<b_70>", ...], ...}``.

        ``item_ids`` are the dataset's external item ids in index order; the file's key for item ``x`` is
        ``int(x) + id_offset`` (LETTER's Beauty file numbers items from 0 where S3-Rec's ``Beauty.txt``
        numbers them from 1: ``id_offset=-1``). Every dataset item must have a code.
        """
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read semantic-ID file ({exc})", path=path) from None
        if not isinstance(raw, dict) or not raw:
            raise DataError("expected a JSON object {item: [codes...]}", path=path)
        token = re.compile(r"^<([a-z])_(\d+)>$")
        levels = {len(v) for v in raw.values()}
        if len(levels) != 1:
            raise DataError(f"items have different numbers of code levels: {sorted(levels)}", path=path)
        num_levels = levels.pop()
        codes = np.empty((len(item_ids), num_levels), np.int64)
        for row, item in enumerate(item_ids):
            key = str(int(item) + id_offset) if id_offset else str(item)
            value = raw.get(key)
            if value is None:
                raise DataError(f"item {item!r} (key {key!r}) has no semantic ID", path=path)
            for level, tok in enumerate(value):
                m = token.match(str(tok))
                if m is None:
                    raise DataError(f"item {key!r}: code {tok!r} is not of the form <a_N>", path=path)
                codes[row, level] = int(m.group(2))
        sizes = tuple(int(codes[:, lv].max()) + 1 for lv in range(num_levels)) if len(item_ids) else (1,) * num_levels
        return cls(codes, sizes, method, {"source": str(path), "id_offset": id_offset})
