"""Extra CTR fields made from item side information: semantic-ID n-grams.

Singh, Vu, Mehta, Keshavan, Sathiamoorthy, Zheng, Hong, Heldt, Wei, Tandon, Chi and Yi, "Better Generalization
with Semantic IDs: A Case Study in Ranking for Recommendations", RecSys 2024. An item's semantic ID
``(c_1, ..., c_L)`` (RQ-VAE codes over its content, coarse to fine) is turned into categorical features whose
tokens similar items share, so a rarely seen or new item borrows what its neighbours in code space learnt:

* ``unigram`` -- one field per level ``l``: token ``c_l`` (the paper's Unigram-SID);
* ``bigram`` -- one field per pair of adjacent levels: token ``(c_l, c_{l+1})`` (Bigram-SID);
* ``prefix`` -- one field per prefix length ``l``: token ``(c_1, ..., c_l)`` (the prefix n-grams; the last
  one is the full code, close to the item's own id).

:func:`add_semantic_id_fields` adds them for the item field (``item_id`` -> ``item_id_sidp1``, ...), and for
every behaviour sequence sharing the item vocabulary (``hist_items`` -> ``hist_items_sidp1``, ... with
``vocab_from`` the item's n-gram field, so history and target n-grams share one table, as the item ids do).
The item id field is kept (``keep_item=False`` drops it). Items without a code (not in the code file, or an
empty id) get a missing token, which the schema encodes as the OOV index.

Deviations from the paper: it sums an item's n-gram embeddings into one item embedding and hashes the n-grams
into fixed-size tables (there are up to ``K^n`` of them); here each n-gram is its own field with a vocabulary of
the n-grams seen in training (the ranker's interaction layers see them separately), and
``embedding_table=hash:N`` / ``unified:N`` bound the tables when they grow. SentencePiece pieces (the
paper's best at YouTube scale) are not implemented. The CLI reads ``--set sid_features=PATH`` (+ ``sid_ngram``,
``sid_id_offset``, ``sid_levels``) in ``recembed fit RANKER``: see :func:`load_item_codes`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError, DataError
from ..semantic.ids import SemanticIds
from .datasets import PARTS, CTRData
from .schema import Field, Frame, Ragged

NGRAMS = ("unigram", "bigram", "prefix")
_SUFFIX = {"unigram": "sidu", "bigram": "sidb", "prefix": "sidp"}


def default_levels(sid: SemanticIds) -> int:
    """Levels that carry meaning: all but TIGER's collision level when :meth:`SemanticIds.deduplicated` added it."""
    return max(1, sid.num_levels - 1) if sid.info.get("deduplicated") else sid.num_levels


def semantic_id_tokens(codes: np.ndarray, ngram: str = "prefix") -> list[tuple[str, np.ndarray]]:
    """``[(suffix, tokens (I,) object), ...]``: the n-gram features of ``codes (I, L)`` (see the module doc)."""
    if ngram not in NGRAMS:
        raise ConfigError(f"sid_ngram: expected one of {NGRAMS}, got {ngram!r}")
    codes = np.asarray(codes, dtype=np.int64)
    levels = codes.shape[1]
    text = codes.astype(str).astype(object)
    if ngram == "unigram":
        spans = [(lv, lv + 1) for lv in range(levels)]
    elif ngram == "bigram":
        spans = [(lv, lv + 2) for lv in range(levels - 1)] or [(0, 1)]
    else:
        spans = [(0, lv + 1) for lv in range(levels)]
    out = []
    for a, b in spans:
        tokens = text[:, a]
        for lv in range(a + 1, b):
            tokens = tokens + "-" + text[:, lv]
        out.append((f"{_SUFFIX[ngram]}{a + 1 if ngram != 'prefix' else b}", np.asarray(tokens, dtype=object)))
    return out


