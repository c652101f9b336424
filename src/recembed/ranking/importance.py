"""Permutation feature importance of a fitted CTR ranker, one field at a time (``recembed importance RUN_DIR``).

Breiman's permutation importance (Breiman, "Random Forests", Machine Learning 2001; the model-agnostic form of
Fisher, Rudin and Dominici, JMLR 2019): the part is encoded once with the ranker's fitted schema; for each field
and each of ``repeats`` seeded permutations of the rows, that field's encoded column is replaced by its rows in
the permuted order (every other field, the labels and the users untouched), the ranker predicts the part once,
and the drop of each metric against the unshuffled predictions is recorded::

    drop_auc = AUC(original) - AUC(field permuted)        (likewise GAUC)
    rise_logloss = logloss(field permuted) - logloss(original)

so that for every metric a larger number means a more important field; ``mean`` and ``std`` (population,
``ddof=0``) over the repeats. A field the model ignores (dropped by ``field_dims``, or given weights near zero)
scores 0 up to noise.

Choices, stated:

* Permuting the *encoded* column equals permuting the raw column then encoding it: the schema encodes each row
  from that row alone (:meth:`Schema.encode_column`). Tags and sequences are ``(rows, max_len)`` matrices, so a
  permutation moves whole rows (a row's token list stays together; its length moves with it).
* Every field is permuted on its own, including a behaviour sequence and the field whose vocabulary it shares
  (``hist_items`` and ``item_id`` are two fields, two scores); the permutation breaks the field's link with the
  label *and* with the other fields of the row, so correlated fields share their credit (the known caveat of
  permutation importance: a field whose information another field carries too scores low).
* GAUC groups by the part's ``users`` (the row's user, as ``metrics.json``), which is not permuted even when the
  ``user_id`` field is.
* The repeats use ``numpy.random.default_rng([seed, repeat])``, the same permutation for every field of a repeat.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import auc, gauc, logloss
from .schema import Encoded, Frame

METRICS = ("auc", "logloss", "gauc")


def _scores(labels: np.ndarray, probs: np.ndarray, users: np.ndarray) -> dict[str, float]:
    return {"auc": auc(labels, probs), "logloss": logloss(labels, probs), "gauc": gauc(users, labels, probs)[0]}


def _drops(base: dict[str, float], got: dict[str, float]) -> dict[str, float]:
    """Per metric: how much worse ``got`` is than ``base`` (positive: the permutation hurt)."""
    return {"auc": base["auc"] - got["auc"], "logloss": got["logloss"] - base["logloss"],
            "gauc": base["gauc"] - got["gauc"]}


def permutation_importance(model: Any, frame: Frame | Encoded, *, repeats: int = 3, seed: int = 0,
                           fields: list[str] | None = None) -> dict[str, Any]:
    """Permutation importance of every field of ``model``'s schema (or ``fields``) on ``frame``'s rows.

    Returns ``{"baseline": {auc, logloss, gauc}, "repeats", "seed", "rows", "seconds", "fields": [{"field",
    "kind", "auc_drop": {"mean", "std", "values"}, "logloss_rise": {...}, "gauc_drop": {...}}, ...]}`` with the
    fields sorted by mean AUC drop, largest first."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    t = time.perf_counter()
    schema = model.schema_
    enc = frame if isinstance(frame, Encoded) else schema.encode(frame)
    names = list(fields) if fields is not None else schema.names()
    for n in names:
        schema.field(n)  # a DataError naming the fields when it is not one
    base = _scores(enc.labels, model.predict(enc), enc.users)
    perms = [np.random.default_rng([seed, r]).permutation(len(enc)) for r in range(repeats)]
    out = []
    for name in names:
        column = enc.arrays[name]
        per_repeat = []
        for perm in perms:
            arrays = {**enc.arrays, name: column[perm]}
            probs = model.predict(Encoded(arrays, enc.labels, enc.users))
            per_repeat.append(_drops(base, _scores(enc.labels, probs, enc.users)))
        row: dict[str, Any] = {"field": name, "kind": schema.field(name).kind}
        for metric, key in (("auc", "auc_drop"), ("logloss", "logloss_rise"), ("gauc", "gauc_drop")):
            values = np.asarray([d[metric] for d in per_repeat], dtype=np.float64)
            row[key] = {"mean": float(values.mean()), "std": float(values.std()), "values": values.tolist()}
        out.append(row)
    out.sort(key=lambda r: -r["auc_drop"]["mean"])
    return {"baseline": base, "repeats": repeats, "seed": seed, "rows": len(enc),
            "seconds": round(time.perf_counter() - t, 3), "fields": out}


