"""Score-level ensembles: several fitted models, each user's scores standardised per model and averaged.

The standard way to cut the seed-to-seed variance of a trained recommender (and to combine different
models): on a sparse split such as tiktok-mm, one model's test NDCG@20 moves by several percent with the
seed alone, because each seed converges to a different model. Averaging members whose errors differ
reduces that variance; it is no substitute for a better single model, so compare ensembles with
ensembles of the same size (benchmarks/RESULTS.md does).

Two ways to get one:

* ``recembed fit ensemble --set members=mgcn,mgcn,mgcn --set params="valid_metric=ndcg@20;patience=10"``
  fits every member on the same training data, member ``i`` with seed ``seed + i`` (each member early-stops
  on validation on its own). ``params`` is ``key=value`` pairs separated by ``;``: a bare key goes to
  every member whose config has it, ``name.key=value`` to the members called ``name`` only.
* ``recembed ensemble RUN_A RUN_B ... --out RUN`` (or :meth:`Ensemble.from_models`) combines models
  already fitted on the same split.

Scores: for each user and member, ``(s - mean(s)) / std(s)`` over all items (members' raw score scales
are unrelated: BPR dot products, EASE regressions, log-probabilities), then the weighted mean.
``combine="mean"`` averages raw scores instead (members of one model family on one scale).
Item similarity: the members' similarity rows (cosines, or a one-item history's scores), combined the same
way. No ``item_embeddings``: the members' vector spaces differ (the service ranks similar items through the
model).

Saved form: the usual ``model.json`` / ``model.safetensors`` (the weights) plus ``members/<i>/`` (each
member's own saved form).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp

from ..config import build_config, check, config_to_dict
from ..data.interactions import Interactions
from ..errors import ConfigError, DataError
from ..options import FitOptions
from .base import Recommender


@dataclass(frozen=True)
class EnsembleConfig:
    members: tuple[str, ...] = ("bpr", "bpr", "bpr")
    """Member model names (registry names); repeat a name for a seed ensemble."""
    params: str = ""
    """Member settings, ``key=value`` pairs separated by ``;``: a bare key goes to every member that has it (an
    error if none has), ``name.key=value`` only to the members called ``name``."""
    weights: tuple[float, ...] = ()
    """One non-negative weight per member (empty: equal weights)."""
    combine: Literal["zscore", "mean"] = "zscore"
    """``zscore``: standardise each member's scores per user before averaging; ``mean``: average raw scores."""

    def __post_init__(self) -> None:
        check(len(self.members) >= 1, "members", "at least one member model")
        check(not self.weights or len(self.weights) == len(self.members), "weights",
              f"one weight per member ({len(self.members)}), got {len(self.weights)}")
        check(all(w >= 0 for w in self.weights) and (not self.weights or sum(self.weights) > 0), "weights",
              "non-negative, not all zero")


def member_params(config: EnsembleConfig) -> list[dict[str, str]]:
    """The settings of each member, from ``config.params`` (see :class:`EnsembleConfig`)."""
    from .registry import model_class

    fields = [set(config_to_dict(build_config(model_class(m).Config, {}))) for m in config.members]
    out: list[dict[str, str]] = [{} for _ in config.members]
    for item in (p.strip() for p in config.params.split(";")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"params: expected key=value, got {item!r}")
        key = key.strip()
        name, dot, field = key.rpartition(".")
        targets = [i for i, m in enumerate(config.members) if (not dot or m == name) and (field in fields[i])]
        if not targets:
            where = f"member {name!r}" if dot else "any member"
            raise ConfigError(f"params: {field!r} is not a setting of {where} ({', '.join(config.members)})")
        for i in targets:
            out[i][field] = value.strip()
    return out


def _standardise(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float32)
    s = np.where(np.isfinite(s), s, np.nan)  # -inf placeholders (masked items) must not poison the statistics
    mean = np.nanmean(s, axis=1, keepdims=True)
    std = np.nanstd(s, axis=1, keepdims=True)
    out = (s - mean) / np.maximum(std, 1e-8)
    return np.nan_to_num(out, nan=-1e4).astype(np.float32)


class Ensemble(Recommender):
    name = "ensemble"
    Config = EnsembleConfig
    members_: list[Recommender]
    weights_: np.ndarray

    @classmethod
    def from_models(cls, models: list[Recommender], *, weights: list[float] | None = None,
                    combine: str = "zscore") -> Self:
        """An ensemble of fitted models (same users and items)."""
        if not models:
            raise ConfigError("members: at least one fitted model")
        shapes = {(m.num_users_, m.num_items_) for m in models}
        for m in models:
            m._check_fitted()
        if len(shapes) != 1:
            raise DataError(f"members were fitted on different users x items: {sorted(shapes)}", field="members")
        model = cls(members=tuple(m.name for m in models), weights=tuple(weights or ()), combine=combine)
        model.num_users_, model.num_items_ = shapes.pop()
        model._set_members(list(models))
        return model

    def _set_members(self, members: list[Recommender]) -> None:
        self.members_ = members
        w = np.asarray(self.config.weights or [1.0] * len(members), dtype=np.float64)
        self.weights_ = (w / w.sum()).astype(np.float32)

    def _fit(self, train: Interactions, options: FitOptions, **context: Any) -> None:
        from rich.console import Console

        from .registry import model_class

        console = Console(stderr=True)

        members = []
        for i, (name, params) in enumerate(zip(self.config.members, member_params(self.config), strict=True)):
            if options.show_progress:
                console.print(f"[bold]ensemble member {i + 1}/{len(self.config.members)}[/]: {name} "
                              f"(seed {options.seed + i})")
            opts = replace(options, seed=options.seed + i,
                           checkpoint_dir=str(Path(options.checkpoint_dir) / f"member-{i}")
                           if options.checkpoint_dir else None)
            members.append(model_class(name)(**params).fit(train, options=opts, **context))
        self._set_members(members)

    def _combined(self, parts: list[np.ndarray]) -> np.ndarray:
        if self.config.combine == "zscore":
            parts = [_standardise(p) for p in parts]
        out = np.zeros_like(np.asarray(parts[0], dtype=np.float32))
        for w, p in zip(self.weights_, parts, strict=True):
            out += w * np.asarray(p, dtype=np.float32)
        return out

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        users = self._check_users(user_idx)
        return self._combined([m.score(users) for m in self.members_])

    def score_histories(self, histories) -> np.ndarray:  # noqa: ANN001
        return self._combined([m.score_histories(histories) for m in self.members_])

    def seen_items(self) -> sp.csr_matrix | None:
        for m in self.members_:
            seen = m.seen_items()
            if seen is not None:
                return seen
        return None

    def similarity_rows(self, item_idx: np.ndarray) -> np.ndarray:
        return self._combined([m.similarity_rows(item_idx) for m in self.members_])

    # -- persistence: the weights here, each member in members/<i>/ ----------------------------------
    def _state(self) -> dict[str, Any]:
        return {"weights": self.weights_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.weights_ = np.asarray(state["weights"], dtype=np.float32)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        self._check_fitted()
        for i, m in enumerate(self.members_):
            m.save(directory / "members" / str(i))
        return super().save(directory)  # model.json last: a half-written ensemble does not load

    def _load_extra(self, directory: Path) -> None:
        members = []
        for i, name in enumerate(self.config.members):
            sub = directory / "members" / str(i)
            if not (sub / "model.json").exists():
                raise DataError(f"ensemble member {i} ({name}) is missing", path=sub)
            members.append(Recommender.load(sub))
        self.members_ = members
