"""Embedding tables for the token fields of the CTR rankers: one table per vocabulary, the hashing trick, or
Unified Embedding (feature multiplexing). :class:`~._layers.FieldEmbedding` builds them from
``RankerConfig.embedding_table``; every ranker gets the choice without code of its own.

``embedding_table`` (a vocabulary ``v`` has ``n_v = 2 + |tokens|`` indices: padding 0, OOV 1, tokens from 2;
``D`` is the embedding width):

* ``field`` -- one ``(n_v, D)`` table per vocabulary (fields sharing a vocabulary through ``vocab_from`` share
  it): no collisions. Parameters: ``sum_v n_v * D``.
* ``hash:N`` -- the hashing trick (Weinberger et al., ICML 2009): vocabulary ``v``'s index ``x`` reads row
  ``h_v(x)`` of its own ``(N, D)`` table; tokens that collide share a row. A vocabulary with ``n_v <= N`` keeps
  its direct table (hashing it could only add collisions, as the paper's hash baselines keep small features
  collision-free). Parameters: ``sum_v min(n_v, N) * D``.
* ``unified:N[:k]`` -- Unified Embedding (Coleman, Kang, Fahrbach, Wang, Hong, Chi and Cheng, "Unified
  Embedding: Battle-Tested Feature Representations for Web-Scale ML Systems", NeurIPS 2023): ONE table
  ``E`` of ``N`` rows of width ``D / k`` shared by every vocabulary (feature multiplexing), each vocabulary
  with its own hash functions. A token's embedding is the concatenation of ``k`` chunks, each looked up with
  a different hash (the paper's multiple lookups, Figure 1; ``k = 1`` is a single full-width lookup)::

      e_v(x) = [ E[h_{v,1}(x)] ; E[h_{v,2}(x)] ; ... ; E[h_{v,k}(x)] ]          (D,)

  Parameters: ``N * D / k``, whatever the vocabularies. The paper's argument: a collision across features is
  cheap because the fields feed different downstream weights, which learn to tell the multiplexed components
  apart, and one table spreads its rows over the vocabularies by their cardinality with no per-feature sizes
  to tune.

Hash functions: the Carter-Wegman universal family ``h(x) = ((a * x + b) mod p) mod N`` with the Mersenne prime
``p = 2^31 - 1`` (``a * x`` stays below 2^62, so int64 never overflows; indices are taken mod ``p`` first).
``(a, b)`` for (vocabulary, chunk) are drawn from a generator seeded by the CRC-32 of the vocabulary name and
the chunk number, so they are the same in every process and after :meth:`Ranker.load` (they are not saved;
buffers outside the state dict). The same token index in two vocabularies, or in two chunks, goes to
independent rows (a pair collides with probability ~1/N).

Padding (index 0) embeds to the zero vector in every mode: the direct tables keep a zero padding row
(``padding_idx``), the hashed ones multiply the looked-up rows by ``x != 0`` (so padding also sends no
gradient to the row it hashes to).

Deviations from the paper, all deliberate:

* The paper hashes raw feature values; here the inputs are the schema's vocabulary indices (training tokens
  under ``min_count`` already share the OOV index), so the hash acts on an index rather than a string. New
  tokens at serving time still go to OOV, not to a fresh hash bucket.
* The paper (and TensorFlow Recommenders' ``UnifiedEmbedding``) can give features different numbers of chunks
  (multi-size embeddings) and spreads the buckets over a few sub-tables for load balancing; here every field
  has the same ``k`` (the rankers need one width ``D``) and there is one table.
* A width that ``k`` does not divide -- only the first-order term of :class:`FieldLinear`, width 1 -- uses
  ``gcd(k, width)`` chunks (1 for the linear term, its own ``(N, 1)`` table).
* Initialisation is the field tables' (normal, std 1e-4); no orthogonality regulariser.

Per-field widths (``RankerConfig.field_dims``, e.g. ``"genres:4,zip3:0"``; the size search of
:mod:`recembed.ranking.size_search`): a vocabulary given width ``w`` smaller than a :class:`FieldEmbedding`'s
width ``D`` gets a ``(n_v, w)`` table (or ``(N, w)`` hashed) followed by a bias-free ``w -> D`` projection
(:class:`ProjectedTable`), so models that need one width (FM's inner products, the MLP's input) read ``D``-wide
vectors; parameters ``n_v * w + w * D``. Width 0 drops the field (the :class:`Ranker` builds its module on the
schema without it). Widths are keyed by the vocabulary's owner (``item_id``, not ``hist_items`` which shares
its table); a FieldEmbedding at most ``w`` wide (the first-order term, width 1) is left as it is. Not with
``unified`` tables (one shared width). Without ``field_dims`` nothing changes (the same state dict keys).
"""

