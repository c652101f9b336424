"""Readers for each supported on-disk format.

===========================  ======================================================================
format                       layout
===========================  ======================================================================
CSV / TSV                    one event a row; a column mapping names the user, item, rating, time
Parquet                      the same, columnar
RecBole atomic               ``NAME.inter`` / ``.item`` / ``.user``, tab-separated, ``name:type`` header
adjacency (LightGCN)         ``user item item ...`` per line, files train / valid / test
triples (SELFRec)            ``user item [weight]`` per line, files train / valid / test
MMRec folder                 ``NAME.inter`` with ``userID itemID ... x_label`` + ``*_feat.npy`` vectors
sequence file                ``user item item ...`` one user a line, chronological
JSON sequences               ``{"user": [item, item, ...]}``, chronological
UniSRec ``.inter``           ``user_id  item_id_list  item_id``: history and next item, per split file
===========================  ======================================================================
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import DataError
from ..dataset import Dataset
from ..hygiene import check_ids, non_utf8_error
from ..splits import PARTS, leave_one_out
from ..tables import Table
from ..vocab import Vocabulary
from .build import dataset_from_columns, dataset_from_parts
from .delimited import line_of_row, numbered_token_lines, read_delimited, read_token_lines

TEXT_LIKE = ("title", "name", "text", "desc", "description", "summary", "review")


# --------------------------------------------------------------------------------------------
# CSV / Parquet with a column mapping
# --------------------------------------------------------------------------------------------
def read_csv_interactions(
    path: str | Path,
    *,
    user: str = "user_id",
    item: str = "item_id",
    rating: str | None = None,
    timestamp: str | None = None,
    delimiter: str | None = None,
    name: str | None = None,
) -> Dataset:
    """Events from a delimited file with a header; ``user``/``item``/... name its columns.

    The delimiter defaults to tab for ``.tsv``/``.tab`` files and comma otherwise.
    """
    path = Path(path)
    if delimiter is None:
        delimiter = "\t" if path.suffix in (".tsv", ".tab") else ","
    spec = {user: "str", item: "str"}
    if rating:
        spec[rating] = "float"
    if timestamp:
        spec[timestamp] = "float"
    raw = read_delimited(path, spec, delimiter=delimiter)
    cols = {"user_id": raw[user], "item_id": raw[item]}
    if rating:
        cols["rating"] = raw[rating]
    if timestamp:
        cols["timestamp"] = raw[timestamp]
    return dataset_from_columns(name or path.stem, cols, source=str(path))


def read_parquet_interactions(
    path: str | Path,
    *,
    user: str = "user_id",
    item: str = "item_id",
    rating: str | None = None,
    timestamp: str | None = None,
    name: str | None = None,
) -> Dataset:
    """Events from a Parquet file; ids may be strings or integers, null ids are an error."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", path=path) from None
    wanted = {"user_id": user, "item_id": item, "rating": rating, "timestamp": timestamp}
    missing = [c for c in wanted.values() if c and c not in table.column_names]
    if missing:
        raise DataError(f"missing column(s) {missing}; the file has {table.column_names}", path=path)
    cols: dict[str, np.ndarray] = {}
    for key, col_name in wanted.items():
        if not col_name:
            continue
        col = table.column(col_name).combine_chunks()
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"missing value at row {row}", path=path, field=col_name)
        if key in ("user_id", "item_id"):
            strings = pc.cast(col, pa.string())
            empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(strings)), 0)
            empty = empty.to_numpy(zero_copy_only=False)
            if empty.any():
                raise DataError(f"empty id at row {int(np.flatnonzero(empty)[0])}", path=path, field=col_name)
            check_ids(strings, path=path, field=col_name)  # literal NaN / None / null
            cols[key] = np.asarray(strings.to_pylist(), dtype=object)
        else:
            try:
                cols[key] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            except pa.ArrowInvalid:
                raise DataError(f"expected numbers, found type {col.type}", path=path, field=col_name) from None
    return dataset_from_columns(name or path.stem, cols, source=str(path))


