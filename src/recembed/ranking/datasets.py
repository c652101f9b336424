"""CTR datasets for the ranking stage, built from the catalog's interaction datasets (``recembed fit deepfm --data
ml-100k-ctr``). Each is a :class:`CTRData`: the fields (unfitted schema) and train / valid / test :class:`Frame`s.

* ``ml-100k-ctr`` -- every ml-100k rating is an impression: rating >= 4 a click, < 4 a non-click. Fields: user
  id, item id, age, gender, occupation, zip prefix (3 characters), genres (tags), release year. Split: all
  ratings ordered by timestamp (ties in file order), the first 80% train, the next 10% valid, the last 10% test.
* ``amazon-seq-din`` -- the DIN protocol on S3-Rec's Beauty (amazon-seq): every position of a user's sequence is
  a target (click) with the items before it as the behaviour sequence (last ``max_len``), paired with one
  uniformly sampled item the user never interacted with (non-click) that has the same history; the last
  target of each user is test, the one before valid, the rest train. Fields: user id, item id, its first
  attribute (``cate``, DIN's category), its attributes (tags), and the two behaviour sequences (``hist_items``,
  ``hist_cates``) sharing the item / category vocabularies.
* ``ml-100k-ctr-mm`` -- ml-100k-ctr (same rows, labels and split) plus the item's 384-d text vector
  ``text_feat`` from ml-100k-text (``text_feat.npy`` rows mapped to ml-100k ids through ``i_id_mapping.csv``;
  an item without a vector gets zeros and ``has_text`` 0 -- a numeric 0/1 field, constant 1 on the shared copy
  where all 1,682 items have one) and the behaviour sequence ``hist_items``: the items the user rated before
  this rating (time order, ties in file order as the split; the last 20; ``vocab_from=item_id``), which for a
  valid / test row may include earlier valid / test ratings -- the past, as at serving time.
* ``ml-100k-ctr-seq`` -- the same without the text fields: the ID-only twin of ml-100k-ctr-mm, so that
  "content as a feature" is measured with the sequence held fixed.

``write_csv`` writes the identical split as CSV (token lists joined by ``^``) for peers (FuxiCTR) to read.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write
from .schema import Field, Frame, Ragged, Schema

PARTS = ("train", "valid", "test")


@dataclass
class CTRData:
    name: str
    fields: list[Field]
    train: Frame
    valid: Frame
    test: Frame
    description: str = ""

    def part(self, name: str) -> Frame:
        if name not in PARTS:
            raise DataError(f"unknown part {name!r}; expected one of {PARTS}")
        return getattr(self, name)

    def schema(self) -> Schema:
        """A fresh schema over these fields, fitted on the training part only."""
        return Schema(list(self.fields)).fit(self.train)

    def sizes(self) -> dict[str, int]:
        return {p: len(self.part(p)) for p in PARTS}

    def __repr__(self) -> str:
        return f"CTRData({self.name!r}, {self.sizes()}, fields={[f.name for f in self.fields]})"

    def write_csv(self, folder: str | Path) -> Path:
        """``folder/{train,valid,test}.csv``: ``label`` then every field (token lists joined by ``^``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = [f.name for f in self.fields if f.kind != "vector"]
        for p in PARTS:
            frame = self.part(p)
            cols = [_as_text(frame.columns[n]) for n in names]

            def write(path: Path, frame: Frame = frame, cols: list = cols) -> None:
                with open(path, "w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(["label", *names])
                    w.writerows(zip(frame.labels.astype(int).tolist(), *cols))

            atomic_write(folder / f"{p}.csv", write)
        return folder


def _as_text(col: object) -> list[str]:
    if isinstance(col, Ragged):
        return ["^".join(col.values[a:b]) for a, b in zip(col.offsets[:-1], col.offsets[1:])]
    return [str(v) for v in np.asarray(col).tolist()]


def _time_split(n: int, order: np.ndarray, ratios: tuple[float, float] = (0.8, 0.9)) -> list[np.ndarray]:
    a, b = int(round(n * ratios[0])), int(round(n * ratios[1]))
    return [np.sort(order[:a]), np.sort(order[a:b]), np.sort(order[b:])]


def _ml100k_rows(root: str | Path | None) -> tuple[Frame, list[Field], np.ndarray, dict[str, np.ndarray]]:
    """ml-100k-ctr's rows (one per rating, file order), fields, timestamp order, and the raw user / item /
    timestamp arrays the multimodal variants build on."""
    from ..data import catalog

    ds = catalog.load("ml-100k", root)
    inter = ds.interactions
    if inter.rating is None or inter.timestamp is None or ds.user_table is None or ds.item_table is None:
        raise DataError("ml-100k-ctr needs ml-100k's ratings, timestamps, user and item tables")
    u, i = inter.user_idx, inter.item_idx
    ut, it = ds.user_table, ds.item_table
    zip3 = np.asarray([str(z)[:3] for z in ut["zip_code"]], dtype=object)
    genres = Ragged.from_lists(list(it["class"]))
    cols = {
        "user_id": ds.users.ids[u], "item_id": ds.items.ids[i], "age": ut["age"][u], "gender": ut["gender"][u],
        "occupation": ut["occupation"][u], "zip3": zip3[u], "genres": genres.take(i), "year": it["release_year"][i],
    }
    frame = Frame(cols, (inter.rating >= 4).astype(np.float32), ds.users.ids[u])
    fields = [Field("user_id", "categorical"), Field("item_id", "categorical"), Field("age", "categorical"),
              Field("gender", "categorical"), Field("occupation", "categorical"),
              Field("zip3", "categorical", min_count=2), Field("genres", "tags"), Field("year", "categorical")]
    order = np.argsort(inter.timestamp, kind="stable")
    raw = {"user": u, "item": i, "item_ids": ds.items.ids, "timestamp": inter.timestamp}
    return frame, fields, order, raw


def ml100k_ctr(root: str | Path | None = None) -> CTRData:
    """ml-100k ratings as impressions (rating >= 4: click), user / item attributes, timestamp-ordered 80/10/10."""
    frame, fields, order, _ = _ml100k_rows(root)
    train, valid, test = (frame.take(r) for r in _time_split(len(frame), order))
    return CTRData("ml-100k-ctr", fields, train, valid, test,
                   "ml-100k ratings as impressions (>= 4 click), timestamp-ordered 80/10/10")


def previous_items(user: np.ndarray, item: np.ndarray, order: np.ndarray, item_ids: np.ndarray, max_len: int
                   ) -> Ragged:
    """Per row (``user``, ``item``: index arrays), the ids of the ``max_len`` items its user rated before it
    (oldest first) in the total order ``order`` (row indices sorted by time, ties in file order) -- the
    behaviour sequence of every impression."""
    by_user = order[np.argsort(user[order], kind="stable")]  # rows grouped by user, time-ordered within
    users = user[by_user]
    start = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    length = np.diff(np.r_[start, len(users)])
    pos = np.arange(len(users)) - np.repeat(start, length)  # how many of the user's rows come before
    h_len = np.minimum(pos, max_len)
    offsets = np.zeros(len(users) + 1, np.int64)
    np.cumsum(h_len, out=offsets[1:])
    k = np.arange(offsets[-1]) - np.repeat(offsets[:-1], h_len)
    flat = by_user[np.repeat(np.arange(len(users)) - h_len, h_len) + k]  # the rows of each history
    hist = Ragged(item_ids[item[flat]], offsets)  # in the by-user order; back to row order
    back = np.empty(len(users), np.int64)
    back[by_user] = np.arange(len(users))
    return hist.take(back)


def item_text_vectors(root: str | Path | None, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors (n_items, 384), has_text (n_items,) bool)`` for ml-100k item ids from ml-100k-text: row
    ``itemID`` of ``text_feat.npy`` belongs to the MovieLens item ``k + 1`` where ``i_id_mapping.csv`` names it
    ``"k_<title>"`` (MMRec's ids are MovieLens ids - 1; the catalog's reader makes the same mapping). Items the
    mapping lacks get zeros and ``has_text`` False."""
    from ..data.catalog import data_root

    folder = data_root(root) / "ml-100k-text"
    feat_path, map_path = folder / "text_feat.npy", folder / "i_id_mapping.csv"
    for p in (feat_path, map_path):
        if not p.exists():
            raise DataError("ml-100k-ctr-mm needs ml-100k-text's text_feat.npy and i_id_mapping.csv", path=p)
    feat = np.load(feat_path)
    if feat.ndim != 2:
        raise DataError(f"expected a (items, dim) array, got shape {feat.shape}", path=feat_path)
    row_of: dict[str, int] = {}
    with open(map_path, newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if header != ["asin", "itemID"]:
            raise DataError(f"expected the columns asin, itemID; got {header}", path=map_path)
        for asin, row in reader:
            k, sep, _ = asin.partition("_")
            if not sep or not k.isdigit() or not row.isdigit() or int(row) >= len(feat):
                raise DataError(f"unreadable row {asin!r}, {row!r}", path=map_path)
            row_of[str(int(k) + 1)] = int(row)
    rows = np.asarray([row_of.get(str(i), -1) for i in item_ids], dtype=np.int64)
    has = rows >= 0
    vectors = np.zeros((len(item_ids), feat.shape[1]), dtype=np.float32)
    vectors[has] = feat[rows[has]]
    return vectors, has


def ml100k_ctr_seq(root: str | Path | None = None, max_len: int = 20) -> CTRData:
    """ml-100k-ctr plus each rating's behaviour sequence (the user's previous 20 rated items), no content."""
    return _ml100k_multimodal(root, max_len, text=False)


def ml100k_ctr_mm(root: str | Path | None = None, max_len: int = 20) -> CTRData:
    """ml-100k-ctr plus 384-d item text vectors (ml-100k-text), has_text and the behaviour sequence."""
    return _ml100k_multimodal(root, max_len, text=True)


def _ml100k_multimodal(root: str | Path | None, max_len: int, *, text: bool) -> CTRData:
    frame, fields, order, raw = _ml100k_rows(root)
    frame.columns["hist_items"] = previous_items(raw["user"], raw["item"], order, raw["item_ids"], max_len)
    fields = [*fields, Field("hist_items", "sequence", max_len=max_len, vocab_from="item_id")]
    name = "ml-100k-ctr-seq"
    if text:
        vectors, has = item_text_vectors(root, raw["item_ids"])
        frame.columns["text_feat"] = vectors[raw["item"]]
        frame.columns["has_text"] = has[raw["item"]].astype(np.float32)
        fields += [Field("text_feat", "vector"), Field("has_text", "numeric")]
        name = "ml-100k-ctr-mm"
    train, valid, test = (frame.take(r) for r in _time_split(len(frame), order))
    what = "text vectors + " if text else ""
    return CTRData(name, fields, train, valid, test,
                   f"ml-100k-ctr (same rows and split) + {what}the previous {max_len} rated items")


def amazon_seq_din(root: str | Path | None = None, max_len: int = 50, seed: int = 2020) -> CTRData:
    """Beauty (amazon-seq) in DIN's protocol: next item vs one sampled non-click, behaviour sequences."""
    from ..data import catalog

    ds = catalog.load("amazon-seq", root)
    inter = ds.interactions
    order = np.lexsort((inter.timestamp if inter.timestamp is not None else np.arange(len(inter)), inter.user_idx))
    users, items = inter.user_idx[order], inter.item_idx[order]
    start = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    length = np.diff(np.r_[start, len(users)])
    pos = np.arange(len(users)) - np.repeat(start, length)  # position within the user's sequence
    last = np.repeat(length - 1, length)
    target = pos >= 1  # a target needs at least one earlier item
    part = np.where(pos == last, 2, np.where(pos == last - 1, 1, 0))
    rows = np.flatnonzero(target)
    # one negative per target: a uniform item outside the user's sequence, same history
    rng = np.random.default_rng(seed)
    n_items = np.int64(ds.num_items)
    seen = np.unique(users.astype(np.int64) * n_items + items)
    owner = users[rows].astype(np.int64) * n_items
    neg = rng.integers(0, ds.num_items, len(rows))
    clash = np.isin(owner + neg, seen)
    while clash.any():
        neg[clash] = rng.integers(0, ds.num_items, int(clash.sum()))
        clash[clash] = np.isin(owner[clash] + neg[clash], seen)
    # histories as ragged slices of the sorted event list: the max_len items before each target
    h_len = np.minimum(pos[rows], max_len)
    offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(h_len, out=offsets[1:])
    flat = np.repeat(rows - h_len, h_len) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], h_len))
    attrs = ds.item_table["attributes"] if ds.item_table is not None else np.full(ds.num_items, (), dtype=object)
    cate = np.asarray([a[0] if len(a) else "" for a in attrs], dtype=object)
    attr_lists = Ragged.from_lists(list(attrs))
    item_ids = ds.items.ids
    both = np.r_[items[rows], neg]  # positives, then their negatives
    hist = Ragged(item_ids[items[flat]], offsets)
    hist_c = Ragged(cate[items[flat]], offsets)
    twice = np.r_[np.arange(len(rows)), np.arange(len(rows))]
    cols = {"user_id": ds.users.ids[users[rows]][twice], "item_id": item_ids[both], "cate": cate[both],
            "attributes": attr_lists.take(both), "hist_items": hist.take(twice), "hist_cates": hist_c.take(twice)}
    labels = np.r_[np.ones(len(rows)), np.zeros(len(rows))].astype(np.float32)
    frame = Frame(cols, labels, cols["user_id"])
    which = np.r_[part[rows], part[rows]]
    fields = [Field("user_id", "categorical"), Field("item_id", "categorical"), Field("cate", "categorical"),
              Field("attributes", "tags"), Field("hist_items", "sequence", max_len=max_len, vocab_from="item_id"),
              Field("hist_cates", "sequence", max_len=max_len, vocab_from="cate")]
    train, valid, test = (frame.take(np.flatnonzero(which == k)) for k in range(3))
    return CTRData("amazon-seq-din", fields, train, valid, test,
                   "Beauty (S3-Rec) DIN protocol: next item vs one sampled negative, leave-one-out")


CTR_DATASETS: dict[str, Callable[..., CTRData]] = {"ml-100k-ctr": ml100k_ctr, "amazon-seq-din": amazon_seq_din,
                                                   "ml-100k-ctr-mm": ml100k_ctr_mm, "ml-100k-ctr-seq": ml100k_ctr_seq}
#: the catalog dataset each CTR dataset is built from (ml-100k-ctr-mm: its rows come from ml-100k, its text
#: vectors from ml-100k-text, the one named here)
CTR_SOURCES: dict[str, str] = {"ml-100k-ctr": "ml-100k", "amazon-seq-din": "amazon-seq",
                               "ml-100k-ctr-mm": "ml-100k-text", "ml-100k-ctr-seq": "ml-100k"}


def is_ctr_dataset(name: str) -> bool:
    return name in CTR_DATASETS


def load_ctr(name: str, root: str | Path | None = None) -> CTRData:
    try:
        loader = CTR_DATASETS[name]
    except KeyError:
        raise DataError(f"unknown CTR dataset {name!r}; the ranking catalog has {sorted(CTR_DATASETS)}") from None
    return loader(root)