from __future__ import annotations

import contextvars
import math
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...ranking.schema import PAD

MODES = ("field", "hash", "unified")
PRIME = 2**31 - 1
UNIFIED = "unified"  # the TableSet key of the one shared table
INIT_STD = 1e-4  # FuxiCTR's initialiser, as the field tables


@dataclass(frozen=True)
class TableSpec:
    """A parsed ``embedding_table``: the mode, ``rows`` (``N``) and ``chunks`` (``k``, unified only)."""

    mode: str = "field"
    rows: int = 0
    chunks: int = 1

    @classmethod
    def parse(cls, spec: str, key: str = "embedding_table") -> TableSpec:
        parts = str(spec).strip().lower().split(":")
        mode, args = parts[0], parts[1:]
        form = "'field', 'hash:N' or 'unified:N[:k]' (N rows, k chunks per embedding)"
        if mode not in MODES or (mode == "field" and args) or (mode == "hash" and len(args) != 1) or (
                mode == UNIFIED and len(args) not in (1, 2)):
            raise ConfigError(f"{key}: expected {form}, got {spec!r}")
        try:
            numbers = [int(a) for a in args]
        except ValueError:
            raise ConfigError(f"{key}: expected {form}, got {spec!r} (N and k are integers)") from None
        if numbers and numbers[0] < 1:
            raise ConfigError(f"{key}: N (rows) must be >= 1, got {numbers[0]} in {spec!r}")
        if len(numbers) == 2 and numbers[1] < 1:
            raise ConfigError(f"{key}: k (chunks) must be >= 1, got {numbers[1]} in {spec!r}")
        return cls(mode, numbers[0] if numbers else 0, numbers[1] if len(numbers) == 2 else 1)

    def __str__(self) -> str:
        if self.mode == "field":
            return "field"
        return f"hash:{self.rows}" if self.mode == "hash" else f"unified:{self.rows}:{self.chunks}"

    def chunks_for(self, dim: int) -> int:
        """Chunks of a ``dim``-wide embedding: ``k``, or ``gcd(k, dim)`` when ``k`` does not divide ``dim``."""
        return self.chunks if dim % self.chunks == 0 else math.gcd(self.chunks, dim)


def parse_field_dims(spec: str, key: str = "field_dims") -> dict[str, int]:
    """``"genres:4,zip3:0"`` -> ``{"genres": 4, "zip3": 0}`` (width 0: the field is dropped)."""
    out: dict[str, int] = {}
    for part in (p.strip() for p in str(spec or "").split(",")):
        if not part:
            continue
        name, sep, width = part.rpartition(":")
        if not sep or not name.strip() or not width.strip().isdigit():
            raise ConfigError(f"{key}: expected FIELD:WIDTH pairs separated by commas (WIDTH >= 0; 0 drops the "
                              f"field), e.g. 'genres:4,zip3:0'; got {spec!r}")
        if name.strip() in out:
            raise ConfigError(f"{key}: field {name.strip()!r} is given twice in {spec!r}")
        out[name.strip()] = int(width)
    return out


