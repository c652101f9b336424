"""Per-field embedding-size search for the CTR rankers: which fields to keep, and how wide their tables need to
be, by refitting the model (``RankerConfig.field_dims``) and reading the validation AUC.

The question is that of DNIS (Cheng, Shen, Zhu, Qian and Zhang, "Differentiable Neural Input Search for
Recommender Systems", 2020) and OptFS (Lyu, Dong, Tang, Zhang, Li, He and Shen, "Optimizing Feature Set for
Click-Through Rate Prediction", WWW 2023): a smaller input -- fewer fields, narrower embeddings -- at the full
model's accuracy. Both learn the answer inside one training run (soft dimension masks / learnable feature gates
relaxed and annealed). This module is the "lite", honest version: a discrete search in which every candidate is
an ordinary fit, so nothing here can be better than what a refit shows. Deviations: no differentiable search,
no gates, widths from a small ladder, and selection on the validation part only (the test part is reported,
never used to choose).

Each token field ``f`` (one that owns its table; see ``field_dims``) walks down a ladder of widths: the
model's ``embedding_dim``, then ``widths`` in decreasing order (default ``4, 0``; 0 drops the field). A numeric,
vector or vocabulary-sharing field can only be dropped. Two strategies:

* ``greedy`` -- backward elimination: at every step, try moving each field one rung down (one fit each), take
  the move with the best validation AUC (ties: the fewer parameters), and stop when no move keeps the
  validation AUC at or above ``reference - tol`` (``reference``: the full model's), or at ``max_steps``.
  Costs up to ``fields x rungs`` steps of up to ``fields`` fits.
* ``guided`` -- one fit per move, fields taken from the least to the most important by a given order (the
  permutation importance on the validation part, or the OutRank ranking): for each rung in turn, every field
  still on the rung above tries it and keeps it when the validation AUC stays at or above ``reference - tol``.
  At most ``fields x rungs`` fits.

The threshold is fixed at the full model's validation AUC minus ``tol``, so however many moves are accepted
the selection never falls more than ``tol`` below the reference on validation (one seed: differences of the
order of the seed-to-seed spread are noise, which is why the benchmark refits the selection with more seeds).
``fit`` is any callable ``field_dims -> {"valid_auc", "test_auc", "parameters", ...}``; :func:`ranker_trial`
makes one from a ranker and a :class:`CTRData`, and results are cached per ``field_dims`` string.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError

STRATEGIES = ("greedy", "guided")
Trial = dict[str, Any]


def field_dims_spec(widths: dict[str, int], order: Sequence[str], dim: int) -> str:
    """``{field: width}`` -> ``"f:w,..."`` in ``order``, leaving out fields at the full width."""
    return ",".join(f"{f}:{widths[f]}" for f in order if f in widths and widths[f] != dim)


def ladders(schema: Any, dim: int, widths: Sequence[int] = (4, 0)) -> dict[str, list[int]]:
    """Each field's widths below ``dim``, widest first: the ``widths`` below ``dim`` for a token field that owns
    its table, ``[0]`` (drop only) for the others."""
    rungs = sorted({int(w) for w in widths if 0 <= int(w) < dim}, reverse=True)
    if 0 not in rungs:
        rungs.append(0)
    out = {}
    for f in schema.fields:
        owner = f.kind in ("categorical", "tags", "sequence") and schema.table_of(f.name) == f.name
        out[f.name] = rungs if owner else [0]
    return out


def ranker_trial(model_name: str, data: Any, params: dict[str, Any] | None = None, options: Any = None,
                 log: Callable[[str], None] | None = None) -> Callable[[str], Trial]:
    """A ``fit(field_dims) -> trial`` for :func:`size_search`: ``model_name`` with ``params`` fitted on ``data``
    (:func:`~recembed.ranking.runs.fit_and_evaluate_ranker`, no run directory), cached per ``field_dims``."""
    from .runs import fit_and_evaluate_ranker

    cache: dict[str, Trial] = {}

    def fit(field_dims: str) -> Trial:
        if field_dims not in cache:
            t = time.perf_counter()
            run = fit_and_evaluate_ranker(model_name, data, params={**(params or {}), "field_dims": field_dims},
                                          options=options)
            m = run.metrics
            cache[field_dims] = {
                "field_dims": field_dims, "valid_auc": m["valid"]["auc"], "test_auc": m["test"]["auc"],
                "valid_logloss": m["valid"]["logloss"], "test_logloss": m["test"]["logloss"],
                "valid_gauc": m["valid"]["gauc"], "test_gauc": m["test"]["gauc"], "parameters": m["parameters"],
                "embedding_parameters": m["embedding_parameters"], "epochs": m["training"]["epochs_run"],
                "seconds": round(time.perf_counter() - t, 2)}
            if log:
                c = cache[field_dims]
                log(f"  [{field_dims or 'full'}] valid AUC {c['valid_auc']:.4f} test {c['test_auc']:.4f} "
                    f"params {c['parameters']:,} ({c['seconds']:.1f}s)")
        return cache[field_dims]

    return fit


def _next_rung(ladder: list[int], current: int | None) -> int | None:
    """The width below ``current`` (None: the full width) on ``ladder``, None at the bottom."""
    below = [w for w in ladder if current is None or w < current]
    return below[0] if below else None


def _try(fit: Callable[[str], Trial], spec: str, seen: set[str]) -> Trial | None:
    try:
        trial = fit(spec)
    except ConfigError:  # e.g. dropping item_id while hist_items still shares its table
        return None
    seen.add(spec)
    return trial


def size_search(fit: Callable[[str], Trial], fields: Sequence[str], ladder: dict[str, list[int]], dim: int, *,
                strategy: str = "greedy", order: Sequence[str] | None = None, tol: float = 0.001,
                max_steps: int | None = None) -> dict[str, Any]:
    """Search per-field widths (module docstring). ``fields``: the schema's fields (in its order); ``ladder``:
    each field's widths below ``dim`` (:func:`ladders`); ``order``: least important first (``guided``).

    Returns ``{"strategy", "tol", "reference": trial, "threshold", "selected": trial, "widths": {field: width},
    "steps": [{"step", "tried": [trial + "move"], "accepted": move or None}], "fits", "seconds"}``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "guided" and order is None:
        raise ValueError("the guided strategy needs an order (least important field first)")
    t = time.perf_counter()
    reference = fit("")
    threshold = reference["valid_auc"] - tol
    widths: dict[str, int] = {}
    selected, steps, seen = reference, [], {""}

    def move(field: str) -> tuple[dict[str, int], str] | None:
        w = _next_rung(ladder.get(field, [0]), widths.get(field))
        if w is None:
            return None
        cand = {**widths, field: w}
        return cand, field_dims_spec(cand, fields, dim)

    if strategy == "greedy":
        while max_steps is None or len(steps) < max_steps:
            tried = []
            for f in fields:
                m = move(f)
                if m is None:
                    continue
                trial = _try(fit, m[1], seen)
                if trial is not None:
                    tried.append({**trial, "move": f"{f}:{m[0][f]}", "_widths": m[0]})
            ok = [c for c in tried if c["valid_auc"] >= threshold]
            best = max(ok, key=lambda c: (c["valid_auc"], -c["parameters"]), default=None)
            steps.append({"step": len(steps) + 1, "tried": [_public(c) for c in tried],
                          "accepted": best["move"] if best else None})
            if best is None:
                break
            widths, selected = best["_widths"], _public(best)
    else:
        rungs = sorted({w for lad in ladder.values() for w in lad}, reverse=True)
        for rung in rungs:
            for f in order or []:
                if rung not in ladder.get(f, [0]) or widths.get(f, dim) <= rung or (
                        max_steps is not None and len(steps) >= max_steps):
                    continue
                cand = {**widths, f: rung}
                trial = _try(fit, field_dims_spec(cand, fields, dim), seen)
                accepted = trial is not None and trial["valid_auc"] >= threshold
                steps.append({"step": len(steps) + 1, "tried": [{**trial, "move": f"{f}:{rung}"}] if trial else [],
                              "accepted": f"{f}:{rung}" if accepted else None})
                if accepted:
                    widths, selected = cand, trial
    return {"strategy": strategy, "tol": tol, "reference": reference, "threshold": threshold, "selected": selected,
            "widths": {f: widths.get(f, dim) for f in fields}, "steps": steps, "fits": len(seen),
            "seconds": round(time.perf_counter() - t, 2)}


def _public(trial: Trial) -> Trial:
    return {k: v for k, v in trial.items() if not k.startswith("_")}
