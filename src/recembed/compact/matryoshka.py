"""Matryoshka training: one fitted embedding model whose every listed prefix width is a model of its own.

Reference: Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022 (MRL); in recommendation: Lai et al.,
"Train Once, Deploy Anywhere: Matryoshka Representation Learning for Multimodal Recommendation", 2024 (fMRLRec).

With ``--set matryoshka_dims=8,16,32,64`` (each at most ``embedding_dim``, increasing) a training step computes
the model's *own* loss once per width ``m`` on the first ``m`` coordinates of every user / sequence vector and
item vector it scores with, and minimises ``sum_m c_m * loss_m`` (``matryoshka_weights``; default ``c_m = 1``, as
MRL). The full width is trained only if it is listed. The mechanism is one wrapper around the model's task
(:func:`matryoshka_task`): it hands the task a view of the module whose embedding outputs (``forward``, ``ego``,
``layers``, ``encode``, ``item_table``) are cut to ``m`` columns; item scoring (``logits``) cuts the item table
to the width of the hidden vector it gets. Losses are not copied: BPR, the in-batch softmax, SimGCL / XSimGCL's
InfoNCE, DirectAU's alignment + uniformity and the sequential cross-entropy (full or sampled) all run as written.

Exactness and cost. The full-width forward pass runs once per step and each width reads a slice of it (the
gradients of all widths meet in one backward pass). The random draws of a step (negatives, noise, dropout) are
replayed for every width, so all widths see the same negatives and the same dropout masks, and the nested loss
equals the sum of the per-width losses computed separately from the same seed (tests/test_compact_matryoshka.py).

Supported: bpr (not with ``item_bias``), lightgcn, simgcl, xsimgcl, directau, sasrec, gru4rec, bert4rec, unisrec.
Refused: tiger (its scores are decoded semantic IDs, not an inner product) and every model without the key
(``unknown key``). Model selection (early stopping) uses the full width.

Deviations: MRL nests prefixes of the representation and gives each width its own classifier (MRL) or the first
``m`` columns of one shared classifier (MRL-E); here the item table plays the classifier and is shared (MRL-E): an
item vector's prefix scores a user vector's prefix, which is what serving a prefix needs. fMRLRec's efficient
weight design (nested slices of the encoder's weight matrices, so that a small model also computes less) is not
implemented: sequential encoders run at full width, only their output and the item table are cut. fMRLRec's
multimodal item features are not used (models train on what they train on without this option).

Evaluation and serving: :func:`truncate` returns a copy of a fitted model scoring with the first ``dim``
coordinates (embedding models: the tables themselves are cut; sequential models: ``serve_dim`` in the config);
:func:`evaluate_prefixes` evaluates every width in one call (``metrics.json`` ``"matryoshka"``);
``recembed bundle RUN --dim 16`` bundles the truncated model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..config import build_config, check, config_to_dict
from ..errors import ConfigError

SUPPORTED = ("bpr", "lightgcn", "simgcl", "xsimgcl", "directau", "sasrec", "gru4rec", "bert4rec", "unisrec")
#: module methods whose tensors end in the embedding width (cut to the prefix in a view)
EMBEDDING_METHODS = ("forward", "ego", "layers", "encode", "item_table")


@dataclass(frozen=True)
class MatryoshkaFields:
    """Config fields of the models that support Matryoshka training (listed first among the bases)."""

    matryoshka_dims: tuple[int, ...] = ()
    """Matryoshka training (docs/compact.md): prefix widths trained together, increasing, each at most
    ``embedding_dim`` (e.g. ``8,16,32,64``); () = off."""
    matryoshka_weights: tuple[float, ...] = ()
    """Weight of each width's loss, one per ``matryoshka_dims`` entry (() = 1 each, as MRL)."""
    serve_dim: int = 0
    """Score with the first ``serve_dim`` coordinates of the user / sequence and item vectors (0: all); set by
    ``recembed bundle RUN --dim D`` (and :func:`recembed.compact.matryoshka.truncate`)."""

    #: a model whose scores are not an inner product of prefix-sliceable vectors sets this to the reason
    MATRYOSHKA_UNSUPPORTED: ClassVar[str] = ""

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc] - the config's next base (TrainConfig)
        dims, weights = self.matryoshka_dims, self.matryoshka_weights
        width = int(getattr(self, "embedding_dim", 0))
        if dims:
            check(not self.MATRYOSHKA_UNSUPPORTED, "matryoshka_dims", self.MATRYOSHKA_UNSUPPORTED or "")
            check(all(d >= 1 for d in dims), "matryoshka_dims", f"widths must be >= 1, got {list(dims)}")
            check(all(a < b for a, b in zip(dims, dims[1:])), "matryoshka_dims",
                  f"widths must be strictly increasing, got {list(dims)}")
            check(dims[-1] <= width, "matryoshka_dims",
                  f"widths must be at most embedding_dim ({width}), got {list(dims)}")
            check(not getattr(self, "item_bias", False), "matryoshka_dims",
                  "not with item_bias=true (the bias rides along as an extra coordinate, which a prefix drops)")
        if weights:
            check(bool(dims), "matryoshka_weights", "needs matryoshka_dims")
            check(len(weights) == len(dims), "matryoshka_weights",
                  f"expected one weight per width ({len(dims)}: {list(dims)}), got {len(weights)}")
            check(all(w >= 0 for w in weights) and any(w > 0 for w in weights), "matryoshka_weights",
                  f"weights must be >= 0 and not all 0, got {list(weights)}")
        check(not (self.serve_dim and self.MATRYOSHKA_UNSUPPORTED), "serve_dim", self.MATRYOSHKA_UNSUPPORTED or "")
        check(0 <= self.serve_dim <= width, "serve_dim", f"must be in [0, embedding_dim={width}], got {self.serve_dim}")

    def matryoshka_terms(self) -> list[tuple[int, float]]:
        """``(width, weight)`` of every trained prefix (empty: Matryoshka training is off)."""
        weights = self.matryoshka_weights or (1.0,) * len(self.matryoshka_dims)
        return [(int(d), float(w)) for d, w in zip(self.matryoshka_dims, weights)]


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def cut(value: Any, dim: int, memo: dict[int, Any] | None = None) -> Any:
    """``value``'s tensors (recursively through tuples / lists) cut to their first ``dim`` columns; ``memo`` keeps
    one slice per tensor, so that a tensor returned twice (MF's ``forward`` and ``ego``) gives the same slice."""
    if isinstance(value, torch.Tensor):
        if memo is None:
            return value[..., :dim]
        key = id(value)
        if key not in memo:
            memo[key] = (value, value[..., :dim])  # the tensor too: its id stays unique while it is held
        return memo[key][1]
    if isinstance(value, (tuple, list)):
        return type(value)(cut(v, dim, memo) for v in value)
    return value