# -- the spec a Ranker's modules are built under ----------------------------------------------------------------
_CURRENT: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("recembed_embedding_table",
                                                                           default=("field", ""))


@contextmanager
def embedding_tables(spec: str, field_dims: str = "") -> Iterator[None]:
    """Build every :class:`FieldEmbedding` made inside the block with ``spec`` and the per-vocabulary widths
    ``field_dims`` (what :class:`Ranker` does around ``_module``, so the models need not pass their config
    down)."""
    parse_field_dims(field_dims)
    token = _CURRENT.set((str(TableSpec.parse(spec)), str(field_dims or "")))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_spec() -> TableSpec:
    return TableSpec.parse(_CURRENT.get()[0])


def current_widths() -> dict[str, int]:
    """The non-zero per-vocabulary widths of the block (zero widths are dropped fields, not tables)."""
    return {k: w for k, w in parse_field_dims(_CURRENT.get()[1]).items() if w > 0}


# -- hashing ------------------------------------------------------------------------------------------------------
def hash_coefficients(vocabulary: str, probes: int) -> np.ndarray:
    """``(probes, 2)`` int64 ``(a, b)`` of the universal hashes of ``vocabulary``, one row per chunk."""
    out = np.empty((probes, 2), np.int64)
    for j in range(probes):
        rng = np.random.default_rng([zlib.crc32(vocabulary.encode("utf-8")), j])
        out[j] = rng.integers(1, PRIME), rng.integers(0, PRIME)
    return out


def universal_hash(idx: torch.Tensor, a: torch.Tensor, b: torch.Tensor, rows: int) -> torch.Tensor:
    """``((a * x + b) mod p) mod rows`` elementwise (``a``, ``b`` broadcast against ``idx``)."""
    return ((a * torch.remainder(idx, PRIME) + b) % PRIME) % rows


class HashedEmbedding(nn.Module):
    """``hash:N`` for one vocabulary: ``N`` rows, index ``x`` reads row ``h(x)``; padding gives zeros."""

    def __init__(self, vocabulary: str, rows: int, dim: int) -> None:
        super().__init__()
        self.rows = rows
        self.weight = nn.Parameter(torch.randn(rows, dim) * INIT_STD)
        ab = torch.from_numpy(hash_coefficients(vocabulary, 1))
        self.register_buffer("a", ab[0, 0].clone(), persistent=False)
        self.register_buffer("b", ab[0, 1].clone(), persistent=False)

    def rows_of(self, idx: torch.Tensor) -> torch.Tensor:
        return universal_hash(idx, self.a, self.b, self.rows)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # idx (...) -> (..., D)
        return F.embedding(self.rows_of(idx), self.weight) * (idx != PAD).unsqueeze(-1).to(self.weight.dtype)


