"""Train / validation / test splits, their specs, content hashes, and save/load.

Spec strings (the CLI's ``--split``):

* ``random:0.8,0.1,0.1`` -- per user, a seeded random ratio split (counts as RecBole's ``RS``: valid and
  test get ``floor(ratio * n)`` each, the rest is train; a part whose share is below one event gets one
  while train keeps at least two);
* ``temporal:0.8,0.1,0.1`` -- global time split: the oldest 80% of all events train, the next 10% valid;
* ``loo`` -- per user, leave one out by time: last event test, second last valid (users with two events
  give one to test, users with one keep it in train);
* ``cold-items:0.2`` -- a seeded 20% of the items that occur are held out of training entirely; their
  events go to validation (half of those items) and test (the other half);
* ``given`` -- the split the source defines (gowalla's files, MMRec's ``x_label``, ...);
  ``given:merge-valid`` folds validation into train (e.g. the LightGCN paper protocol) and leaves
  validation empty;
* a directory path -- ``train.tsv``, ``test.tsv`` and optionally ``valid.tsv`` with header
  ``user_id<TAB>item_id`` and external ids.

Whatever the spec, a (user, item) pair is never in two parts of a split :func:`make_split` returns: events of a
pair that already occurs in an earlier part (train before valid before test) are removed from the later part
(evaluation masks seen pairs, so such an event could never be hit) and counted in ``Split.removed_overlap``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, did_you_mean
from ..io import write_json
from .interactions import Interactions
from .vocab import Vocabulary

PARTS = ("train", "valid", "test")


@dataclass(frozen=True)
class Split:
    """Three sets of interactions over the same vocabularies."""

    train: Interactions
    valid: Interactions
    test: Interactions
    users: Vocabulary
    items: Vocabulary
    spec: str = "given"
    removed_overlap: dict[str, int] = field(default_factory=dict, compare=False)
    """Events :func:`make_split` removed from valid / test because their pair was in an earlier part."""

    def __post_init__(self) -> None:
        for name in PARTS:
            part = getattr(self, name)
            if part.num_users != len(self.users) or part.num_items != len(self.items):
                raise DataError(f"{name} part is not indexed by the split's vocabularies")

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in PARTS}

    def content_hash(self) -> str:
        """SHA-256 over both vocabularies and the sorted (user, item) pairs of each part.

        Independent of event order within a part; changes with any added, dropped or moved pair.
        """
        h = hashlib.sha256()
        h.update(self.users.content_hash().encode())
        h.update(self.items.content_hash().encode())
        for name in PARTS:
            keys = np.sort(getattr(self, name).pairs_key())
            h.update(name.encode())
            h.update(keys.astype("<i8").tobytes())
        return h.hexdigest()

    def overlap(self) -> dict[str, int]:
        """Pairs that occur in two parts (such test pairs are masked as seen, so never hit)."""
        tr, va, te = (set(np.unique(getattr(self, n).pairs_key()).tolist()) for n in PARTS)
        return {"train&valid": len(tr & va), "train&test": len(tr & te), "valid&test": len(va & te)}

    def save(self, directory: str | Path) -> Path:
        """Write ``train.tsv``, ``valid.tsv``, ``test.tsv`` (external ids) and ``split.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        from ..io import atomic_write

        for name in PARTS:
            part = getattr(self, name)
            users = self.users.lookup(part.user_idx)
            items = self.items.lookup(part.item_idx)

            def write(p: Path, users: np.ndarray = users, items: np.ndarray = items) -> None:
                with open(p, "w", encoding="utf-8") as fh:
                    fh.write("user_id\titem_id\n")
                    fh.writelines(f"{u}\t{i}\n" for u, i in zip(users, items))

            atomic_write(directory / f"{name}.tsv", write)
        write_json(directory / "split.json", {"spec": self.spec, "hash": self.content_hash(), **self.sizes()})
        return directory

    def merge_valid(self) -> Split:
        """Train = train + valid, validation empty (e.g. the LightGCN paper protocol)."""
        return Split(
            Interactions.concat([self.train, self.valid]),
            Interactions.empty(len(self.users), len(self.items)),
            self.test, self.users, self.items, spec=f"{self.spec}:merge-valid",
        )


# --------------------------------------------------------------------------------------------
# splitters
# --------------------------------------------------------------------------------------------
def _parts(inter: Interactions, assign: np.ndarray, users: Vocabulary, items: Vocabulary, spec: str) -> Split:
    return Split(
        inter.subset(assign == 0), inter.subset(assign == 1), inter.subset(assign == 2), users, items, spec
    )


