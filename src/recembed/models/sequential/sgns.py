"""SGNS (item2vec / prod2vec) with BOTH embedding tables kept: similar items and complementary items.

References: Mikolov et al., "Distributed Representations of Words and Phrases and their Compositionality",
NeurIPS 2013 (skip-gram with negative sampling, unigram^0.75 noise); Grbovic et al., "E-commerce in Your Inbox:
Product Recommendations at Scale", KDD 2015 (prod2vec: skip-gram over a user's purchase sequence); Barkan &
Koenigstein, "Item2Vec", 2016; Nalisnick, Mitra, Craswell & Caruana, "Improving Document Ranking with Dual Word
Embeddings", WWW 2016 / Mitra et al., "A Dual Embedding Space Model for Document Ranking", 2016 (DESM: the input
(IN) and output (OUT) tables answer different questions: IN-IN is topical similarity / substitutes, IN-OUT is
typical co-occurrence / complements); Wan et al., "Representing and Recommending Shopping Baskets with
Complementary and Substitute Items" (Triple2vec), CIKM 2018, for the same reading on products.

Training: every training sequence gives (centre, context) pairs for the ``window`` items after each item
(``direction="both"``: and before, as word2vec); each pair is scored ``in[centre] . out[context]`` against
``num_negatives`` noise items drawn from the training unigram distribution raised to ``negative_power``:
``-log s(in_c . out_o) - sum_n log s(-in_c . out_n)``.

Scores exposed (``item_vectors(kind="input"|"output")``):

* ``similar(item, k)`` / ``similar_items``: cosine of IN vectors (substitutes);
* ``complements(item, k)``: ``in[item] . out[candidate]`` (``complement_score="dot"``, the trained score) or the
  DESM cosine of the two (``"cosine"``);
* as a next-item recommender: ``score(u, j) = mean(in[last `history` items of u]) . out[j]`` (the test history
  goes on through validation, as the other sequential models).

Deviations: Adam on mini-batches instead of word2vec's linearly decayed SGD on single pairs; a fixed window (no
random window shrinking) and no frequent-item subsampling; noise items are not rejected when they equal the
context item; early stopping on validation next-item NDCG (the trainer's), not a fixed epoch count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ...config import check
from ...errors import ConfigError
from ...options import FitOptions
from ...training.device import module_device, to_numpy
from ...training.sequences import Sequences
from ...training.trainer import TrainConfig
from ...tuning.space import Choice, Float, Int
from ..base import check_k
from .core import SequentialRecommender

VECTOR_KINDS = ("input", "output")


@dataclass(frozen=True)
class SGNSConfig(TrainConfig):
    embedding_dim: int = 64
    """Width of the input and output item vectors."""
    window: int = 3
    """Context: the ``window`` items after each item in a user's sequence (and before, ``direction="both"``)."""
    direction: Literal["forward", "both"] = "forward"
    """``forward``: an item predicts the items bought after it (in[A] . out[B] reads "B follows A"); ``both``: the
    symmetric window of word2vec / prod2vec."""
    num_negatives: int = 5
    """Noise items per (centre, context) pair."""
    negative_power: float = 0.75
    """Noise distribution: training item counts raised to this power (word2vec's 0.75; 0: uniform)."""
    history: int = 3
    """A user's next-item scores average the input vectors of their last ``history`` items."""
    complement_score: Literal["dot", "cosine"] = "dot"
    """``complements``: the trained score in . out, or its cosine (DESM)."""
    batch_size: int = 4096
    """(centre, context) pairs per step."""
    learning_rate: float = 5e-3
    """Adam step size."""
    epochs: int = 40
    """Maximum number of epochs."""
    patience: int = 3
    """Validation checks without improvement before stopping."""
    eval_batch_size: int = 1024
    """Users scored at once."""

    SEARCH_SPACE: ClassVar[dict[str, Any]] = {
        "window": Int(1, 8, doc="context items after (before) each item"),
        "num_negatives": Int(1, 20, log=True, doc="noise items per pair"),
        "learning_rate": Float(1e-3, 3e-2, log=True, doc="Adam step size"),
        "direction": Choice(("forward", "both"), doc="one-sided or symmetric window"),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.embedding_dim >= 1, "embedding_dim", f"must be >= 1, got {self.embedding_dim}")
        check(self.window >= 1, "window", f"must be >= 1, got {self.window}")
        check(self.direction in ("forward", "both"), "direction", f"must be forward or both, got {self.direction!r}")
        check(self.num_negatives >= 1, "num_negatives", f"must be >= 1, got {self.num_negatives}")
        check(self.negative_power >= 0, "negative_power", f"must be >= 0, got {self.negative_power}")
        check(self.history >= 1, "history", f"must be >= 1, got {self.history}")
        check(self.complement_score in ("dot", "cosine"), "complement_score",
              f"must be dot or cosine, got {self.complement_score!r}")
        check(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")


def context_pairs(seqs: Sequences, window: int, both: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(centre (P,), context (P,))`` item indices: every item with the ``window`` items after it in the same
    sequence (and, ``both``, before it); self-pairs (a repeated item) are dropped."""
    items, ptr = seqs.items, seqs.indptr
    user_of = np.repeat(np.arange(seqs.num_users), seqs.lengths())
    pos = np.arange(len(items))
    centre, context = [], []
    for d in range(1, window + 1):
        ok = pos[: len(items) - d] if len(items) > d else pos[:0]
        ok = ok[ok + d < ptr[user_of[ok] + 1]]  # the item d steps later belongs to the same user
        centre.append(items[ok])
        context.append(items[ok + d])
    a, b = np.concatenate(centre), np.concatenate(context)
    if both:
        a, b = np.concatenate([a, b]), np.concatenate([b, a])
    keep = a != b
    return a[keep].astype(np.int64), b[keep].astype(np.int64)


@dataclass
class SGNSBatch:
    centre: torch.Tensor  # (B,) item indices
    context: torch.Tensor  # (B,)
    noise: torch.Tensor  # (B, n)


class SGNSTask:
    """Negative-sampling loss over shuffled (centre, context) pairs; noise from counts ** ``power``."""

    def __init__(self, centre: np.ndarray, context: np.ndarray, counts: np.ndarray, batch_size: int,
                 num_negatives: int, power: float) -> None:
        if len(centre) == 0:
            raise ConfigError("window: the training sequences give no (item, next item) pair; SGNS needs "
                              "histories of two or more distinct items")
        self.centre, self.context = centre, context
        self.batch_size, self.num_negatives = batch_size, num_negatives
        w = np.where(counts > 0, counts.astype(np.float64), 0.0) ** power * (counts > 0)
        self.cdf = np.cumsum(w / w.sum())

    def num_batches(self) -> int:
        return -(-len(self.centre) // self.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[SGNSBatch]:
        order = rng.permutation(len(self.centre))
        for start in range(0, len(order), self.batch_size):
            sel = order[start : start + self.batch_size]
            noise = np.searchsorted(self.cdf, rng.random((len(sel), self.num_negatives)), side="right")
            noise = np.minimum(noise, len(self.cdf) - 1)
            yield SGNSBatch(torch.from_numpy(self.centre[sel]), torch.from_numpy(self.context[sel]),
                            torch.from_numpy(noise.astype(np.int64)))

    def loss(self, module: nn.Module, batch: SGNSBatch, epoch: int) -> torch.Tensor:
        c = module.inp(batch.centre + 1)  # (B, D)
        pos = (c * module.out(batch.context + 1)).sum(-1)  # (B,)
        neg = torch.einsum("bd,bnd->bn", c, module.out(batch.noise + 1))  # (B, n)
        return -(F.logsigmoid(pos).mean() + F.logsigmoid(-neg).sum(1).mean())


class SGNSModule(nn.Module):
    """Input and output item tables (token = item index + 1, row 0 = padding, kept at zero)."""

    def __init__(self, num_items: int, dim: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.inp = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.out = nn.Embedding(num_items + 1, dim, padding_idx=0)
        nn.init.uniform_(self.inp.weight, -0.5 / dim, 0.5 / dim)  # word2vec: IN small uniform, OUT zero
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.inp.weight[0].zero_()

    def embed_history(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` tokens -> ``(B, D)`` mean input vector of the non-padding tokens."""
        n = (tokens != 0).sum(1, keepdim=True).clamp(min=1)
        return self.inp(tokens).sum(1) / n

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.out.weight[1 : self.num_items + 1].T  # (B, I)

    def item_table(self) -> torch.Tensor:
        return self.inp.weight[1 : self.num_items + 1]


class SGNS(SequentialRecommender):
    name = "sgns"
    Config = SGNSConfig
    inference_keys = frozenset({"eval_batch_size", "history", "complement_score"})

    def _make_module(self, weights: dict[str, np.ndarray] | None) -> nn.Module:
        return SGNSModule(self.num_items_, self.config.embedding_dim)

    def _build(self, train: sp.csr_matrix, options: FitOptions):  # noqa: ANN202
        c = self.config
        centre, context = context_pairs(self.sequences_, c.window, c.direction == "both")
        counts = np.bincount(self.sequences_.items, minlength=self.num_items_)
        task = SGNSTask(centre, context, counts, self._batch(len(centre)), c.num_negatives, c.negative_power)
        return self._make_module(None), task

    # -- next-item scoring (SequentialRecommender's scorer calls these) -----------------------------
    def _context_tokens(self, seqs: Sequences, users: np.ndarray) -> np.ndarray:
        return seqs.last(users, self.config.history)

    def _score_block(self, module: nn.Module, tokens: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(tokens).to(module_device(module))
            return to_numpy(module.logits(module.embed_history(x)))

    # -- the two tables ---------------------------------------------------------------------------
    def item_vectors(self, kind: str = "input") -> np.ndarray:
        """``(I, D)`` float32: the ``input`` (IN) or ``output`` (OUT) item table."""
        self._check_fitted()
        if kind not in VECTOR_KINDS:
            raise ConfigError(f"kind: expected one of {VECTOR_KINDS}, got {kind!r}")
        table = self.module_.inp if kind == "input" else self.module_.out
        return to_numpy(table.weight.detach()[1 : self.num_items_ + 1]).astype(np.float32, copy=True)

    def item_embeddings(self) -> np.ndarray:
        return self.item_vectors("input")

    def complement_rows(self, item_idx: np.ndarray) -> np.ndarray:
        """``(b, I)`` complementary scores of the given items: in[item] . out[every item] (or their cosine)."""
        inp, out = self.item_vectors("input"), self.item_vectors("output")
        if self.config.complement_score == "cosine":
            inp = inp / np.maximum(np.linalg.norm(inp, axis=1, keepdims=True), 1e-12)
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return inp[np.asarray(item_idx, dtype=np.int64)] @ out.T

    def complements(self, item_idx: int | np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most often bought with (after) ``item_idx``, by :meth:`complement_rows`."""
        k = check_k(k)
        self._check_fitted()
        return self._topk_rows(self.complement_rows, item_idx, k)

    def similar(self, item_idx: int | np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar items (substitutes): cosine of input vectors (= ``similar_items``)."""
        return self.similar_items(item_idx, k)
