"""The dataset catalog: how each folder of the shared data root is laid out.

``load(name, root=...)`` returns a :class:`~recembed.data.Dataset`. The root comes from the argument,
else ``RECEMBED_DATA_ROOT``, else ``../shared/data`` relative to the working directory. ``synthetic``
needs no root: it is generated (see :mod:`recembed.data.synthetic`).

Names may carry a variant after a colon (``amazon-sid:instruments``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Dataset
from .readers import formats as fmt
from .readers.delimited import read_delimited
from .tables import Table

ENV_VAR = "RECEMBED_DATA_ROOT"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    split: str  # the default split spec
    loader: Callable[[Path, str | None], Dataset]
    needs_root: bool = True
    task: str = "retrieval"  # "session": anonymous sessions with given test prefixes (recembed.tasks.sessions)


def data_root(root: str | Path | None = None) -> Path:
    """The folder that holds the catalog's datasets."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path("..") / "shared" / "data"


# --------------------------------------------------------------------------------------------
def _ml100k(folder: Path, variant: str | None) -> Dataset:
    return fmt.read_recbole_atomic(folder, "ml-100k")


ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
                 "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
                 "Western")


def _ml100k_text(folder: Path, variant: str | None) -> Dataset:
    ds = fmt.read_mmrec(folder, "ml-100k-text", inter_file="ml100k.inter")
    enriched = folder / "items_enriched.csv"
    if enriched.exists():
        cols = read_delimited(
            enriched, {"movie id": "int", "movie title": "text", "Summary": "text", "Cast": "text",
                       "Director": "text", **{g: "int" for g in ML100K_GENRES}}, delimiter=",",
        )
        rows = cols["movie id"] - 1  # MMRec itemID = MovieLens id - 1 (checked against movie_names.txt)
        table = ds.item_table or Table(ds.num_items)
        for src, dst in (("movie title", "title"), ("Summary", "summary"), ("Cast", "cast"), ("Director", "director")):
            full = np.full(ds.num_items, "", dtype=object)
            full[rows] = cols[src]
            table.add(dst, full, "text")
        flags = np.stack([cols[g] for g in ML100K_GENRES], axis=1) > 0
        genres = np.empty(ds.num_items, dtype=object)
        genres[:] = [()] * ds.num_items
        for r, f in zip(rows, flags):  # 1,682 catalog rows, not interactions
            genres[r] = tuple(g for g, on in zip(ML100K_GENRES, f) if on)
        table.add("genres", genres, "tags")
        ds.item_table = table
    return ds


def _ml_latest_small(folder: Path, variant: str | None) -> Dataset:
    ds = fmt.read_csv_interactions(folder / "ratings.csv", user="userId", item="movieId", rating="rating",
                                   timestamp="timestamp", name="ml-latest-small")
    movies = folder / "movies.csv"
    cols = read_delimited(movies, {"movieId": "str", "title": "text", "genres": "text"})
    idx = ds.items.index(cols["movieId"], unknown="ignore")
    keep = idx >= 0  # the catalog lists movies nobody rated; those are not in the item vocabulary
    ds.item_table = Table.from_rows(
        ds.num_items, idx[keep],
        {"title": ("text", cols["title"][keep]),
         "genres": ("tags", [tuple(g.split("|")) for g in cols["genres"][keep]])},
        source=str(movies),
    )
    return ds


def _split_files(folder: Path, pattern: str) -> dict[str, Path]:
    files = {p: folder / pattern.format(p) for p in ("train", "valid", "test")}
    return {p: f for p, f in files.items() if f.exists() or p != "valid"}


def _gowalla(folder: Path, variant: str | None) -> Dataset:
    return fmt.read_adjacency_split(_split_files(folder, "{}.txt"), name="gowalla")


def _amazon_beauty_cf(folder: Path, variant: str | None) -> Dataset:
    return fmt.read_triples_split(_split_files(folder, "{}.txt"), name="amazon-beauty-cf")