def _check_ratios(ratios: tuple[float, ...], kind: str) -> tuple[float, float, float]:
    spec = f"{kind}:{','.join(f'{r:g}' for r in ratios)}"
    expected = f"expected {kind}:TRAIN,VALID,TEST or {kind}:TRAIN,TEST (no validation), e.g. {kind}:0.8,0.1,0.1"
    if len(ratios) not in (2, 3):
        raise ConfigError(f"split {spec!r}: {len(ratios)} ratio(s); {expected}")
    if any(r < 0 for r in ratios):
        raise ConfigError(f"split {spec!r}: a ratio is negative; {expected}, each >= 0")
    if not np.isclose(sum(ratios), 1.0):
        raise ConfigError(f"split {spec!r}: the ratios sum to {sum(ratios):g}, not 1; {expected}")
    if len(ratios) == 2:
        ratios = (ratios[0], 0.0, ratios[1])
    if ratios[0] <= 0:
        raise ConfigError(f"split {spec!r}: the train ratio is 0 (nothing to fit on); {expected}, TRAIN > 0")
    if ratios[2] <= 0:
        raise ConfigError(f"split {spec!r}: the test ratio is 0 (nothing to evaluate on); {expected}, TEST > 0")
    return ratios  # type: ignore[return-value]


def random_split(
    inter: Interactions, users: Vocabulary, items: Vocabulary, ratios: tuple[float, ...] = (0.8, 0.1, 0.1),
    seed: int = 2020,
) -> Split:
    """Per-user random ratio split; see the module docstring for the count rule."""
    r_train, r_valid, r_test = _check_ratios(tuple(ratios), "random")
    rng = np.random.default_rng(seed)
    n_events = len(inter)
    order = np.lexsort((rng.random(n_events), inter.user_idx))  # shuffled within user
    counts = np.bincount(inter.user_idx, minlength=inter.num_users).astype(np.int64)
    n_valid = np.floor(r_valid * counts).astype(np.int64)
    n_test = np.floor(r_test * counts).astype(np.int64)
    n_train = counts - n_valid - n_test
    for n_part, r in ((n_test, r_test), (n_valid, r_valid)):  # RecBole adjusts the last part first
        frac = r * counts
        bump = (n_train > 1) & (frac > 0) & (frac < 1)
        n_part += bump
        n_train -= bump
    starts = np.zeros(inter.num_users + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    sorted_users = inter.user_idx[order]
    pos = np.arange(n_events) - starts[sorted_users]  # rank within user
    assign_sorted = np.where(
        pos < n_train[sorted_users], 0, np.where(pos < (n_train + n_valid)[sorted_users], 1, 2)
    )
    assign = np.empty(n_events, dtype=np.int8)
    assign[order] = assign_sorted
    return _parts(inter, assign, users, items, f"random:{r_train:g},{r_valid:g},{r_test:g}")


def temporal_split(
    inter: Interactions, users: Vocabulary, items: Vocabulary, ratios: tuple[float, ...] = (0.8, 0.1, 0.1)
) -> Split:
    """Global time split: events sorted by timestamp (file order on ties), cut by the ratios."""
    r_train, r_valid, r_test = _check_ratios(tuple(ratios), "temporal")
    if inter.timestamp is None:
        raise DataError(f"split 'temporal:{r_train:g},{r_valid:g},{r_test:g}' needs timestamps, and these interactions "
                        "have none: use random:... (or name the time column: --columns time=NAME)", field="timestamp")
    n = len(inter)
    order = np.argsort(inter.timestamp, kind="stable")
    cut1 = int(np.floor(r_train * n))
    cut2 = cut1 + int(np.floor(r_valid * n))
    assign = np.empty(n, dtype=np.int8)
    assign[order[:cut1]] = 0
    assign[order[cut1:cut2]] = 1
    assign[order[cut2:]] = 2
    return _parts(inter, assign, users, items, f"temporal:{r_train:g},{r_valid:g},{r_test:g}")


def leave_one_out(inter: Interactions, users: Vocabulary, items: Vocabulary) -> Split:
    """Per user by time: last event -> test, second last -> valid (see module docstring for short users)."""
    order = inter.order()
    counts = np.bincount(inter.user_idx, minlength=inter.num_users).astype(np.int64)
    starts = np.zeros(inter.num_users + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    sorted_users = inter.user_idx[order]
    from_end = starts[sorted_users + 1] - np.arange(len(inter)) - 1  # 0 = last event of the user
    n_user = counts[sorted_users]
    assign_sorted = np.zeros(len(inter), dtype=np.int8)
    assign_sorted[(from_end == 0) & (n_user >= 2)] = 2
    assign_sorted[(from_end == 1) & (n_user >= 3)] = 1
    assign = np.empty(len(inter), dtype=np.int8)
    assign[order] = assign_sorted
    return _parts(inter, assign, users, items, "loo")


def cold_items_split(
    inter: Interactions, users: Vocabulary, items: Vocabulary, fraction: float = 0.2, seed: int = 2020
) -> Split:
    """Hold a seeded ``fraction`` of the occurring items out of training entirely."""
    if not 0 < fraction < 1:
        raise ConfigError(f"split 'cold-items:{fraction:g}': the fraction must be in (0, 1), e.g. cold-items:0.2")
    rng = np.random.default_rng(seed)
    present = np.flatnonzero(inter.item_counts() > 0)
    n_cold = max(2, int(round(fraction * len(present))))
    cold = rng.permutation(present)[:n_cold]
    role = np.zeros(inter.num_items, dtype=np.int8)  # 0 warm, 1 valid-cold, 2 test-cold
    role[cold[: n_cold // 2]] = 1
    role[cold[n_cold // 2 :]] = 2
    return _parts(inter, role[inter.item_idx], users, items, f"cold-items:{fraction:g}")


def drop_items_split(base: Split, fraction: float = 0.1, seed: int = 2020) -> Split:
    """``base`` with a seeded ``fraction`` of the items that occur in its test part removed from training
    (validation and test unchanged): those items are unseen when the model is fitted, and test events with
    them measure recommending new items (for sequential data, where a cold-items split would cut holes in
    every history's middle instead)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"split 'drop-items:{fraction:g}': the fraction must be in (0, 1), e.g. drop-items:0.1")
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(base.test.item_counts() > 0)
    dropped = np.zeros(base.train.num_items, dtype=bool)
    dropped[rng.permutation(candidates)[: max(1, int(round(fraction * len(candidates))))]] = True
    train = base.train.subset(~dropped[base.train.item_idx])
    return Split(train, base.valid, base.test, base.users, base.items, f"{base.spec}+drop-items:{fraction:g}")


# --------------------------------------------------------------------------------------------
# given split files
# --------------------------------------------------------------------------------------------
def read_split_dir(directory: str | Path, users: Vocabulary, items: Vocabulary) -> Split:
    """Load ``train.tsv`` / ``valid.tsv`` / ``test.tsv`` (header ``user_id<TAB>item_id``, external ids).

    Every id must be in the dataset's vocabularies: an unknown one is an error naming file and line.
    ``valid.tsv`` may be absent (empty validation).
    """
    from .readers.delimited import read_delimited

    directory = Path(directory)
    if not directory.is_dir():
        raise DataError("split directory not found", path=directory)
    parts: dict[str, Interactions] = {}
    for name in PARTS:
        path = directory / f"{name}.tsv"
        if not path.exists():
            if name == "valid":
                parts[name] = Interactions.empty(len(users), len(items))
                continue
            raise DataError(f"missing split file {name}.tsv (expected train.tsv, test.tsv, optional valid.tsv)",
                            path=path)
        cols = read_delimited(path, {"user_id": "str", "item_id": "str"}, delimiter="\t")
        u = _index_with_lines(users, cols["user_id"], path, "user_id")
        i = _index_with_lines(items, cols["item_id"], path, "item_id")
        parts[name] = Interactions(u, i, len(users), len(items))
    return Split(parts["train"], parts["valid"], parts["test"], users, items, spec=f"dir:{directory.name}")


def _index_with_lines(vocab: Vocabulary, values: np.ndarray, path: Path, field: str) -> np.ndarray:
    from .readers.delimited import line_of_row

    idx = vocab.index(values, unknown="ignore")
    bad = np.flatnonzero(idx < 0)
    if len(bad):
        first = int(bad[0])
        raise DataError(
            f"unknown {vocab.name} id {values[first]!r} ({len(bad)} unknown in this file); "
            f"split files may only use ids of the dataset",
            path=path, line=line_of_row(path, first), field=field,
        )
    return idx


def parse_split_spec(spec: str) -> tuple[str, tuple[float, ...]]:
    """``"random:0.8,0.1,0.1"`` -> ``("random", (0.8, 0.1, 0.1))``; a path -> ``("dir", ())``."""
    spec = spec.strip()
    kind, _, arg = spec.partition(":")
    if kind in ("random", "temporal", "cold-items", "drop-items"):
        try:
            values = tuple(float(x) for x in arg.split(",")) if arg else ()
        except ValueError:
            raise ConfigError(f"split {spec!r}: arguments must be numbers, e.g. "
                              f"{'random:0.8,0.1,0.1' if kind in ('random', 'temporal') else kind + ':0.2'}") from None
        if kind in ("cold-items", "drop-items") and len(values) > 1:
            raise ConfigError(f"split {spec!r}: expected one fraction, e.g. {kind}:0.2")
        return kind, values
    if kind in ("loo", "given") and arg in ("", "merge-valid"):
        return (kind + (":merge-valid" if arg else "")), ()
    if Path(spec).is_dir():
        return "dir", ()
    kinds = ("random", "temporal", "loo", "cold-items", "drop-items", "given")
    looks_like_path = "/" in spec or "\\" in spec or (kind not in kinds and kind == spec and "." in spec)
    hint = " (no such directory)" if looks_like_path else did_you_mean(kind, kinds)
    raise ConfigError(
        f"unknown split {spec!r}{hint}: expected random:a,b,c, temporal:a,b,c, loo, cold-items:f, drop-items:f, "
        "given, given:merge-valid or a directory of split files"
    )


def check_split_spec(spec: str) -> None:
    """Refuse a malformed spec before any data is read (ConfigError naming the spec and what is expected); what
    depends on the data (a given split, timestamps) is checked by :func:`make_split`."""
    kind, args = parse_split_spec(spec)
    if kind in ("random", "temporal") and args:
        _check_ratios(args, kind)
    elif kind in ("cold-items", "drop-items") and args and not 0 < args[0] < 1:
        raise ConfigError(f"split {spec!r}: the fraction must be in (0, 1), e.g. {kind}:0.2")


def without_overlap(split: Split) -> Split:
    """``split`` with the events of valid (test) whose pair is in train (train or valid) removed."""
    seen = np.unique(split.train.pairs_key())
    keep_valid = ~np.isin(split.valid.pairs_key(), seen)
    seen = np.union1d(seen, split.valid.pairs_key())
    keep_test = ~np.isin(split.test.pairs_key(), seen)
    removed = {"valid": int((~keep_valid).sum()), "test": int((~keep_test).sum())}
    if not any(removed.values()):
        return split
    return Split(split.train, split.valid.subset(keep_valid), split.test.subset(keep_test), split.users,
                 split.items, split.spec, removed_overlap=removed)


def make_split(dataset, spec: str | None = None, seed: int = 2020) -> Split:  # noqa: ANN001
    """Apply a spec string to a :class:`~recembed.data.Dataset` (None: its given split, else random); no pair
    is in two parts of the result (see the module docstring)."""
    return without_overlap(_make_split(dataset, spec, seed))


def _make_split(dataset, spec: str | None, seed: int) -> Split:  # noqa: ANN001
    if spec is None:
        spec = "given" if dataset.given_split is not None else "random:0.8,0.1,0.1"
    kind, args = parse_split_spec(spec)
    inter, users, items = dataset.interactions, dataset.users, dataset.items
    if kind.startswith("given"):
        if dataset.given_split is None:
            raise ConfigError(f"dataset {dataset.name!r} defines no split; use random:..., temporal:..., loo, ...")
        return dataset.given_split.merge_valid() if kind.endswith("merge-valid") else dataset.given_split
    if kind == "random":
        return random_split(inter, users, items, args or (0.8, 0.1, 0.1), seed=seed)
    if kind == "temporal":
        return temporal_split(inter, users, items, args or (0.8, 0.1, 0.1))
    if kind == "loo":
        return leave_one_out(inter, users, items)
    if kind == "cold-items":
        return cold_items_split(inter, users, items, args[0] if args else 0.2, seed=seed)
    if kind == "drop-items":  # on the dataset's given split, else leave-one-out
        base = dataset.given_split if dataset.given_split is not None else leave_one_out(inter, users, items)
        return drop_items_split(base, args[0] if args else 0.1, seed=seed)
    return read_split_dir(spec, users, items)