class _Tape:
    """The embedding calls of one step, recorded on the first width and replayed on the others: the result
    (computed once, at full width) and the random-generator state after the call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []
        self.replaying = False
        self.position = 0

    def rewind(self) -> None:
        self.replaying, self.position = True, 0


class PrefixView:
    """``module`` as seen by a width-``dim`` model: its embedding methods' outputs cut to ``dim`` columns; every
    other attribute is the module's own. With a ``tape``, embedding calls are computed once per step."""

    def __init__(self, module: torch.nn.Module, dim: int, tape: _Tape | None = None) -> None:
        self._module, self._dim, self._tape, self._memo = module, dim, tape, {}

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if name not in EMBEDDING_METHODS or not callable(value):
            return value
        return lambda *args, **kwargs: self._call(name, value, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("forward", self._module, args, kwargs)

    def _call(self, name: str, fn: Any, args: tuple, kwargs: dict) -> Any:
        tape = self._tape
        if tape is None:
            return cut(fn(*args, **kwargs), self._dim, self._memo)
        if tape.replaying and tape.position < len(tape.calls) and tape.calls[tape.position][0] == name:
            _, full, state = tape.calls[tape.position]
            tape.position += 1
            _set_rng_state(state)
        else:
            full = fn(*args, **kwargs)
            if not tape.replaying:
                tape.calls.append((name, full, _rng_state()))
        return cut(full, self._dim, self._memo)


class MatryoshkaTask:
    """A model's task trained on nested prefixes: ``loss = sum_m c_m * task.loss(view_m)`` (module docstring).

    ``task.loss`` is read once, here: :func:`matryoshka_task` then sets the task's own ``loss`` to this one, so the
    trainer keeps the task object itself (its batches, sizes and tensor attributes, which the trainer moves to the
    device, stay where they are)."""

    def __init__(self, task: Any, terms: list[tuple[int, float]]) -> None:
        self.task, self.terms, self._loss = task, terms, task.loss

    def num_batches(self) -> int:
        return self.task.num_batches()

    def batches(self, epoch: int, rng: np.random.Generator):  # noqa: ANN201
        return self.task.batches(epoch, rng)

    def loss(self, module: torch.nn.Module, batch: Any, epoch: int) -> torch.Tensor:
        tape, start = _Tape(), _rng_state()
        total = None
        for i, (dim, weight) in enumerate(self.terms):
            if i:
                _set_rng_state(start)
                tape.rewind()
            term = self._loss(PrefixView(module, dim, tape), batch, epoch)
            total = weight * term if total is None else total + weight * term
        return total

    def prefix_losses(self, module: torch.nn.Module, batch: Any, epoch: int) -> dict[int, torch.Tensor]:
        """Each width's loss computed on its own (no shared forward pass), every one from the current random
        state: what :meth:`loss` sums (tests)."""
        start, out = _rng_state(), {}
        for dim, _ in self.terms:
            _set_rng_state(start)
            out[dim] = self._loss(PrefixView(module, dim), batch, epoch)
        return out


def matryoshka_task(task: Any, config: Any) -> Any:
    """``task`` itself, its ``loss`` replaced by the nested one (:class:`MatryoshkaTask`, also kept as
    ``task.matryoshka``) when ``config.matryoshka_dims`` is set."""
    terms = config.matryoshka_terms() if hasattr(config, "matryoshka_terms") else []
    if terms:
        task.matryoshka = MatryoshkaTask(task, terms)
        task.loss = task.matryoshka.loss  # an instance attribute: shadows the class's loss for this task only
    return task


# --------------------------------------------------------------------------------------------
# evaluation and serving
# --------------------------------------------------------------------------------------------
def model_width(model: Any) -> int | None:
    """The width of a fitted model's user / item vectors, or None when it has none to cut."""
    if getattr(getattr(model, "config", None), "MATRYOSHKA_UNSUPPORTED", ""):
        return None
    if hasattr(model, "user_factors_") and hasattr(model, "item_factors_") and "serve_dim" in _fields(model):
        return int(model.item_factors_.shape[1])
    if hasattr(model, "sequences_") and "serve_dim" in _fields(model):
        return int(model.config.embedding_dim)
    return None


def _fields(model: Any) -> set[str]:
    return set(config_to_dict(model.config)) if hasattr(model, "config") else set()


def truncate(model: Any, dim: int, *, flag: str = "dim") -> Any:
    """A copy of the fitted ``model`` that scores with the first ``dim`` coordinates of its user / sequence and
    item vectors; the original is unchanged. ConfigError naming ``flag`` for a model without such vectors or a
    ``dim`` outside ``[1, width]``."""
    model._check_fitted()
    width = model_width(model)
    if width is None:
        raise ConfigError(f"{flag}: {model.name} has no user / item embeddings to cut to a prefix (models: "
                          f"{', '.join(SUPPORTED)})")
    if not 1 <= dim <= width:
        raise ConfigError(f"{flag}: must be in [1, {width}] (the model's embedding width), got {dim}")
    out = copy.copy(model)
    values = config_to_dict(model.config)
    if hasattr(model, "user_factors_"):
        out.user_factors_ = np.ascontiguousarray(model.user_factors_[:, :dim])
        out.item_factors_ = np.ascontiguousarray(model.item_factors_[:, :dim])
        values["embedding_dim"] = dim  # the saved tables are dim wide
        values["matryoshka_dims"] = [d for d in values.get("matryoshka_dims", []) if d <= dim]
        values["matryoshka_weights"] = values.get("matryoshka_weights", [])[: len(values["matryoshka_dims"])]
        values["serve_dim"] = 0
    else:
        values["serve_dim"] = dim
    out.config = build_config(type(model.config), values)
    return out


def prefix_dims(model: Any) -> list[int]:
    """The widths :func:`evaluate_prefixes` reports by default: the trained ones plus the full width."""
    width = model_width(model)
    dims = [int(d) for d in getattr(model.config, "matryoshka_dims", ())]
    return sorted(set(dims) | ({width} if width else set()))


def evaluate_prefixes(model: Any, split: Any, dims: list[int] | None = None, **evaluate_kwargs: Any
                      ) -> dict[str, dict[str, dict[str, float]]]:
    """``{str(dim): {"test": summary, "valid": summary}}``: the fitted ``model`` evaluated at every width (default:
    :func:`prefix_dims`) with the run's protocol (:func:`recembed.runs.evaluate_split`; ``evaluate_kwargs`` go
    to it: ``ks``, ``cold_users``)."""
    from ..runs import evaluate_split

    out: dict[str, dict[str, dict[str, float]]] = {}
    for dim in dims or prefix_dims(model):
        small = truncate(model, int(dim))
        parts = {}
        for part in ("test", "valid"):
            res = evaluate_split(small, split, part, **evaluate_kwargs)
            parts[part] = res.summary if res else {}
        out[str(dim)] = parts
    return out