def _rows_of(values: Any, item_ids: np.ndarray) -> np.ndarray:
    """Row of each value in ``item_ids`` (-1: no code)."""
    vals = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    pos = pc.index_in(vals, value_set=pa.array([str(i) for i in item_ids], type=pa.string()))
    return pos.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _lookup(tokens: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.full(len(rows), None, dtype=object)
    ok = rows >= 0
    out[ok] = tokens[rows[ok]]
    return out


def add_semantic_id_fields(data: CTRData, sid: SemanticIds, item_ids: np.ndarray, *, item_field: str = "item_id",
                           ngram: str = "prefix", levels: int | None = None, sequences: bool = True,
                           keep_item: bool = True) -> CTRData:
    """A copy of ``data`` with the semantic-ID n-gram fields of ``item_field`` (and of the sequences sharing
    its vocabulary, when ``sequences``). ``item_ids (I,)``: the external item id of each row of ``sid.codes``
    (``recembed tokenize`` writes them to ``items.parquet``); ``levels``: the first levels used (default
    :func:`default_levels`)."""
    by = {f.name: f for f in data.fields}
    if item_field not in by or by[item_field].kind != "categorical":
        raise DataError(f"no categorical field {item_field!r} to add semantic IDs to; fields: {sorted(by)}")
    item_ids = np.asarray(item_ids, dtype=object)
    if len(item_ids) != sid.num_items:
        raise DataError(f"{len(item_ids)} item ids for {sid.num_items} semantic IDs")
    use = default_levels(sid) if levels is None else int(levels)
    if not 1 <= use <= sid.num_levels:
        raise ConfigError(f"sid_levels: expected 1..{sid.num_levels}, got {levels}")
    features = semantic_id_tokens(sid.codes[:, :use], ngram)
    seqs = [f for f in data.fields if sequences and f.kind in ("sequence", "tags") and f.vocab_from == item_field]
    fields = [f for f in data.fields if keep_item or f.name != item_field]
    borrowers = [f.name for f in fields if f.vocab_from == item_field]
    if not keep_item and borrowers:  # they cannot borrow a dropped field's vocabulary
        raise ConfigError(f"keep_item=False: {borrowers} take their vocabulary from {item_field!r}")
    new_fields: list[Field] = []
    for suffix, _ in features:
        name = f"{item_field}_{suffix}"
        if name in by:
            raise DataError(f"the data already has a field {name!r}")
        new_fields.append(Field(name, "categorical"))
        new_fields += [Field(f"{s.name}_{suffix}", s.kind, max_len=s.max_len, vocab_from=name) for s in seqs]
    parts = {}
    for p in PARTS:
        frame = data.part(p)
        cols = {k: v for k, v in frame.columns.items() if keep_item or k != item_field}
        rows = _rows_of(frame.columns[item_field], item_ids)
        seq_rows = {s.name: _rows_of(frame.columns[s.name].values, item_ids) for s in seqs}
        for suffix, tokens in features:
            cols[f"{item_field}_{suffix}"] = _lookup(tokens, rows)
            for s in seqs:
                col = frame.columns[s.name]
                cols[f"{s.name}_{suffix}"] = Ragged(_lookup(tokens, seq_rows[s.name]), col.offsets)
        parts[p] = Frame(cols, frame.labels, frame.users)
    description = f"{data.description}; + semantic-ID {ngram} fields of {item_field} ({use} levels)".lstrip("; ")
    return replace(data, fields=fields + new_fields, description=description, **parts)


def load_item_codes(spec: str, data: CTRData, *, item_field: str = "item_id", id_offset: int = 0,
                    key: str = "sid_features") -> tuple[SemanticIds, np.ndarray]:
    """``(codes, item ids of their rows)`` from a folder written by ``recembed tokenize`` (``semantic_ids.*`` +
    ``items.parquet``) or a LETTER / LC-Rec ``*.index.json`` (keys: ``int(item id) + id_offset``; the items are
    those of ``data``'s item field and its sequences, and every one of them needs a code)."""
    from ..semantic.resolve import resolve_semantic_ids

    path = Path(spec)
    if path.is_dir():
        import pyarrow.parquet as pq

        items = path / "items.parquet"
        if not items.exists():
            raise DataError("no items.parquet beside the semantic IDs (write the folder with `recembed tokenize`)",
                            path=path)
        sid = SemanticIds.load(path)
        ids = np.asarray(pq.read_table(items).column("item_id").to_pylist(), dtype=object)
        if len(ids) != sid.num_items:
            raise DataError(f"items.parquet lists {len(ids)} items, the codes cover {sid.num_items}", path=path)
        return sid, ids
    if path.suffix != ".json" or not path.exists():
        raise ConfigError(f"{key}: {spec!r} is not a semantic-ID folder (`recembed tokenize --out`) or an existing "
                          "*.index.json file")
    names = {item_field} | {f.name for f in data.fields if f.vocab_from == item_field}
    values: set[str] = set()
    for p in PARTS:
        for n in names:
            col = data.part(p).columns[n]
            values.update(str(v) for v in (col.values if isinstance(col, Ragged) else col) if v is not None)
    ids = np.asarray(sorted(values, key=lambda v: (len(v), v)), dtype=object)
    if id_offset and not all(v.lstrip("-").isdigit() for v in ids):
        raise ConfigError(f"sid_id_offset: the item ids of {data.name} are not integers")
    sid = resolve_semantic_ids(str(path), len(ids), ids, id_offset=id_offset, field=key)
    return sid, ids
