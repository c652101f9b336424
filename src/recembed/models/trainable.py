"""Trainable models: build a torch module and a task, run THE trainer, export numpy state.

``EmbeddingRecommender`` covers models that end in user and item embedding tables (MF-BPR,
LightGCN, SimGCL, ...): after training, ``user_factors_`` and ``item_factors_`` are exported and
scoring is ``U[u] @ I^T``; serving needs no training code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..compact.matryoshka import matryoshka_task
from ..compact.tables import replace_item_table
from ..data.interactions import Interactions
from ..evaluation.ranking import evaluate
from ..options import FitOptions
from ..training.device import to_numpy
from ..training.trainer import Task, Trainer, TrainResult, seed_everything
from .base import Recommender


class TrainableRecommender(Recommender):
    """Subclasses implement ``_build(train_csr, options) -> (module, task)``, ``_scorer(module)`` and
    ``_export(module)``."""

    history_: list[dict[str, Any]]
    train_result_: TrainResult

    def _build(self, train: sp.csr_matrix, options: FitOptions) -> tuple[nn.Module, Task]:
        raise NotImplementedError

    def _batch(self, examples: int) -> int:
        """The batch size for ``examples`` training examples an epoch (``TrainConfig.min_steps``); a value that
        differs from ``config.batch_size`` is recorded in ``auto_resolved_`` (and so in ``config.json``)."""
        size = self.config.batch_for(examples)
        if size != self.config.batch_size:
            self._record_resolved("batch_size", size)
        return size

    def _scorer(self, module: nn.Module):  # noqa: ANN202 - returns a Scorer
        raise NotImplementedError

    def _export(self, module: nn.Module) -> None:
        raise NotImplementedError

    def _fit(self, train: Interactions, options: FitOptions, **context: Any) -> None:
        x = train.csr("binary")
        self.user_items_ = x
        self._context = context  # e.g. the item table, for content models' _build
        seed_everything(options.seed)  # module initialisation is part of the seeded run
        try:
            module, task = self._build(x, options)
            module = replace_item_table(module, getattr(self.config, "item_table", "full"))  # item_table=hash:4, ...
            task = matryoshka_task(task, self.config)  # nested prefix losses when matryoshka_dims is set
        finally:
            self._context = {}
        valid: Interactions | None = context.get("valid")
        if self.config.valid_sample and valid is not None and len(valid):
            users = np.unique(valid.user_idx)
            if len(users) > self.config.valid_sample:
                keep = np.random.default_rng(options.seed).choice(users, self.config.valid_sample, replace=False)
                valid = valid.subset(np.isin(valid.user_idx, keep))
        self.valid_candidates_ = "all"
        validate = self._validator(module, x, valid) if valid is not None and len(valid) else None
        result = Trainer(self.config, options).fit(module, task, validate)
        self.train_result_ = result
        self.history_ = result.history
        module.eval()
        with torch.no_grad():
            self._export(module)


    def _validator(self, module: nn.Module, x: sp.csr_matrix, valid: Interactions):  # noqa: ANN202
        """The per-epoch validation callable (``() -> {metric: value}``) of the trainer: full ranking of the
        validation items by ``_scorer(module)``; a model with another validation protocol overrides it."""
        metric = self.config.valid_metric
        name, k = metric.split("@")
        target = valid.csr()
        penalty = self._valid_penalty(x, target)
        self.valid_candidates_ = "cold" if penalty is not None else "all"

        def validate() -> dict[str, float]:  # recall and ndcg ride along for the curve (same top-k)
            names = tuple(dict.fromkeys((name, "recall", "ndcg")))
            scorer = self._scorer(module)
            if penalty is not None:
                scorer = (lambda s: lambda users: s(users) + penalty)(scorer)
            return evaluate(scorer, target, x, ks=(int(k),), metrics=names).summary

        return validate

    def _valid_penalty(self, train: sp.csr_matrix, target: sp.csr_matrix) -> np.ndarray | None:
        """``(I,)`` 0 / -inf mask restricting validation to cold items (``valid_candidates``), or None."""
        mode = self.config.valid_candidates
        cold = (np.diff(train.tocsc().indptr) == 0) & (np.diff(target.tocsc().indptr) > 0)
        if mode == "all" or not cold.any():
            return None
        if mode == "auto" and np.asarray(target[:, ~cold].sum()) > 0:
            return None
        return np.where(cold, 0.0, -np.inf).astype(np.float32)


class EmbeddingRecommender(TrainableRecommender):
    """A model whose module's ``forward()`` returns ``(user_emb (U, D), item_emb (I, D))``."""

    user_factors_: np.ndarray  # (U, D) float32
    item_factors_: np.ndarray  # (I, D) float32

    def _scorer(self, module: nn.Module):  # noqa: ANN202
        user_emb, item_emb = (t.detach().float() for t in module())
        item_t = item_emb.T.contiguous()
        if user_emb.device.type != "cpu":  # scores stay on the device: evaluation ranks them there
            return lambda users: user_emb[torch.as_tensor(np.asarray(users), device=user_emb.device)] @ item_t
        return lambda users: (user_emb[torch.from_numpy(np.asarray(users))] @ item_t).numpy()

    def _export(self, module: nn.Module) -> None:
        user_emb, item_emb = module()
        self.user_factors_ = to_numpy(user_emb).astype(np.float32, copy=True)
        self.item_factors_ = to_numpy(item_emb).astype(np.float32, copy=True)

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        users = self._check_users(user_idx)
        return (torch.from_numpy(self.user_factors_[users]) @ torch.from_numpy(self.item_factors_).T).numpy()

    def item_embeddings(self) -> np.ndarray:
        self._check_fitted()
        return self.item_factors_

    def user_embeddings(self) -> np.ndarray:
        self._check_fitted()
        return self.user_factors_

    def _state(self) -> dict[str, Any]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "user_items": self.user_items_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.user_factors_ = state["user_factors"]
        self.item_factors_ = state["item_factors"]
        self.user_items_ = state["user_items"]