def _tiktok(folder: Path, variant: str | None) -> Dataset:
    from .readers.build import dataset_from_parts
    from .vocab import Vocabulary

    parts = {p: read_delimited(f, {"user_id": "str", "item_id": "str"}, delimiter="\t")
             for p, f in _split_files(folder, "{}.tsv").items()}
    feats = {k: np.load(folder / f"{k}_feat.npy", allow_pickle=False) for k in ("image", "audio")
             if (folder / f"{k}_feat.npy").exists()}
    n_items = max([a.shape[0] for a in feats.values()] + [max(int(x) for x in parts["train"]["item_id"]) + 1])
    n_users = max(max(int(x) for x in c["user_id"]) for c in parts.values()) + 1
    ds = dataset_from_parts("tiktok-mm", parts, users=Vocabulary.from_range(n_users, "user"),
                            items=Vocabulary.from_range(n_items, "item"))
    table = Table(n_items)
    for k, arr in feats.items():
        table.add(f"{k}_feat", arr.astype(np.float32), "vector")  # stored as float16: widen first
    ds.item_table = table
    return ds


def _amazon_seq(folder: Path, variant: str | None) -> Dataset:
    import json

    ds = fmt.read_sequence_file(folder / "Beauty.txt", name="amazon-seq")
    attr_path = folder / "Beauty_item2attributes.json"
    if attr_path.exists():
        attrs = json.loads(attr_path.read_text())
        idx = ds.items.index(list(attrs), unknown="ignore")
        keep = idx >= 0
        values = [tuple(str(a) for a in v) for v in attrs.values()]
        ds.item_table = Table.from_rows(
            ds.num_items, idx[keep], {"attributes": ("tags", [v for v, k in zip(values, keep) if k])},
            source=str(attr_path),
        )
    return ds


def _scientific(folder: Path, variant: str | None) -> Dataset:
    ds = fmt.read_unisrec_split(
        {p: folder / f"Scientific.{p}.inter" for p in ("train", "valid", "test")}, name="scientific"
    )
    # item tokens are indices into Scientific.item2index; text and vectors are keyed by those indices
    map_cols = read_delimited(folder / "Scientific.item2index", {"asin": "str", "index": "str"},
                              delimiter="\t", header=False, names=["asin", "index"])
    idx = ds.items.index(map_cols["index"], unknown="ignore")
    keep = idx >= 0
    asin_of_row = dict(zip(map_cols["asin"][keep], idx[keep]))
    text_cols = fmt._read_atomic(folder / "Scientific.text")[0]
    rows = np.array([asin_of_row.get(a, -1) for a in text_cols["item_id"]])
    ok = rows >= 0
    columns: dict[str, tuple[str, np.ndarray]] = {
        "asin": ("categorical", map_cols["asin"][keep]),
    }
    table = Table.from_rows(ds.num_items, idx[keep], columns, source=str(folder / "Scientific.item2index"))
    text = np.full(ds.num_items, "", dtype=object)
    text[rows[ok]] = text_cols["text"][ok]
    table.add("text", text, "text")
    for suffix, col in (("feat1CLS", "text_feat"), ("feat3CLS", "image_feat")):
        path = folder / f"Scientific.{suffix}"
        if path.exists():
            arr = np.fromfile(path, dtype=np.float32).reshape(-1, 512)
            full = np.zeros((ds.num_items, 512), dtype=np.float32)
            item_index = np.array([int(x) for x in ds.items.ids])
            inside = item_index < arr.shape[0]
            full[inside] = arr[item_index[inside]]
            table.add(col, full, "vector")
    ds.item_table = table
    return ds


def _diginetica(folder: Path, variant: str | None) -> Dataset:
    ds = fmt.read_sequence_file(folder / "train_sessions.txt", name="diginetica-session", has_user=False)
    test = folder / "test_prefix_target.tsv"
    if test.exists():
        ds.extras["test_prefix_target"] = read_delimited(test, {"prefix": "text", "target": "str"}, delimiter="\t")
    return ds


