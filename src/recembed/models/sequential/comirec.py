"""ComiRec-SA: a learned multi-interest user, K vectors from one self-attentive pass over the history.

Cen, Zhang, Zou, Zhou, Yang & Tang, "Controllable Multi-Interest Framework for Recommendation", KDD 2020
(the self-attentive variant, ComiRec-SA).

The history's item embeddings ``H`` (T x D), with learned position embeddings added, go through
``A = softmax(W2 tanh(W1 H^T))`` (``W1``: d_a x D, ``W2``: K x d_a; the softmax runs over the history's
positions, one distribution per head), and the K interests are ``V = A H`` (K x D), in the item-embedding space.
Training: for the target item the interest with the largest inner product with the target's embedding is
picked (hard argmax, as the paper) and the pipeline's next-item loss (full softmax, or sampled softmax with
``num_negatives``, :func:`recembed.training.sequences.next_item_loss`) is applied to that interest alone.

Deviations from the paper:

* Every position of a training window is a target (as SASRec here): the interests at position ``t`` attend
  only to positions ``<= t`` (a causal mask on the head-wise softmax), so one pass trains every transition; the
  paper builds one (history, next item) sample per position. The attention logits do not depend on the query
  position, so this is the same model, only computed for all prefixes at once.
* Full-ranking scoring (``score``, evaluation): ``score(item) = max_k <v_k, e_item>``. The paper's serving path
  retrieves top-N per interest (ANN) and merges them greedily with a diversity term ``lambda``;
  :meth:`ComiRec.recommend_multi` does the per-interest retrieval and merge with ``lambda = 0``, whose result is
  exactly the top-k of the max-score (an item in the top-k by max score is in the top-k of its best interest),
  so evaluation and ``recommend_multi`` agree. The ``lambda > 0`` (category-diversity) aggregation is not built.
* Interests are weighted sums of the item embeddings without their position embeddings (positions steer the
  attention only), so they stay in the space the items are scored in; dropout is applied to the embeddings.
* The paper's loss is a sampled softmax (TF ``sampled_softmax_loss``); the default here is the full softmax as
  for the other sequential models (``num_negatives > 0`` samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ...config import check
from ...errors import DataError
from ...training.device import module_device, to_numpy
from ...training.sequences import NextItemTask, SeqBatch, Sequences, next_item_loss
from .core import ItemTableModule, OutputItems, SequentialConfig, SequentialRecommender


@dataclass(frozen=True)
class ComiRecConfig(SequentialConfig):
    num_interests: int = 4
    """K: interest vectors per user (attention heads)."""
    attention_dim: int = 0
    """d_a, the width of ``W1`` (0: 4 x ``embedding_dim``, the authors' setting)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.num_interests >= 1, "num_interests", f"must be >= 1, got {self.num_interests}")
        check(self.attention_dim >= 0, "attention_dim", f"must be >= 0, got {self.attention_dim}")


class ComiRecModule(ItemTableModule):
    def __init__(self, num_items: int, cfg: ComiRecConfig) -> None:
        super().__init__()
        d = cfg.embedding_dim
        self.items = OutputItems(num_items, d)
        self.pos = nn.Embedding(cfg.max_len, d)
        nn.init.normal_(self.pos.weight, std=d ** -0.5)
        self.w1 = nn.Linear(d, cfg.attention_dim or 4 * d, bias=False)
        self.w2 = nn.Linear(cfg.attention_dim or 4 * d, cfg.num_interests, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T, K, D)``: the K interests after each position, each reading that position and earlier ones."""
        b, t = tokens.shape
        h = self.drop(self.items.emb(tokens))  # (B, T, D)
        pos = self.pos.weight[self.pos.num_embeddings - t:]  # right-aligned: the last column is the newest item
        s = self.w2(torch.tanh(self.w1(h + pos))).transpose(1, 2)  # (B, K, T) attention logit of each key
        steps = torch.arange(t, device=tokens.device)
        ok = (steps[None, :] <= steps[:, None])[None] & (tokens != 0)[:, None, :]  # (B, Tq, Tk)
        ok = ok | torch.eye(t, dtype=torch.bool, device=tokens.device)[None]  # padded rows stay finite (unused)
        logits = s[:, :, None, :].masked_fill(~ok[:, None], float("-inf"))  # (B, K, Tq, Tk)
        att = torch.softmax(logits, dim=-1)
        return (att @ h[:, None]).transpose(1, 2)  # (B, K, Tq, D) -> (B, Tq, K, D)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.items.emb(items + 1)


class InterestTask(NextItemTask):
    """Next item at every position, the loss on the interest nearest the target (the paper's hard argmax)."""

    def loss(self, module: nn.Module, batch: SeqBatch, epoch: int) -> torch.Tensor:
        interests = module.encode(batch.inputs)
        sel = batch.targets > 0
        v, target = interests[sel], batch.targets[sel] - 1  # (N, K, D), (N,)
        with torch.no_grad():
            e = module.item_vectors(target)[:, : v.shape[-1]]
            pick = torch.einsum("nkd,nd->nk", v, e).argmax(1)
        h = v[torch.arange(len(v), device=v.device), pick]
        return next_item_loss(module, h, target, self.num_items, self.num_negatives)


class ComiRec(SequentialRecommender):
    name = "comirec"
    Config = ComiRecConfig

    def _make_module(self, weights: dict[str, np.ndarray] | None) -> nn.Module:
        return ComiRecModule(self.num_items_, self.config)

    def _task(self, sequences: Sequences):  # noqa: ANN202
        c = self.config
        return self._sized(InterestTask(sequences, c.max_len, c.batch_size, self.num_items_, c.num_negatives))

    def _interests_block(self, module: nn.Module, tokens: np.ndarray) -> torch.Tensor:
        """``(n, K, D')`` interests after each history (no grad, eval mode; D' = ``serve_dim`` when set)."""
        v = module.encode(torch.from_numpy(tokens).to(module_device(module)))[:, -1]
        return v[..., : self.config.serve_dim] if self.config.serve_dim else v

    def _score_block(self, module: nn.Module, tokens: np.ndarray) -> np.ndarray:
        v = self._interests_block(module, tokens)
        n, k, d = v.shape
        return to_numpy(module.logits(v.reshape(n * k, d)).view(n, k, -1).amax(1))

    # -- the multi-interest API -----------------------------------------------------------------------
    def _interests_of(self, seqs: Sequences, users: np.ndarray) -> np.ndarray:
        module, out = self.module_, []
        module.eval()
        with torch.no_grad():
            for s in range(0, len(users), self.config.eval_batch_size):
                block = self._context_tokens(seqs, users[s: s + self.config.eval_batch_size])
                out.append(to_numpy(self._interests_block(module, block)))
        d = self.config.serve_dim or self.config.embedding_dim
        return np.concatenate(out) if out else np.zeros((0, self.config.num_interests, d), np.float32)

    def interests(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(n, K, D)`` interest vectors after each history (item indices, oldest first)."""
        self._check_fitted()
        for row, h in enumerate(histories):
            h = np.asarray(h, dtype=np.int64)
            if h.size and (h.min() < 0 or h.max() >= self.num_items_):
                raise DataError(f"item index out of range [0, {self.num_items_}) in history {row}", field="history")
        return self._interests_of(Sequences.from_lists(histories), np.arange(len(histories)))

    def user_interests(self, user_idx: np.ndarray) -> np.ndarray:
        """``(B, K, D)`` interests of known users (from their training sequences)."""
        return self._interests_of(self.sequences_, self._check_users(user_idx))

    def recommend_multi(self, user_idx: int | np.ndarray, k: int = 10, *, exclude: sp.csr_matrix | None = None,
                        exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` per interest, merged by score (the paper's aggregation with ``lambda = 0``): ``(items,
        scores)``, ``(k,)`` for a scalar user, else ``(B, k)``; -1 / -inf fill lists short of ``k`` items."""
        from ..base import check_k

        k = check_k(k)
        scalar = np.ndim(user_idx) == 0
        users = self._check_users(user_idx)
        mask = self._exclusion(exclude_seen, exclude)
        v = torch.from_numpy(self.user_interests(users))  # (B, K, D)
        table = torch.from_numpy(self.item_embeddings()[:, : v.shape[-1]])
        items_out = np.full((len(users), k), -1, np.int64)
        scores_out = np.full((len(users), k), -np.inf, np.float32)
        kk = min(k, self.num_items_)
        for s in range(0, len(users), 256):
            scores = torch.einsum("bkd,id->bki", v[s: s + 256], table)  # (b, K, I)
            if mask is not None:
                m = mask[users[s: s + 256]].tocoo()
                scores[m.row, :, m.col] = -torch.inf
            top_s, top_i = scores.topk(kk, dim=-1)  # per interest
            cand_i, cand_s = top_i.flatten(1).numpy(), top_s.flatten(1).numpy()  # (b, K kk)
            # an item retrieved by several interests keeps its best score, then the best k overall
            order = np.lexsort((-cand_s, cand_i), axis=1)
            ci, cs = np.take_along_axis(cand_i, order, 1), np.take_along_axis(cand_s, order, 1)
            first = np.ones_like(ci, dtype=bool)
            first[:, 1:] = ci[:, 1:] != ci[:, :-1]
            cs = np.where(first & np.isfinite(cs), cs, -np.inf)
            best = np.argsort(-cs, axis=1, kind="stable")[:, :kk]
            bs = np.take_along_axis(cs, best, 1)
            items_out[s: s + 256, :kk] = np.where(np.isfinite(bs), np.take_along_axis(ci, best, 1), -1)
            scores_out[s: s + 256, :kk] = bs
        return (items_out[0], scores_out[0]) if scalar else (items_out, scores_out)