def plot_importance(result: dict[str, Any], path: str | Path, title: str) -> None:
    """Horizontal bars of the mean AUC drop per field (most important at the top), ``std`` as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write

    rows = list(reversed(result["fields"]))  # barh draws bottom-up
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(rows) + 1.4))
    means = [r["auc_drop"]["mean"] for r in rows]
    ax.barh([r["field"] for r in rows], means, xerr=[r["auc_drop"]["std"] for r in rows],
            color=["tab:blue" if m > 0 else "tab:grey" for m in means], capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"AUC drop when the field is permuted (mean ± std, {result['repeats']} repeats)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


def load_run_data(config: dict[str, Any], data_root: str | None = None) -> Any:
    """The :class:`~recembed.ranking.datasets.CTRData` a ranker run was fitted on, rebuilt from its
    ``config.json`` ``data`` spec: a CTR dataset (plus its semantic-ID fields when the run had them), an impression
    file (the same columns, kinds and split; read in memory) or, for a
    run on interaction data, the same split and sampled non-clicks (the fit's seed; runs with added item content
    are refused: their vectors would have to be encoded again)."""
    from ..errors import ConfigError, DataError
    from .datasets import is_ctr_dataset, load_ctr

    spec = dict(config.get("data") or {})
    name = spec.get("data")
    if not name:
        raise DataError('config.json names no data ("data": {"data": ...}); is this a ranker run?')
    if is_ctr_dataset(name):
        ctr = load_ctr(name, data_root or spec.get("data_root"))
    elif spec.get("ctr_file"):  # an impression file (ranking/ctr_files.py): the same columns, kinds and split,
        from .ctr_files import load_ctr_file  # read in memory (a streamed file's parts must fit for this)

        f = spec["ctr_file"]
        path = f["path"] if Path(f["path"]).exists() else name
        split = None if Path(path).is_dir() else f.get("split")
        ctr, _ = load_ctr_file(path, columns=f.get("columns"), split=split, field_kinds=f.get("kinds"),
                               seed=int(config.get("seed", 2020)), stream="false")
    else:
        if spec.get("features") or spec.get("text_columns"):
            raise ConfigError("importance: runs fitted with --features / --text-columns are not supported (their "
                              "item vectors are not stored in the run)")
        from ..data.splits import make_split
        from .implicit import ctr_from_split
        from .pipeline import load_ranker_dataset

        dataset = load_ranker_dataset(spec, data_root)
        seed = int(config.get("seed", 2020))
        if spec.get("retriever"):  # fitted on a retrieval run's candidates (ranking/candidates.py): the same rows
            from ..runs import load_run
            from .candidates import ctr_from_candidates

            ret_dir = spec["retriever"].get("run_dir")
            if not ret_dir or not Path(ret_dir).is_dir():
                raise DataError(f"the ranker was fitted on the candidates of the retrieval run {ret_dir}, which is "
                                "not there any more: its rows cannot be rebuilt", path=ret_dir or ".")
            return ctr_from_candidates(dataset, load_run(ret_dir), candidates=int(spec.get("candidates", 200)),
                                       seed=seed, folds=int(spec.get("retriever_folds", 0)))
        split = make_split(dataset, spec.get("split"), seed=seed)
        ctr = ctr_from_split(dataset, split, negatives=int(spec.get("negatives", 4)), seed=seed,
                             sampling=spec.get("negative_sampling", "uniform"))
    if spec.get("sid_features"):
        from .features import add_semantic_id_fields, load_item_codes

        codes, item_ids = load_item_codes(spec["sid_features"], ctr, id_offset=spec.get("sid_id_offset", 0))
        ctr = add_semantic_id_fields(ctr, codes, item_ids, ngram=spec.get("sid_ngram", "prefix"),
                                     levels=spec.get("sid_levels"))
    return ctr
