"""The sequence pipeline: per-user chronological histories, fixed-length windows, padding, and the two
training tasks of the sequential models (next item at every position, masked items).

Conventions. Item index ``i`` is token ``i + 1``; token 0 is padding (and, for BERT4Rec, token
``num_items + 1`` is the mask). A history is cut into *windows* of at most ``max_len + 1`` items,
counted from the most recent item backwards and sharing one item with the next older window, so every
transition ``s[t-1] -> s[t]`` of the training sequence is a target exactly once per epoch. Windows are
right-aligned (left-padded): the most recent item sits at the last position, as at inference, so position
embeddings mean "steps before now". A window's inputs are its items but the last, its targets the items but the first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.interactions import Interactions
from ..errors import DataError


@dataclass(frozen=True)
class Sequences:
    """Per-user item sequences, oldest first: ``items[indptr[u]:indptr[u + 1]]`` (item indices)."""

    indptr: np.ndarray  # (U + 1,) int64
    items: np.ndarray  # (N,) int64

    @classmethod
    def from_interactions(cls, inter: Interactions) -> Sequences:
        indptr, items = inter.histories()
        return cls(indptr.astype(np.int64), items.astype(np.int64))

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[int]]) -> Sequences:
        lengths = np.fromiter((len(s) for s in lists), dtype=np.int64, count=len(lists))
        indptr = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = np.fromiter((int(i) for s in lists for i in s), dtype=np.int64, count=int(indptr[-1]))
        return cls(indptr, items)

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def extend(self, extra: Interactions) -> Sequences:
        """These sequences with ``extra``'s events appended after each user's last item (in ``extra``'s
        time order): the history a model conditions on when testing after validation."""
        if extra.num_users != self.num_users:
            raise DataError(f"extra events cover {extra.num_users} users, the sequences {self.num_users}")
        e_ptr, e_items = extra.histories()
        users = np.concatenate([np.repeat(np.arange(self.num_users), self.lengths()),
                                np.repeat(np.arange(self.num_users), np.diff(e_ptr))])
        part = np.concatenate([np.zeros(len(self.items), np.int8), np.ones(len(e_items), np.int8)])
        pos = np.concatenate([np.arange(len(self.items)), np.arange(len(e_items))])
        order = np.lexsort((pos, part, users))
        items = np.concatenate([self.items, e_items.astype(np.int64)])[order]
        indptr = self.indptr + e_ptr.astype(np.int64)
        return Sequences(indptr, items)

    def last(self, users: np.ndarray, length: int) -> np.ndarray:
        """``(B, length)`` tokens: each user's last ``length`` items, left-padded with 0."""
        users = np.asarray(users, dtype=np.int64)
        ends = self.indptr[users + 1]
        starts = np.maximum(self.indptr[users], ends - length)
        n = ends - starts
        out = np.zeros((len(users), length), dtype=np.int64)
        rows = np.repeat(np.arange(len(users)), n)
        within = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)  # 0 .. n_b - 1 in each row
        out[rows, length - np.repeat(n, n) + within] = self.items[np.repeat(starts, n) + within] + 1
        return out