def _amazon_sid(folder: Path, variant: str | None) -> Dataset:
    name = {"beauty": "Beauty", "instruments": "Instruments", None: "Beauty"}.get(variant)
    if name is None:
        raise DataError(f"amazon-sid has variants 'beauty' and 'instruments', not {variant!r}")
    ds = fmt.read_json_sequences(folder / f"{name}.inter.json", name=f"amazon-sid:{name.lower()}")
    ds.extras["semantic_id_files"] = sorted(str(p) for p in folder.glob(f"{name}*.index.json"))
    return ds


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in [
        CatalogEntry("synthetic", "generated catalog with planted tastes (no files needed)", "random:0.8,0.1,0.1",
                     lambda folder, variant: _synthetic(variant), needs_root=False),
        CatalogEntry("ml-100k", "MovieLens 100K, RecBole atomic files, titles/genres/user features",
                     "random:0.8,0.1,0.1", _ml100k),
        CatalogEntry("ml-100k-text", "MovieLens 100K in MMRec format with plot text and 384-d text vectors",
                     "given", _ml100k_text),
        CatalogEntry("ml-latest-small", "MovieLens latest-small: explicit ratings, titles, genres",
                     "random:0.8,0.1,0.1", _ml_latest_small),
        CatalogEntry("amazon-beauty-cf", "Amazon Beauty CF (SELFRec), given train/valid/test", "given",
                     _amazon_beauty_cf),
        CatalogEntry("gowalla", "Gowalla check-ins, the LightGCN paper split (train+valid = paper train)",
                     "given:merge-valid", _gowalla),
        CatalogEntry("amazon-seq", "Amazon Beauty 5-core sequences (S3-Rec), leave-one-out", "given", _amazon_seq),
        CatalogEntry("scientific", "Amazon Scientific (UniSRec format) with text and 512-d text/image vectors",
                     "given", _scientific),
        CatalogEntry("tiktok-mm", "TikTok micro-video, given split, 128-d image + audio vectors", "given", _tiktok),
        CatalogEntry("diginetica-session", "DIGINETICA sessions (train sessions; test prefixes in extras)",
                     "given", _diginetica, task="session"),
        CatalogEntry("amazon-sid", "Amazon Beauty / Instruments sequences with precomputed semantic IDs",
                     "given", _amazon_sid),
    ]
}


def _synthetic(variant: str | None) -> Dataset:
    from .synthetic import SyntheticConfig, generate

    return generate(SyntheticConfig() if variant is None else SyntheticConfig(scale=variant))


def names() -> list[str]:
    return list(CATALOG)


def entry(name: str) -> CatalogEntry:
    base = name.split(":", 1)[0]
    if base not in CATALOG:
        raise DataError(f"unknown dataset {name!r}; the catalog has {names()} (or pass a folder or file path)")
    return CATALOG[base]


def load(name: str, root: str | Path | None = None) -> Dataset:
    """Load a catalog dataset by name (``gowalla``, ``ml-100k``, ``amazon-sid:instruments``, ...)."""
    e = entry(name)
    variant = name.split(":", 1)[1] if ":" in name else None
    folder = data_root(root) / e.name
    if e.needs_root and not folder.is_dir():
        raise DataError(
            f"dataset {e.name!r} not found under the data root {data_root(root)} "
            f"(pass --data-root or set {ENV_VAR})", path=folder,
        )
    return e.loader(folder, variant)


OWN_DATA_SUFFIXES = (".csv", ".tsv", ".tab", ".parquet", ".pq")


