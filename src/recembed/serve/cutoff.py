"""The relevance cut-off in the service: ``GET /v1/users/{id}/recommendations?min_probability=P[&min_results=M]``.

``recembed cutoff RUN`` fits a map from a candidate's retrieval score to P(relevant) on the run's validation part
(:mod:`recembed.tasks.cutoff`) and writes ``RUN/cutoff.json``; ``recembed bundle RUN`` then stores the map in the
manifest (``cutoff``: its features, standardisation, weights, bias and the number of candidates it scores) and
the training counts two of its features read in ``cutoff/counts.safetensors`` (``user_counts (U,)``,
``item_counts (I,)``). A request with ``min_probability`` takes the retriever's top ``candidates`` for the user
(seen items excluded, as ever), computes the same features the map was fitted on, and answers the items with
P(relevant) >= ``min_probability`` (at most ``k``; at least ``min_results`` when that many candidates exist: a
floor for callers that must show something), each with its ``probability``, so ``count`` varies per user.
Items added through the service have training count 0. Not with a ranker: the map reads the retriever's scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..io import read_json

CUTOFF_FILE = "cutoff/counts.safetensors"


@dataclass
class CutoffPart:
    """What a bundle stores of a run's ``cutoff.json``."""

    entry: dict[str, Any]
    user_counts: np.ndarray
    item_counts: np.ndarray


def cutoff_for_run(run_dir: str | Path, run: Any) -> CutoffPart | None:
    """The run's fitted cut-off map (``RUN/cutoff.json``) and its training counts, or None when there is none."""
    from ..tasks.cutoff import FEATURES

    path = Path(run_dir) / "cutoff.json"
    if not path.is_file():
        return None
    result = read_json(path)
    model = result.get("model") or {}
    if model.get("features") != list(FEATURES):
        raise DataError(f"the cut-off map's features {model.get('features')} are not {list(FEATURES)}: fit it "
                        "again with `recembed cutoff RUN`", path=path, field="model.features")
    train = run.split.train
    entry = {"model": model, "candidates": int(result["candidates"]), "file": CUTOFF_FILE,
             "fitted_on": "valid", "test_rows": result.get("rows", [])}
    return CutoffPart(entry, np.asarray(train.user_counts(), np.int64), np.asarray(train.item_counts(), np.int64))


def write_cutoff(root: Path, part: CutoffPart) -> dict[str, Any]:
    """Save ``part``'s counts under ``root``; returns the manifest's ``cutoff`` entry."""
    from safetensors.numpy import save_file

    (root / CUTOFF_FILE).parent.mkdir(parents=True, exist_ok=True)
    save_file({"user_counts": part.user_counts, "item_counts": part.item_counts}, str(root / CUTOFF_FILE))
    return part.entry


class ServedCutoff:
    """A bundle's cut-off map, ready to score one user's candidate list."""

    def __init__(self, entry: dict[str, Any], counts: dict[str, np.ndarray]) -> None:
        from ..tasks.cutoff import CutoffModel

        m = entry["model"]
        self.candidates = int(entry["candidates"])
        self.map = CutoffModel(np.asarray(m["mean"]), np.asarray(m["std"]), np.r_[m["weights"], m["bias"]])
        self.user_counts, self.item_counts = counts["user_counts"], counts["item_counts"]

    @classmethod
    def of_bundle(cls, bundle: Any) -> ServedCutoff | None:
        entry = bundle.manifest.get("cutoff")
        if not entry:
            return None
        from .bundle_read import _load_tensors

        return cls(entry, _load_tensors(Path(bundle.path) / entry["file"]))

    def probabilities(self, user: int, items: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """P(relevant) of each of ``user``'s candidates (``items`` / ``scores`` best first, all admissible)."""
        from ..tasks.cutoff import features

        items = np.asarray(items, np.int64)
        known = items < len(self.item_counts)
        item_counts = np.zeros(int(items.max(initial=0)) + 1, np.int64)
        item_counts[items[known]] = self.item_counts[items[known]]
        user_count = self.user_counts[user:user + 1] if user < len(self.user_counts) else np.zeros(1, np.int64)
        x = features(np.asarray(scores, np.float64)[None], items[None], user_count, item_counts)
        return self.map.predict(x)


def check_cut(svc: Any, min_probability: float | None, min_results: int | None, k: int) -> None:
    """Refuse a cut-off request the bundle cannot answer (DataError naming the parameter: HTTP 422)."""
    if min_probability is None:
        if min_results is not None:
            raise DataError("only with min_probability (the floor of a relevance cut-off)", field="min_results")
        return
    if svc.cutoff is None:
        raise DataError("this bundle has no relevance cut-off: run `recembed cutoff RUN`, then bundle the run "
                        "again (`recembed bundle RUN`)", field="min_probability")
    if svc.rank is not None:
        raise DataError("not with a ranker: the cut-off map reads the retriever's scores", field="min_probability")
    if not 0.0 <= min_probability <= 1.0:
        raise DataError(f"must be a probability from 0 to 1, got {min_probability}", field="min_probability")
    if min_results is not None and not 0 <= min_results <= k:
        raise DataError(f"must be from 0 to k ({k}), got {min_results}", field="min_results")


def cut_user(svc: Any, user_id: str, k: int, min_probability: float, min_results: int | None, exclude_seen: bool
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(items, info)`` of a user's cut-off recommendations (see the module docstring); the parameters are
    checked by the caller (:func:`check_cut`)."""
    import time

    cut: ServedCutoff = svc.cutoff
    u = svc.user_index(user_id)
    svc._fresh()  # items added / deleted by other workers, as on the plain path
    t0 = time.perf_counter()
    items, scores = svc.recommend_user_idx(np.array([u]), cut.candidates, exclude_seen)
    keep = (items[0] >= 0) & np.isfinite(scores[0])
    items, scores = items[0][keep], scores[0][keep]
    probs = cut.probabilities(u, items, scores) if len(items) else np.zeros(0)
    chosen = np.flatnonzero(probs >= min_probability)[:k]
    floor = min(min_results or 0, len(items))
    if len(chosen) < floor:  # the items above the threshold are the most probable ones: the union is the top floor
        chosen = np.union1d(chosen, np.argsort(-probs, kind="stable")[:floor])  # sorted = retrieval order
    out = svc._items(items[chosen], scores[chosen])
    for row, p in zip(out, probs[chosen].tolist()):
        row["probability"] = round(p, 6)
    seconds = {"retrieve": time.perf_counter() - t0}
    return out, {"stages": ["retrieve", "cutoff"], "candidates": cut.candidates, "seconds": seconds}