def windows(seqs: Sequences, size: int, stride: int | None = None, min_len: int = 2) -> np.ndarray:
    """``(W, size)`` tokens: every sequence cut into windows of ``size`` items, the first ending at its most
    recent item and each next one ``stride`` items earlier (default ``size``: no overlap; ``size - 1``: one
    shared item, so every transition ``s[t-1] -> s[t]`` lies inside exactly one window). Windows are
    left-padded with 0; windows with fewer than ``min_len`` items are dropped."""
    stride = size if stride is None else stride
    overlap = size - stride
    if not 0 <= overlap <= stride:
        raise ValueError(f"window stride {stride} must be in [size / 2, size] for size {size}")
    lengths = seqs.lengths()
    n_win = np.where(lengths >= min_len, np.maximum(1, -(-(lengths - overlap) // stride)), 0)
    first_win = np.zeros(seqs.num_users + 1, dtype=np.int64)
    np.cumsum(n_win, out=first_win[1:])
    users = np.repeat(np.arange(seqs.num_users), lengths)
    r = seqs.indptr[users + 1] - 1 - np.arange(len(seqs.items))  # steps before the user's last item
    tokens = seqs.items + 1
    out = np.zeros((int(first_win[-1]), size), dtype=np.int64)
    j, col = r // stride, size - 1 - r % stride
    own = j < n_win[users]
    out[first_win[users[own]] + j[own], col[own]] = tokens[own]
    if overlap:  # an item among the newest ``overlap`` of window j + 1 is also among the oldest of window j
        also = (j >= 1) & (r % stride < overlap) & (j - 1 < n_win[users])
        out[first_win[users[also]] + j[also] - 1, col[also] - stride] = tokens[also]
    return out[(out > 0).sum(1) >= min_len]


def prefixes(seqs: Sequences, max_len: int) -> np.ndarray:
    """``(P, max_len + 1)`` tokens: one row per (history prefix, next item) pair of every sequence — the
    prefix's last ``max_len`` items right-aligned (left-padded with 0) and the next item in the last column.
    Every item but each sequence's first is the target of exactly one row."""
    lengths = seqs.lengths()
    starts = np.repeat(seqs.indptr[:-1], lengths)
    targets = np.flatnonzero(np.arange(len(seqs.items)) > starts)  # positions with at least one item before
    tokens = seqs.items + 1
    out = np.zeros((len(targets), max_len + 1), dtype=np.int64)
    for back in range(max_len + 1):  # column max_len - back holds the item ``back`` steps before the target
        src = targets - back
        ok = src >= starts[targets]
        out[ok, max_len - back] = tokens[src[ok]]
    return out


def length_batches(tokens: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of the batches of an epoch: rows sorted by length (ties in random order), cut into
    batches, the batches shuffled. Batches of similar lengths need little padding, which is most of the
    encoder's cost on short-history data (Beauty: 9 items a user on average, ``max_len`` 50)."""
    lengths = (tokens != 0).sum(1)
    order = np.lexsort((rng.random(len(tokens)), lengths))
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def trim_left(tokens: np.ndarray) -> np.ndarray:
    """Drop the leading columns that are padding in every row (windows are right-aligned)."""
    nonzero = (tokens != 0).any(0)
    return tokens[:, int(np.argmax(nonzero)) if nonzero.any() else tokens.shape[1] - 1 :]


@dataclass
class SeqBatch:
    inputs: torch.Tensor  # (B, T) tokens, left-padded
    targets: torch.Tensor  # (B, T) item tokens to predict at each position (0: none)


class NextItemTask:
    """Causal next-item prediction at every position of every window (SASRec, GRU4Rec, UniSRec).

    The module implements ``encode(inputs (B, T)) -> (B, T, D)`` and ``logits(hidden (N, D),
    candidates (C,) item indices or None) -> (N, C or I)``. Loss: cross-entropy over all items (full
    softmax), or, with ``num_negatives > 0``, over the positive and ``num_negatives`` uniform negatives
    shared by the batch (sampled softmax, with logQ correction for the uniform proposal, a constant
    that cancels — so none is applied), for catalogs too large for a full softmax.
    """

    def __init__(self, seqs: Sequences, max_len: int, batch_size: int, num_items: int,
                 num_negatives: int = 0) -> None:
        self.windows = self._rows(seqs, max_len)
        if len(self.windows) == 0:
            raise DataError("no training sequence has two or more items; a sequential model needs histories")
        self.batch_size, self.num_items, self.num_negatives = batch_size, num_items, num_negatives

    @staticmethod
    def _rows(seqs: Sequences, max_len: int) -> np.ndarray:
        """The training rows: windows of ``max_len + 1`` items sharing one item with the next older window."""
        return windows(seqs, max_len + 1, stride=max_len)

    @staticmethod
    def _targets(w: np.ndarray) -> np.ndarray:
        """Targets of trimmed rows ``w``: the item after every input position."""
        return w[:, 1:]

    def num_batches(self) -> int:
        return -(-len(self.windows) // self.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[SeqBatch]:
        for rows in length_batches(self.windows, self.batch_size, rng):
            w = trim_left(self.windows[rows])
            yield SeqBatch(torch.from_numpy(w[:, :-1]), torch.from_numpy(self._targets(w)))

    def loss(self, module: nn.Module, batch: SeqBatch, epoch: int) -> torch.Tensor:
        hidden = module.encode(batch.inputs)
        sel = batch.targets > 0
        h, target = hidden[sel], batch.targets[sel] - 1
        return next_item_loss(module, h, target, self.num_items, self.num_negatives)


class PrefixTask(NextItemTask):
    """One example per (history prefix, next item) pair, the target in the last column only: for encoders
    that read the whole history at once (bidirectional), where one pass cannot train every position."""

    _rows = staticmethod(prefixes)

    @staticmethod
    def _targets(w: np.ndarray) -> np.ndarray:
        targets = np.zeros_like(w[:, 1:])
        targets[:, -1] = w[:, -1]
        return targets


def next_item_loss(module: nn.Module, h: torch.Tensor, target: torch.Tensor, num_items: int,
                   num_negatives: int) -> torch.Tensor:
    if num_negatives <= 0:
        return F.cross_entropy(module.logits(h), target)
    neg = torch.randint(0, num_items, (num_negatives,))
    cand = torch.cat([target, neg])
    unique, inverse = torch.unique(cand, return_inverse=True)
    logits = module.logits(h, unique)  # (N, C)
    return F.cross_entropy(logits, inverse[: len(target)])


class MaskedItemTask:
    """BERT4Rec's Cloze task: mask each item of a window with probability ``mask_prob`` (at least one
    per window) and predict the masked items; a share ``last_prob`` of windows instead mask only their
    last item, the inference-time input (the paper's extra samples)."""

    def __init__(self, seqs: Sequences, max_len: int, batch_size: int, num_items: int, mask_prob: float,
                 last_prob: float = 0.1, num_negatives: int = 0) -> None:
        self.windows = windows(seqs, max_len)
        if len(self.windows) == 0:
            raise DataError("no training sequence has two or more items; a sequential model needs histories")
        self.batch_size, self.num_items = batch_size, num_items
        self.mask_prob, self.last_prob, self.num_negatives = mask_prob, last_prob, num_negatives
        self.mask_token = num_items + 1

    def num_batches(self) -> int:
        return -(-len(self.windows) // self.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[SeqBatch]:
        for rows in length_batches(self.windows, self.batch_size, rng):
            w = trim_left(self.windows[rows])
            real = w > 0
            masked = (rng.random(w.shape) < self.mask_prob) & real
            last_only = rng.random(len(w)) < self.last_prob
            masked[last_only] = False
            masked[:, -1] |= last_only | ~masked.any(1)  # the last column is always a real item
            inputs = np.where(masked, self.mask_token, w)
            targets = np.where(masked, w, 0)
            yield SeqBatch(torch.from_numpy(inputs), torch.from_numpy(targets))

    def loss(self, module: nn.Module, batch: SeqBatch, epoch: int) -> torch.Tensor:
        hidden = module.encode(batch.inputs)
        sel = batch.targets > 0
        return next_item_loss(module, hidden[sel], batch.targets[sel] - 1, self.num_items, self.num_negatives)