# --------------------------------------------------------------------------------------------
# RecBole atomic files
# --------------------------------------------------------------------------------------------
_ATOMIC_TYPES = {"token": "str", "token_seq": "text", "float": "float", "float_seq": "text"}


def _atomic_header(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DataError("file not found", path=path)
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline().rstrip("\r\n")
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    fields = []
    for raw in first.split("\t"):
        name, sep, typ = raw.rpartition(":")
        if not sep or typ not in _ATOMIC_TYPES:
            raise DataError(
                f"header field {raw!r} is not 'name:type' with type in {sorted(_ATOMIC_TYPES)}",
                path=path, line=1, field=raw,
            )
        fields.append((name, typ))
    return fields


def _read_atomic(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    header = _atomic_header(path)
    types = dict(header)
    # id columns must be non-empty; other tokens (a release year, a zip code) may be missing
    kinds = {f"{n}:{t}": ("str" if n.endswith("_id") and t == "token" else
                          "text" if t == "token" else _ATOMIC_TYPES[t]) for n, t in header}
    raw = read_delimited(path, kinds, delimiter="\t")
    return {n: raw[f"{n}:{t}"] for n, t in header}, types


def _atomic_table(path: Path, key: str, vocab: Vocabulary) -> Table:
    cols, types = _read_atomic(path)
    if key not in cols:
        raise DataError(f"no {key!r} column", path=path, line=1)
    rows = vocab.index(cols[key], source=str(path))
    columns: dict[str, tuple[str, np.ndarray]] = {}
    for name, typ in types.items():
        if name == key:
            continue
        values = cols[name]
        if typ == "float":
            columns[name] = ("numeric", values)
        elif typ == "token":
            columns[name] = ("categorical", values)
        elif typ == "token_seq":
            if any(t in name.lower() for t in TEXT_LIKE):
                columns[name] = ("text", values)
            else:
                columns[name] = ("tags", [tuple(v.split()) for v in values])
        else:  # float_seq -> vector
            vecs = []
            for row, v in enumerate(values):
                try:
                    vecs.append(np.array(v.split(), dtype=np.float32))
                except ValueError:
                    raise DataError(f"expected space-separated numbers, found {v[:60]!r}", path=path,
                                    line=line_of_row(path, row), field=name) from None
            dims = {len(v) for v in vecs}
            if len(dims) != 1:
                raise DataError(f"float_seq rows have different lengths {sorted(dims)[:5]}", path=path, field=name)
            columns[name] = ("vector", np.stack(vecs))
    return Table.from_rows(len(vocab), rows, columns, source=str(path))


def read_recbole_atomic(directory: str | Path, name: str | None = None) -> Dataset:
    """``NAME.inter`` (required), ``NAME.item`` and ``NAME.user`` (optional) from ``directory``.

    The interaction file needs ``user_id`` and ``item_id`` columns; ``rating`` and ``timestamp`` are
    used when present. Items and users that appear only in ``.item`` / ``.user`` are added to the
    vocabularies after those in ``.inter``.
    """
    directory = Path(directory)
    name = name or directory.name
    inter_path = directory / f"{name}.inter"
    cols, types = _read_atomic(inter_path)
    for required in ("user_id", "item_id"):
        if required not in cols:
            raise DataError(f"missing column {required!r}; the header has {list(types)}", path=inter_path, line=1)
    for opt in ("rating", "timestamp"):
        if opt in cols and types[opt] != "float":
            raise DataError(f"{opt} must be of type float, found {types[opt]}", path=inter_path, field=opt)
    event_cols = {k: cols[k] for k in ("user_id", "item_id", "rating", "timestamp") if k in cols}
    item_path, user_path = directory / f"{name}.item", directory / f"{name}.user"
    extra_items = _read_atomic(item_path)[0]["item_id"] if item_path.exists() else np.array([], dtype=object)
    extra_users = _read_atomic(user_path)[0]["user_id"] if user_path.exists() else np.array([], dtype=object)
    users = Vocabulary.from_values(event_cols["user_id"], extra_users, name="user")
    items = Vocabulary.from_values(event_cols["item_id"], extra_items, name="item")
    ds = dataset_from_columns(name, event_cols, users=users, items=items, source=str(inter_path))
    if item_path.exists():
        ds.item_table = _atomic_table(item_path, "item_id", items)
    if user_path.exists():
        ds.user_table = _atomic_table(user_path, "user_id", users)
    return ds


# --------------------------------------------------------------------------------------------
# LightGCN adjacency files and SELFRec triples, given as train / valid / test
# --------------------------------------------------------------------------------------------
def _adjacency_columns(path: Path) -> dict[str, np.ndarray]:
    lines = read_token_lines(path, min_tokens=1)
    counts = np.fromiter((len(t) - 1 for t in lines), dtype=np.int64, count=len(lines))
    users = np.repeat(np.array([t[0] for t in lines], dtype=object), counts)
    items = np.array([i for t in lines for i in t[1:]], dtype=object)
    return {"user_id": users, "item_id": items, "_line_users": np.array([t[0] for t in lines], dtype=object)}


def read_adjacency_split(files: dict[str, str | Path], name: str = "adjacency") -> Dataset:
    """LightGCN files, one user a line: ``user item item ...``. ``files`` maps train/valid/test to paths.

    A line with a user and no items registers the user with no events in that part (documented
    policy: the user stays in the vocabulary and is evaluated only if it has test events).
    """
    parts, line_users = {}, []
    for part, path in files.items():
        cols = _adjacency_columns(Path(path))
        line_users.append(cols.pop("_line_users"))
        parts[part] = cols
    users = Vocabulary.from_values(*line_users, name="user")
    return dataset_from_parts(name, parts, users=users, sources={p: str(f) for p, f in files.items()})


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_triples_split(files: dict[str, str | Path], name: str = "triples") -> Dataset:
    """SELFRec files: ``user item [weight]`` per line (space or tab separated)."""
    parts = {}
    for part, path in files.items():
        path = Path(path)
        numbered = numbered_token_lines(path, min_tokens=2)
        lines = [t for _, t in numbered]
        widths = {len(t) for t in lines}
        if len(widths) > 1 or max(widths, default=2) > 3:
            lineno, t = next((n, t) for n, t in numbered if len(t) != len(lines[0]) or len(t) > 3)
            raise DataError(f"found {len(t)} fields, expected all rows to have 2 or all 3 "
                            f"(the first row has {len(lines[0])})", path=path, line=lineno)
        width = len(lines[0]) if lines else 2  # an empty file is an empty part
        arr = np.array(lines, dtype=object).reshape(len(lines), width)
        cols = {"user_id": arr[:, 0], "item_id": arr[:, 1]}
        if arr.shape[1] >= 3:
            try:
                cols["weight"] = arr[:, 2].astype(np.float64)
            except ValueError:
                lineno, value = next((n, t[2]) for n, t in numbered if not _is_number(t[2]))
                raise DataError(f"the third field must be a number (weight), found {value!r}", path=path,
                                line=lineno, field="weight") from None
        parts[part] = cols
    return dataset_from_parts(name, parts, sources={p: str(f) for p, f in files.items()})


# --------------------------------------------------------------------------------------------
# MMRec folders
# --------------------------------------------------------------------------------------------
def read_mmrec(directory: str | Path, name: str | None = None, inter_file: str | None = None) -> Dataset:
    """An MMRec dataset folder: ``NAME.inter`` (``userID itemID [rating] [timestamp] x_label``,
    tab-separated; ``x_label`` 0 = train, 1 = valid, 2 = test) and ``*_feat.npy`` item vectors
    whose row ``r`` is ``itemID == r``. Ids are taken as the integer positions MMRec uses.
    """
    directory = Path(directory)
    name = name or directory.name
    path = directory / (inter_file or f"{name}.inter")
    cols = read_delimited(
        path, {"userID": "int", "itemID": "int", "rating": "float", "timestamp": "float", "x_label": "int"},
        delimiter="\t", optional=("rating", "timestamp"),
    )
    labels = cols["x_label"]
    bad = np.flatnonzero((labels < 0) | (labels > 2))
    if len(bad):
        raise DataError(f"x_label must be 0, 1 or 2, found {labels[bad[0]]}", path=path,
                        line=line_of_row(path, int(bad[0])), field="x_label")
    for col in ("userID", "itemID"):
        neg = np.flatnonzero(cols[col] < 0)
        if len(neg):
            raise DataError(f"ids must be >= 0, found {cols[col][neg[0]]}", path=path,
                            line=line_of_row(path, int(neg[0])), field=col)
    feats = {p.name[: -len("_feat.npy")]: p for p in sorted(directory.glob("*_feat.npy"))}
    arrays = {}
    for k, p in feats.items():
        try:
            arrays[k] = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"not a readable .npy array of numbers ({exc})", path=p) from None
        if arrays[k].dtype.kind not in "biuf":
            raise DataError(f"expected a numeric array, found dtype {arrays[k].dtype}", path=p)
    n_items = max([int(cols["itemID"].max()) + 1] + [a.shape[0] for a in arrays.values()])
    n_users = int(cols["userID"].max()) + 1
    users, items = Vocabulary.from_range(n_users, "user"), Vocabulary.from_range(n_items, "item")
    parts = {}
    for code, part in enumerate(PARTS):
        sel = labels == code
        parts[part] = {"user_id": cols["userID"][sel].astype(str), "item_id": cols["itemID"][sel].astype(str)}
        for opt in ("rating", "timestamp"):
            if opt in cols:
                parts[part][opt] = cols[opt][sel]
    ds = dataset_from_parts(name, parts, users=users, items=items, sources={p: str(path) for p in PARTS})
    if arrays:
        table = Table(n_items)
        for key, arr in arrays.items():
            if arr.ndim != 2:
                raise DataError(f"expected a 2-D array (items, dim), found shape {arr.shape}", path=feats[key])
            if arr.shape[0] != n_items:
                raise DataError(f"has {arr.shape[0]} rows but there are {n_items} items", path=feats[key])
            try:
                table.add(f"{key}_feat", arr.astype(np.float32), "vector")
            except DataError as exc:
                raise DataError(str(exc), path=feats[key]) from None
        ds.item_table = table
    return ds


# --------------------------------------------------------------------------------------------
# sequences
# --------------------------------------------------------------------------------------------
def _sequence_dataset(name: str, user_ids: Sequence[str], seqs: Sequence[Sequence[str]]) -> Dataset:
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    cols = {
        "user_id": np.repeat(np.asarray(user_ids, dtype=object), lengths),
        "item_id": np.array([i for s in seqs for i in s], dtype=object),
        # position within the user's sequence orders the history (no real timestamps)
        "timestamp": np.concatenate([np.arange(n, dtype=np.float64) for n in lengths]) if len(seqs) else
        np.zeros(0),
    }
    users = Vocabulary(np.asarray(user_ids, dtype=object), name="user")
    ds = dataset_from_columns(name, cols, users=users)
    ds.given_split = leave_one_out(ds.interactions, ds.users, ds.items)
    return ds


def read_sequence_file(path: str | Path, name: str | None = None, *, has_user: bool = True) -> Dataset:
    """One user (or session) a line, items oldest first: ``user item item ...``.

    With ``has_user=False`` every line is a session whose id is its 1-based line number among
    non-blank lines. The given split is leave-one-out by position. A repeated user id is an error.
    """
    path = Path(path)
    numbered = numbered_token_lines(path, min_tokens=2 if has_user else 1)
    lines = [t for _, t in numbered]
    if has_user:
        user_ids, seqs = [t[0] for t in lines], [t[1:] for t in lines]
        if len(set(user_ids)) != len(user_ids):
            first_line: dict[str, int] = {}
            for lineno, t in numbered:
                if t[0] in first_line:
                    raise DataError(
                        f"user {t[0]!r} has more than one line (first at line {first_line[t[0]]}); "
                        "expected one line per user", path=path, line=lineno,
                    )
                first_line[t[0]] = lineno
    else:
        user_ids, seqs = [str(i + 1) for i in range(len(lines))], lines
    return _sequence_dataset(name or path.stem, user_ids, seqs)


def read_json_sequences(path: str | Path, name: str | None = None) -> Dataset:
    """``{"user": [item, ...]}`` (LC-Rec / LETTER ``.inter.json``), items oldest first."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)

    def no_repeated_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in pairs:
            if key in out:
                raise DataError(f"user {key!r} appears more than once; expected one sequence per user",
                                path=path)
            out[key] = value
        return out

    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_repeated_keys)
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg})", path=path, line=exc.lineno) from None
    if not isinstance(data, dict):
        raise DataError("expected a JSON object mapping user ids to lists of item ids", path=path)
    for user, seq in data.items():
        if not user.strip():
            raise DataError("an empty user id", path=path)
        if not isinstance(seq, list) or not seq:
            raise DataError(f"user {user!r}: expected a non-empty list of item ids", path=path, field=user)
        for item in seq:
            if isinstance(item, bool) or not isinstance(item, (str, int)) or not str(item).strip():
                raise DataError(
                    f"user {user!r}: item ids must be non-empty strings or integers, found {item!r}",
                    path=path, field=user,
                )
    return _sequence_dataset(
        name or path.name.split(".")[0], list(data), [[str(i) for i in s] for s in data.values()]
    )


def read_unisrec_split(files: dict[str, str | Path], name: str = "unisrec") -> Dataset:
    """UniSRec / Recformer downstream files, one sample a line: ``user  history  next_item``.

    Each user's full sequence is the longest ``history + next_item`` among its lines; every line must
    be a prefix of it (else an error naming the line). Events that are a test (valid) target form the
    test (validation) part; all other events are training events.
    """
    samples: dict[str, list[tuple[str, int, list[str], str]]] = {}
    full: dict[str, list[str]] = {}
    for part, path in files.items():
        path = Path(path)
        header = _atomic_header(path)
        names = [n for n, _ in header]
        for need in ("user_id", "item_id_list", "item_id"):
            if need not in names:
                raise DataError(f"missing column {need!r}; the header has {names}", path=path, line=1)
        cols = read_delimited(path, {f"{n}:{t}": ("text" if t == "token_seq" else "str") for n, t in header},
                              delimiter="\t")
        u = cols["user_id:token"]
        h = cols["item_id_list:token_seq"]
        t = cols["item_id:token"]
        for row, (user, hist, target) in enumerate(zip(u, h, t)):
            seq = hist.split() + [target]
            samples.setdefault(part, []).append((user, row, seq, str(path)))
            if len(seq) > len(full.get(user, ())):
                full[user] = seq
    position_part: dict[tuple[str, int], str] = {}
    for part, rows in samples.items():
        for user, row, seq, path in rows:
            if full[user][: len(seq)] != seq:
                raise DataError(f"history of user {user!r} is not a prefix of its longest sequence",
                                path=path, line=line_of_row(path, row))
            if part != "train":
                position_part[(user, len(seq) - 1)] = part
    user_ids = list(full)
    parts: dict[str, dict[str, list]] = {p: {"user_id": [], "item_id": [], "timestamp": []} for p in PARTS}
    for user in user_ids:
        for pos, item in enumerate(full[user]):
            part = position_part.get((user, pos), "train")
            parts[part]["user_id"].append(user)
            parts[part]["item_id"].append(item)
            parts[part]["timestamp"].append(float(pos))
    cols = {p: {"user_id": np.array(c["user_id"], dtype=object), "item_id": np.array(c["item_id"], dtype=object),
                "timestamp": np.array(c["timestamp"], dtype=np.float64)} for p, c in parts.items()}
    users = Vocabulary(np.array(user_ids, dtype=object), name="user")
    return dataset_from_parts(name, cols, users=users)