class UnifiedEmbedding(nn.Module):
    """``unified:N:k``: one ``(N, D / k)`` table for every vocabulary; ``k`` hashed lookups concatenated."""

    def __init__(self, vocabularies: list[str], rows: int, dim: int, chunks: int) -> None:
        super().__init__()
        if dim % chunks:
            raise ConfigError(f"embedding_table: {chunks} chunks do not divide the embedding width {dim}")
        self.rows, self.dim, self.chunks = rows, dim, chunks
        self.weight = nn.Parameter(torch.randn(rows, dim // chunks) * INIT_STD)
        self.slot = {v: s for s, v in enumerate(vocabularies)}
        ab = torch.from_numpy(np.stack([hash_coefficients(v, chunks) for v in vocabularies]))  # (V, k, 2)
        self.register_buffer("a", ab[..., 0].clone(), persistent=False)
        self.register_buffer("b", ab[..., 1].clone(), persistent=False)

    def rows_of(self, vocabulary: str, idx: torch.Tensor) -> torch.Tensor:
        """``(..., k)`` rows that ``vocabulary``'s indices ``idx (...)`` read, one per chunk."""
        s = self.slot[vocabulary]
        return universal_hash(idx.unsqueeze(-1), self.a[s], self.b[s], self.rows)

    def forward(self, vocabulary: str, idx: torch.Tensor) -> torch.Tensor:  # idx (...) -> (..., D)
        e = F.embedding(self.rows_of(vocabulary, idx), self.weight)  # (..., k, D / k)
        e = e.reshape(*idx.shape, self.dim)
        return e * (idx != PAD).unsqueeze(-1).to(e.dtype)


class ProjectedTable(nn.Module):
    """A narrow table (``w`` columns) and a bias-free ``w -> D`` projection: a per-field width (``field_dims``)
    under a model that needs ``D``-wide vectors. Padding stays zero (the table's padding row / mask, no bias)."""

    def __init__(self, table: nn.Module, width: int, dim: int) -> None:
        super().__init__()
        self.table = table
        self.proj = nn.Linear(width, dim, bias=False)

    @property
    def weight(self) -> torch.Tensor:  # the table's rows (as the direct tables expose them)
        return self.table.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.proj(self.table(idx))


def _direct_or_hashed(spec: TableSpec, vocab: str, n: int, dim: int) -> nn.Module:
    if spec.mode == "hash" and n > spec.rows:
        return HashedEmbedding(vocab, spec.rows, dim)
    table = nn.Embedding(n, dim, padding_idx=PAD)
    nn.init.normal_(table.weight, std=INIT_STD)
    with torch.no_grad():
        table.weight[PAD].zero_()
    return table


class TableSet(nn.ModuleDict):
    """The tables of one :class:`FieldEmbedding`, keyed by vocabulary (``field`` / ``hash``: one module per
    vocabulary, each with a ``weight``; ``unified``: the one shared table under ``"unified"``); ``lookup``
    reads a vocabulary's indices in any mode. ``widths``: vocabularies whose table is narrower than ``dim``
    (a :class:`ProjectedTable`; widths at or above ``dim`` are ignored)."""

    def __init__(self, spec: TableSpec, cardinalities: Mapping[str, int], dim: int,
                 widths: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.spec, self.dim = spec, dim
        narrow = {v: w for v, w in (widths or {}).items() if v in cardinalities and 0 < w < dim}
        if spec.mode == UNIFIED:
            if narrow:
                raise ConfigError("field_dims: per-field widths need 'field' or 'hash' tables, not 'unified' "
                                  "(one shared table of one width)")
            if cardinalities:
                self[UNIFIED] = UnifiedEmbedding(list(cardinalities), spec.rows, dim, spec.chunks_for(dim))
            return
        for vocab, n in cardinalities.items():
            if vocab in narrow:
                self[vocab] = ProjectedTable(_direct_or_hashed(spec, vocab, n, narrow[vocab]), narrow[vocab], dim)
            else:
                self[vocab] = _direct_or_hashed(spec, vocab, n, dim)

    def lookup(self, vocabulary: str, idx: torch.Tensor) -> torch.Tensor:
        """Embeddings ``idx.shape + (D,)`` of ``vocabulary``'s token indices."""
        if self.spec.mode == UNIFIED:
            return self[UNIFIED](vocabulary, idx)
        return self[vocabulary](idx)

    def num_parameters(self) -> int:
        return int(sum(p.numel() for p in self.parameters()))


def table_parameters(spec: TableSpec | str, cardinalities: Mapping[str, int], dim: int) -> int:
    """The parameter count of the tables ``spec`` builds (the formulas in the module docstring)."""
    spec = TableSpec.parse(spec) if isinstance(spec, str) else spec
    if spec.mode == UNIFIED:
        return spec.rows * (dim // spec.chunks_for(dim)) if cardinalities else 0
    if spec.mode == "hash":
        return sum(min(n, spec.rows) for n in cardinalities.values()) * dim
    return sum(cardinalities.values()) * dim