def load_any(data: str, root: str | Path | None = None, *, items: str | Path | None = None,
             users: str | Path | None = None, columns: str | dict[str, str] | None = None,
             duplicates: str | None = None) -> tuple[Dataset, str | None]:
    """A catalog name or a path, as ``recembed fit --data`` reads it: ``(dataset, default split spec or None)``.

    An interactions file (CSV / TSV / Parquet) goes through :func:`~recembed.data.readers.own.read_own` with the
    item / user tables, the column mapping and the duplicate policy (default ``drop``). Catalog datasets and
    folders keep their events as published: for them ``items`` / ``users`` / ``columns`` / a ``duplicates``
    policy other than ``keep`` are an error.
    """
    base = data.split(":", 1)[0]
    path = Path(data)
    own = base not in CATALOG and path.suffix.lower() in OWN_DATA_SUFFIXES
    if not own:
        extra = [flag for flag, v in (("--items", items), ("--users", users), ("--columns", columns)) if v]
        if duplicates not in (None, "keep"):
            extra.append(f"--duplicates {duplicates}")
        if extra:
            raise DataError(f"{', '.join(extra)}: only for an interactions file (.csv, .tsv or .parquet); "
                            f"{data!r} is a catalog dataset or folder whose events are kept as published")
    if base in CATALOG:
        return load(data, root=root), entry(data).split
    if own:
        from .readers.own import read_own

        if not path.is_file():
            raise DataError("file not found", path=path)
        return read_own(path, items=items, users=users, columns=columns, duplicates=duplicates or "drop"), None
    return load_path(path), None


def load_path(path: str | Path) -> Dataset:
    """Load a dataset from a path, guessing the format from what is there.

    * a folder with ``NAME.inter`` holding ``x_label`` -> MMRec; with a typed header -> RecBole atomic;
    * a folder with ``train.*`` / ``test.*`` -> given split (``.tsv`` with header, ``.txt`` adjacency or
      triples);
    * a ``.csv`` / ``.tsv`` file -> events with ``user_id``, ``item_id`` [``rating``, ``timestamp``];
    * a ``.parquet`` file -> the same columns; a ``.json`` file -> ``{user: [items]}`` sequences;
    * a ``.txt`` file -> one user a line sequence file.
    """
    path = Path(path)
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if inters:
            with open(inters[0], encoding="utf-8") as fh:
                head = fh.readline()
            if "x_label" in head:
                return fmt.read_mmrec(path, inters[0].stem)
            return fmt.read_recbole_atomic(path, inters[0].stem)
        for ext in ("tsv", "txt"):
            if (path / f"train.{ext}").exists() and (path / f"test.{ext}").exists():
                files = _split_files(path, "{}." + ext)
                if ext == "tsv":
                    from .readers.build import dataset_from_parts

                    parts = {p: read_delimited(f, {"user_id": "str", "item_id": "str"}, delimiter="\t")
                             for p, f in files.items()}
                    return dataset_from_parts(path.name, parts)
                first = (path / "train.txt").read_text(encoding="utf-8").split("\n", 1)[0].split()
                if len(first) == 3 and first[2] in ("1", "1.0"):
                    return fmt.read_triples_split(files, name=path.name)
                return fmt.read_adjacency_split(files, name=path.name)
        raise DataError("folder holds no *.inter file and no train/test split files", path=path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        import csv

        if not path.is_file():
            raise DataError("file not found", path=path)
        try:
            with open(path, encoding="utf-8") as fh:
                header = next(csv.reader(fh, delimiter="\t" if suffix == ".tsv" else ","), [])
        except UnicodeDecodeError:
            from .hygiene import non_utf8_error

            raise non_utf8_error(path) from None
        return fmt.read_csv_interactions(
            path, rating="rating" if "rating" in header else None,
            timestamp="timestamp" if "timestamp" in header else None,
        )
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        return fmt.read_parquet_interactions(
            path, rating="rating" if "rating" in schema.names else None,
            timestamp="timestamp" if "timestamp" in schema.names else None,
        )
    if suffix == ".json":
        return fmt.read_json_sequences(path)
    if suffix == ".txt":
        return fmt.read_sequence_file(path)
    raise DataError(f"cannot tell the format of {path.name!r}", path=path)
