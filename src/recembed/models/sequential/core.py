"""Sequential (next-item) models: a user is the encoder's output at the last position of their history.

``SequentialRecommender`` keeps each user's training sequence (``sequences_``) and a torch module with

* ``encode(tokens (B, T)) -> (B, T, D)``: hidden states at every position (tokens: item index + 1, 0 = pad,
  right-aligned, see :mod:`recembed.training.sequences`);
* ``logits(hidden (N, D), candidates=None) -> (N, I)``: scores of all items (or of ``candidates``);
* ``item_table() -> (I, D)``: the output item vectors (similar items).

Known users are scored from their training sequence; :meth:`score_histories` scores any history (an
anonymous user, a session); :meth:`scorer_after` conditions on events after training (at test time the
validation item is part of the history, as in every leave-one-out protocol). The saved form is the
module's weights (safetensors) plus the sequences; loading rebuilds the module from the config.

Shared default that deviates from the papers (every sequential model, TIGER included): ``min_steps=50`` — on
data with fewer than 50 x ``batch_size`` training windows the batch shrinks so that an epoch takes 50 steps
(ml-100k: 49 windows instead of 256), so that patience counted in epochs is not spent on a few dozen steps;
larger data (amazon-seq) trains with ``batch_size`` as set. Saves that do not name ``min_steps`` load with 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ...config import check
from ...data.interactions import Interactions
from ...errors import DataError
from ...options import FitOptions
from ...training.device import module_device, to_numpy
from ...training.sequences import NextItemTask, Sequences
from ...training.trainer import TrainConfig
from ..trainable import TrainableRecommender


@dataclass(frozen=True)
class SequentialConfig(TrainConfig):
    """Shared by the sequential models."""

    batch_size: int = 256
    """Windows (sequences of up to ``max_len`` inputs) per step."""
    epochs: int = 200
    """Maximum number of epochs."""
    max_len: int = 50
    """Longest history the encoder reads (older items are cut; training windows have this many inputs)."""
    embedding_dim: int = 64
    """Width of item embeddings and hidden states."""
    dropout: float = 0.2
    """Dropout on embeddings, attention weights and feed-forward outputs."""
    num_negatives: int = 0
    """0: cross-entropy over all items (full softmax); N > 0: sampled softmax over the positive and N uniform
    negatives shared by the batch (for catalogs too large for the full softmax)."""
    eval_batch_size: int = 1024
    """Users encoded at once when scoring."""
    min_steps: int = 50
    """An epoch takes at least this many optimizer steps: on small data (ml-100k: 2,412 windows, 10 steps of
    256) the batch shrinks to ``ceil(windows / 50)``; from about 12,800 windows up (amazon-seq: 22,363)
    ``batch_size`` is used as set. Without it, patience counted in epochs gave up on a model that had taken
    only ~100 steps (benchmarks/RESULTS.md, [Polish] Defaults). 0: ``batch_size`` always."""

    #: saves that do not name a key whose default changed since were made with its former value
    FORMER_DEFAULTS: ClassVar[dict[str, Any]] = {"min_steps": 0}

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.max_len >= 1, "max_len", f"must be >= 1, got {self.max_len}")
        check(self.embedding_dim >= 1, "embedding_dim", f"must be >= 1, got {self.embedding_dim}")
        check(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.num_negatives >= 0, "num_negatives", f"must be >= 0, got {self.num_negatives}")


class SequentialRecommender(TrainableRecommender):
    """Subclasses implement ``_make_module(weights: dict | None) -> nn.Module`` (weights: the saved state, to
    read shapes from when loading) and may override ``_task(sequences) -> Task``; ``_context_tokens`` may change how a
    history becomes the encoder input (BERT4Rec appends its mask token)."""

    inference_keys = frozenset({"eval_batch_size"})

    sequences_: Sequences
    module_: nn.Module

    # -- fitting ----------------------------------------------------------------------------------
    def _fit(self, train: Interactions, options: FitOptions, **context: Any) -> None:
        self.sequences_ = Sequences.from_interactions(train)
        super()._fit(train, options, **context)

    def _build(self, train: sp.csr_matrix, options: FitOptions):  # noqa: ANN202
        module = self._make_module(None)
        return module, self._task(self.sequences_)

    def _make_module(self, weights: dict[str, np.ndarray] | None) -> nn.Module:
        raise NotImplementedError

    def _task(self, sequences: Sequences):  # noqa: ANN202
        """Default: next item at every position (SASRec, GRU4Rec, UniSRec)."""
        c = self.config
        return self._sized(NextItemTask(sequences, c.max_len, c.batch_size, self.num_items_, c.num_negatives))

    def _sized(self, task: Any) -> Any:
        """``task`` (a sequence task: ``windows``, ``batch_size``) with its batch set for its number of training rows (``TrainConfig.min_steps``)."""
        task.batch_size = self._batch(len(task.windows))
        return task

    def _scorer(self, module: nn.Module):  # noqa: ANN202
        return self._sequence_scorer(module, self.sequences_)

    def _export(self, module: nn.Module) -> None:
        module.eval()
        self.module_ = module

    # -- scoring ----------------------------------------------------------------------------------
    def _context_tokens(self, seqs: Sequences, users: np.ndarray) -> np.ndarray:
        return seqs.last(users, self.config.max_len)

    def _sequence_scorer(self, module: nn.Module, seqs: Sequences) -> Callable[[np.ndarray], np.ndarray]:
        def score(users: np.ndarray) -> np.ndarray:
            users = np.asarray(users, dtype=np.int64)
            out = np.empty((len(users), self.num_items_), dtype=np.float32)
            step = self.config.eval_batch_size
            was_training = module.training
            module.eval()
            try:
                with torch.no_grad():
                    for s in range(0, len(users), step):
                        out[s : s + step] = self._score_block(module, self._context_tokens(seqs, users[s : s + step]))
            finally:
                module.train(was_training)
            return out

        return score

    def _score_block(self, module: nn.Module, tokens: np.ndarray) -> np.ndarray:
        """``(n, I)`` scores of every item after each history ``tokens (n, T)`` (no grad, eval mode)."""
        x = torch.from_numpy(tokens).to(module_device(module))
        return to_numpy(module.logits(module.encode(x)[:, -1]))

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        users = self._check_users(user_idx)
        return self._sequence_scorer(self.module_, self.sequences_)(users)

    def scorer_after(self, extra: Interactions) -> Callable[[np.ndarray], np.ndarray]:
        """A scorer of known users whose histories continue with ``extra``'s events."""
        self._check_fitted()
        return self._sequence_scorer(self.module_, self.sequences_.extend(extra))

    def score_histories(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(n, num_items)`` scores of the next item after each history (item indices, oldest first)."""
        self._check_fitted()
        for row, h in enumerate(histories):
            h = np.asarray(h, dtype=np.int64)
            if h.size and (h.min() < 0 or h.max() >= self.num_items_):
                raise DataError(f"item index out of range [0, {self.num_items_}) in history {row}", field="history")
        seqs = Sequences.from_lists(histories)
        return self._sequence_scorer(self.module_, seqs)(np.arange(len(histories)))

    def item_embeddings(self) -> np.ndarray:
        self._check_fitted()
        with torch.no_grad():
            return self.module_.item_table().numpy().astype(np.float32, copy=True)

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        weights = {f"w.{k}": v.detach().numpy() for k, v in self.module_.state_dict().items()}
        return {"seq_indptr": self.sequences_.indptr, "seq_items": self.sequences_.items,
                "user_items": self.user_items_, **weights}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.sequences_ = Sequences(state.pop("seq_indptr"), state.pop("seq_items"))
        self.user_items_ = state.pop("user_items")
        weights = {k[2:]: v for k, v in state.items() if k.startswith("w.")}
        module = self._make_module(weights)
        module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        module.eval()
        self.module_ = module


class ItemTableModule(nn.Module):
    """A sequence module whose item vectors are an :class:`OutputItems` table ``self.items``."""

    items: OutputItems

    def logits(self, hidden: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        return self.items.logits(hidden, candidates)

    def item_table(self) -> torch.Tensor:
        return self.items.table()


class OutputItems(nn.Module):
    """Item embedding table with padding row 0 (and an optional mask row), scoring by dot product."""

    def __init__(self, num_items: int, dim: int, extra_tokens: int = 0) -> None:
        super().__init__()
        self.num_items = num_items
        self.emb = nn.Embedding(num_items + 1 + extra_tokens, dim, padding_idx=0)
        nn.init.normal_(self.emb.weight, std=dim ** -0.5)
        with torch.no_grad():
            self.emb.weight[0].zero_()

    def table(self) -> torch.Tensor:
        return self.emb.weight[1 : self.num_items + 1]

    def logits(self, hidden: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        table = self.table() if candidates is None else self.emb(candidates + 1)
        return hidden @ table.T
