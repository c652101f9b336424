"""Named item modalities for content models.

A :class:`Modality` is an ``(I, d) float32`` matrix plus a ``present (I,) bool`` mask (an item with no
image, an empty text). :class:`ItemFeatures` holds several, checks that they agree on the number of
items and have finite values, saves to / loads from safetensors + JSON, and builds from an item
:class:`~recembed.data.tables.Table` (vector columns as they are; text columns through a text encoder;
categorical / tag / numeric columns as field blocks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_write, read_json, write_json


@dataclass
class Modality:
    values: np.ndarray  # (I, d) float32
    present: np.ndarray  # (I,) bool

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])


class ItemFeatures:
    """Several named modalities over the same ``num_items`` items."""

    def __init__(self, num_items: int) -> None:
        self.num_items = num_items
        self.modalities: dict[str, Modality] = {}

    def add(self, name: str, values: np.ndarray, present: np.ndarray | None = None) -> ItemFeatures:
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2 or values.shape[0] != self.num_items:
            raise DataError(f"expected a ({self.num_items}, d) matrix, got shape {values.shape}", field=name)
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            raise DataError(f"{int(bad.sum())} item(s) with NaN/inf values, first at item index "
                            f"{int(np.flatnonzero(bad)[0])}", field=name)
        present = np.ones(self.num_items, dtype=bool) if present is None else np.asarray(present, dtype=bool)
        if present.shape != (self.num_items,):
            raise DataError(f"present mask has shape {present.shape}, expected ({self.num_items},)", field=name)
        self.modalities[name] = Modality(values, present)
        return self

    def __getitem__(self, name: str) -> Modality:
        try:
            return self.modalities[name]
        except KeyError:
            raise ConfigError(f"no modality {name!r}; have {sorted(self.modalities)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.modalities

    def __len__(self) -> int:
        return len(self.modalities)

    def names(self) -> list[str]:
        return list(self.modalities)

    def dims(self) -> dict[str, int]:
        return {k: m.dim for k, m in self.modalities.items()}

    def select(self, names: Iterable[str]) -> ItemFeatures:
        out = ItemFeatures(self.num_items)
        for n in names:
            m = self[n]
            out.add(n, m.values, m.present)
        return out

    def concat(self, names: Iterable[str] | None = None) -> Modality:
        """One matrix of the chosen modalities side by side; present where any of them is."""
        names = list(names or self.modalities)
        mods = [self[n] for n in names]
        return Modality(np.concatenate([m.values for m in mods], axis=1),
                        np.logical_or.reduce([m.present for m in mods]))

    def subset_items(self, idx: np.ndarray) -> ItemFeatures:
        out = ItemFeatures(len(idx))
        for n, m in self.modalities.items():
            out.add(n, m.values[idx], m.present[idx])
        return out

    def save(self, directory: str | Path) -> Path:
        from safetensors.numpy import save_file

        directory = Path(directory)
        tensors = {}
        for n, m in self.modalities.items():
            tensors[f"{n}.values"] = np.ascontiguousarray(m.values)
            tensors[f"{n}.present"] = m.present.astype(np.uint8)
        atomic_write(directory / "features.safetensors", lambda p: save_file(tensors, str(p)))
        write_json(directory / "features.json", {"num_items": self.num_items, "modalities": self.dims()})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ItemFeatures:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        directory = Path(directory)
        meta = read_json(directory / "features.json")
        try:
            tensors = load_file(str(directory / "features.safetensors"))
        except (SafetensorError, OSError) as exc:
            raise DataError(f"unreadable features file ({exc})", path=directory / "features.safetensors") from None
        out = cls(int(meta["num_items"]))
        for n, d in meta["modalities"].items():
            values = tensors.get(f"{n}.values")
            if values is None or values.shape[1] != d:
                raise DataError(f"modality {n!r} missing or not {d}-dimensional", path=directory)
            out.add(n, values, tensors[f"{n}.present"].astype(bool))
        return out

    def __repr__(self) -> str:
        mods = ", ".join(f"{n}: {m.dim}d, {int(m.present.sum())}/{self.num_items} present"
                         for n, m in self.modalities.items())
        return f"ItemFeatures({mods})"


def features_from_table(table, *, text_columns: Iterable[str] = (), text_encoder=None,
                        vector_columns: Iterable[str] | None = None, field_columns: Iterable[str] = (),
                        text_name: str = "text") -> ItemFeatures:
    """Build :class:`ItemFeatures` from an item table.

    * every ``vector`` column (or those in ``vector_columns``) becomes a modality of that name (rows that
      are all zero count as missing);
    * ``text_columns`` are joined per item (``"col: value. col: value"``, tags joined with commas) and
      encoded by ``text_encoder`` (a :class:`SentenceEncoder` or :class:`TfidfEncoder`) into modality
      ``text_name``;
    * ``field_columns`` (categorical, tags, numeric) are encoded and concatenated into modality ``fields``.
    """
    from .fields import encode_categorical, encode_numeric, encode_tags

    feats = ItemFeatures(table.num_rows)
    for name in (table.names("vector") if vector_columns is None else list(vector_columns)):
        if table.kinds.get(name) != "vector":
            raise ConfigError(f"{name!r} is not a vector column of the item table; vector columns: "
                              f"{table.names('vector')}")
        values = table[name]
        feats.add(name, values, np.abs(values).sum(axis=1) > 0)
    text_columns = list(text_columns)
    if text_columns:
        if text_encoder is None:
            raise ConfigError("text_columns given without a text encoder")
        texts = join_text_columns(table, text_columns)
        if hasattr(text_encoder, "fit_transform"):
            values = text_encoder.fit_transform(texts)
        else:
            values = text_encoder.encode(texts)
        feats.add(text_name, values, np.array([bool(t.strip()) for t in texts]))
    blocks, presents = [], []
    for name in field_columns:
        kind = table.kinds.get(name)
        if kind == "categorical":
            block, present, _ = encode_categorical(table[name], name=name)
        elif kind == "tags":
            block, present, _ = encode_tags(table[name], name=name)
        elif kind == "numeric":
            block, present, _ = encode_numeric(table[name], name=name)
        else:
            raise ConfigError(f"field column {name!r} has kind {kind!r}; expected categorical, tags or numeric")
        blocks.append(block)
        presents.append(present)
    if blocks:
        feats.add("fields", np.concatenate(blocks, axis=1), np.logical_or.reduce(presents))
    return feats


def join_text_columns(table, columns: list[str]) -> list[str]:
    """One text per item from several columns: ``"title: X. genres: a, b"``; empty parts are skipped."""
    for c in columns:
        if c not in table:
            raise ConfigError(f"no column {c!r} in the item table; columns: {sorted(table.columns)}")
        if table.kinds[c] not in ("text", "categorical", "tags"):
            raise ConfigError(f"column {c!r} has kind {table.kinds[c]!r}; text columns must be text, "
                              "categorical or tags")
    out = []
    for r in range(table.num_rows):
        parts = []
        for c in columns:
            v = table[c][r]
            v = ", ".join(map(str, v)) if table.kinds[c] == "tags" else ("" if v is None else str(v))
            if v.strip():
                parts.append(f"{c}: {v.strip()}")
        out.append(". ".join(parts))
    return out


def _row_options(spec: str, options: list[str], num_items: int) -> dict[str, np.ndarray]:
    """``ids=FILE`` / ``mask=FILE`` after a ``--features NAME=PATH``: which item each ``.npy`` row is."""
    out: dict[str, np.ndarray] = {}
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep or key not in ("ids", "mask") or not value:
            raise ConfigError(f"--features {spec!r}: after NAME=PATH expected ,ids=IDS.txt or ,mask=MASK.npy, "
                              f"got {opt!r}")
        if not Path(value).is_file():
            raise DataError("file not found", path=value)
        if key == "ids":
            try:
                lines = Path(value).read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                from ..data.hygiene import non_utf8_error

                raise non_utf8_error(value) from None
            out["ids"] = np.asarray([x.strip() for x in lines if x.strip()], dtype=object)
        else:
            try:
                out["present"] = np.load(value, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"not a readable .npy mask ({exc})", path=value) from None
    return out


def attach_features(dataset, specs: Iterable[str] = (), *, text_columns: Iterable[str] = (), text_encoder=None,
                    text_name: str | None = None) -> list[str]:  # noqa: ANN001
    """Add content to ``dataset.item_table`` as vector columns (the table is created if there is none).

    ``specs`` entries are ``NAME=PATH`` (a ``.npy`` matrix with one row per item, row r = item index r, or a
    Parquet file with an ``item_id`` column; see :func:`~recembed.encoders.vectors.load_vectors`), ``NAME=PATH,
    ids=IDS.txt`` (a ``.npy`` whose rows are the items listed one id a line) or ``NAME=PATH,mask=MASK.npy``
    (a ``.npy`` with one row per item whose mask entry is true, in item order), or a folder written by
    ``recembed encode`` (every modality in it, checked against the dataset's item ids). ``text_columns`` are
    joined per item and encoded by ``text_encoder`` into the column ``text_name`` (default
    ``"<encoder>_text"``). Items a source does not cover get a zero row (= missing). Returns the names added.
    """
    from ..data.tables import Table
    from .vectors import load_vectors

    if dataset.item_table is None:
        dataset.item_table = Table(dataset.num_items)
    table = dataset.item_table
    added: list[str] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if sep:
            path, *options = path.split(",")
            if not name or not path:
                raise ConfigError(f"--features {spec!r}: expected NAME=PATH (e.g. image=image_feat.npy)")
            values, _ = load_vectors(path, dataset.items, **_row_options(spec, options, dataset.num_items))
            table.add(name, values, "vector")
            added.append(name)
            continue
        folder = Path(spec)
        if not (folder / "features.json").exists():
            raise DataError("expected NAME=PATH or a folder written by `recembed encode` (features.json)",
                            path=folder)
        feats = ItemFeatures.load(folder)
        if feats.num_items != dataset.num_items:
            raise DataError(f"features for {feats.num_items} items, the dataset has {dataset.num_items}",
                            path=folder / "features.json")
        ids_file = folder / "items.parquet"
        if ids_file.exists():
            import pyarrow.parquet as pq

            ids = pq.read_table(ids_file).column("item_id").to_pylist()
            if [str(i) for i in ids] != [str(i) for i in dataset.items.ids]:
                raise DataError("item ids differ from the dataset's item vocabulary (encoded from other data?)",
                                path=ids_file)
        for n, m in feats.modalities.items():
            table.add(n, np.where(m.present[:, None], m.values, 0.0), "vector")
            added.append(n)
    columns = list(text_columns)
    if columns:
        if text_encoder is None:
            raise ConfigError("text_columns given without a text encoder")
        texts = join_text_columns(table, columns)
        values = text_encoder.fit_transform(texts) if hasattr(text_encoder, "fit_transform") \
            else text_encoder.encode(texts)
        empty = np.array([not t.strip() for t in texts])
        values = np.where(empty[:, None], 0.0, values)
        name = text_name or f"{getattr(text_encoder, 'kind', type(text_encoder).__name__.lower())}_text"
        table.add(name, values, "vector")
        added.append(name)
    return added
