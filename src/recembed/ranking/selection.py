"""Model-free field ranking for the CTR rankers: a cardinality-aware association of each field with the click,
measured on the training part (no model is fitted).

In the spirit of OutRank (Škrlj, Mramor, Kralj and Lavrač, "OutRank: Speeding up AutoML-based Model Search for
Large Sparse Data sets with Cardinality-aware Feature Ranking", RecSys 2023): rank features by mutual
information with the label, corrected so that a high-cardinality field (a random id, a near-unique token) does
not rank high just because an estimate of MI grows with the number of distinct values. Plain MI of a field with
one value per row equals the label's entropy -- the maximum -- whatever the field says.

For a field with token codes ``X`` (``K`` values occurring in training) and the click ``Y`` over ``N`` rows::

    MI   = sum_{x,y} p(x,y) log(p(x,y) / (p(x) p(y)))                              (nats)
    EMI  = E[MI] when the rows' labels are permuted at random, the marginals fixed (the hypergeometric model;
           exact, Vinh, Epps and Bailey, JMLR 2010, eq. 24a), vectorised over every (x, y, n_xy) term
    AMI  = (MI - EMI) / (mean(H(X), H(Y)) - EMI)               -- adjusted MI, the ranking score (``score``)
    NMI  = MI / mean(H(X), H(Y))                                -- normalised, no correction (for reference)
    penalised = MI - (K - 1) / (2 N)                            -- MI less its first-order bias under
                                                                   independence (Miller-Madow; 2 label classes)

``rank_fields`` sorts by ``score`` (``ami`` by default; ``mi`` / ``nmi`` / ``penalised`` / ``adjusted`` =
``MI - EMI`` on request). A field independent of the click scores about 0 under ``ami``, ``adjusted`` and
``adjusted``, whatever its cardinality; under ``mi`` / ``nmi`` a random id scores near the top. ``penalised``
is a first-order correction only: it holds for ``K`` well below ``N`` and fails for near-unique fields (a
unique id over ``N`` rows keeps MI = H(Y) less about 0.5 nats), so it is reported, not ranked by default.

Choices and deviations, stated:

* Tokens are the schema's encoded indices (fitted on the training part): tokens under ``min_count`` share the
  OOV index, as the models see them.
* ``tags`` fields: the row's first token (index 0, padding, for an empty row); ``sequence`` fields: the row's
  most recent token (the last non-padding one), the token a behaviour sequence most often predicts with.
  ``ragged="tokens"`` instead counts every (row, token) pair with the row's label (pairs of one row are not
  independent, so the EMI correction is then approximate). Each field is scored on its own, a sequence and the
  field whose vocabulary it shares included.
* ``numeric`` fields: 10 equal-frequency bins of the training values (ties merge bins); ``vector`` fields are
  not scored (``nan``, ranked last).
* OutRank's own implementation has further heuristics (subsampling, feature-pair scores, its own cardinality
  penalty); none is reproduced here: the correction is the exact expected MI above, with the Miller-Madow term
  reported beside it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy.special import gammaln

from .schema import PAD, Encoded, Frame, Schema

SCORES = ("ami", "adjusted", "penalised", "nmi", "mi")
RAGGED = ("first", "tokens")
BINS = 10


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _contingency(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(K, 2)`` counts of (code, label) over the codes that occur."""
    _, x = np.unique(codes, return_inverse=True)
    y = (np.asarray(labels) > 0.5).astype(np.int64)
    return np.bincount(x * 2 + y, minlength=2 * (int(x.max()) + 1 if len(x) else 0)).reshape(-1, 2).astype(float)


def mutual_information(table: np.ndarray) -> float:
    """MI (nats) of a contingency table of counts."""
    n = table.sum()
    if n == 0:
        return 0.0
    a, b = table.sum(1, keepdims=True), table.sum(0, keepdims=True)
    nz = table > 0
    return float((table[nz] / n * np.log(table[nz] * n / (a @ b)[nz])).sum())


def expected_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Exact E[MI] (nats) of a table with row sums ``a`` and column sums ``b`` under the hypergeometric model
    (Vinh et al. 2010): every admissible cell count ``n_ij`` weighted by its probability, one vectorised sum."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    a, b = a[a > 0], b[b > 0]
    n = int(a.sum())
    if n == 0 or len(a) < 2 or len(b) < 2:
        return 0.0
    ai, bj = np.repeat(a, len(b)), np.tile(b, len(a))  # every (i, j) cell
    lo = np.maximum(1, ai + bj - n)
    hi = np.minimum(ai, bj)
    length = np.maximum(hi - lo + 1, 0)
    cell = np.repeat(np.arange(len(ai)), length)
    nij = (np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length) + lo[cell]).astype(float)
    A, B = ai[cell].astype(float), bj[cell].astype(float)
    log_p = (gammaln(A + 1) + gammaln(B + 1) + gammaln(n - A + 1) + gammaln(n - B + 1) - gammaln(n + 1)
             - gammaln(nij + 1) - gammaln(A - nij + 1) - gammaln(B - nij + 1) - gammaln(n - A - B + nij + 1))
    return float((nij / n * (np.log(n * nij) - np.log(A * B)) * np.exp(log_p)).sum())


def association(codes: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every score of the module docstring for one field's codes against the 0/1 labels."""
    table = _contingency(codes, labels)
    n, k = float(table.sum()), int((table.sum(1) > 0).sum())
    mi = mutual_information(table)
    emi = expected_mutual_information(table.sum(1).astype(np.int64), table.sum(0).astype(np.int64))
    hx, hy = _entropy(table.sum(1)), _entropy(table.sum(0))
    mean_h = (hx + hy) / 2
    denom = mean_h - emi
    return {"mi": mi, "expected_mi": emi, "adjusted": mi - emi, "ami": (mi - emi) / denom if denom > 1e-12 else 0.0,
            "nmi": mi / mean_h if mean_h > 0 else 0.0, "penalised": mi - (k - 1) / (2 * n) if n else 0.0,
            "distinct": k, "entropy": hx, "rows": int(n)}


def field_codes(schema: Schema, enc: Encoded, name: str, ragged: str = "first") -> tuple[np.ndarray, np.ndarray] | None:
    """``(codes, row of each code)`` of field ``name`` as :func:`association` reads it (module docstring), or
    None for a vector field."""
    f = schema.field(name)
    x = enc.arrays[name]
    rows = np.arange(len(enc))
    if f.kind == "categorical":
        return x, rows
    if f.kind in ("tags", "sequence"):
        if ragged == "tokens":
            r, c = np.nonzero(x != PAD)
            return x[r, c], r
        if f.kind == "tags":
            return x[:, 0], rows
        last = np.maximum((x != PAD).sum(1) - 1, 0)  # right-padded, oldest -> newest
        return x[rows, last], rows
    if f.kind == "numeric":
        edges = np.unique(np.quantile(x, np.linspace(0, 1, BINS + 1)[1:-1]))
        return np.searchsorted(edges, x, side="right"), rows
    return None


def rank_fields(schema: Schema, train: Frame | Encoded, *, score: str = "ami", ragged: str = "first",
                fields: list[str] | None = None) -> dict[str, Any]:
    """Fields ranked by ``score`` against the click on ``train`` (the schema's training part). Returns
    ``{"score", "ragged", "rows", "seconds", "fields": [{"field", "kind", "rank", "mi", "expected_mi",
    "adjusted", "ami", "nmi", "penalised", "distinct", "entropy"}, ...]}``, best first (vector fields last,
    their scores ``nan``)."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if ragged not in RAGGED:
        raise ValueError(f"ragged must be one of {RAGGED}, got {ragged!r}")
    t = time.perf_counter()
    enc = train if isinstance(train, Encoded) else schema.encode(train)
    out = []
    for name in fields if fields is not None else schema.names():
        got = field_codes(schema, enc, name, ragged)
        row: dict[str, Any] = {"field": name, "kind": schema.field(name).kind}
        if got is None:
            row.update({k: float("nan") for k in ("mi", "expected_mi", "adjusted", "ami", "nmi", "penalised")})
        else:
            codes, rows = got
            row.update(association(codes, enc.labels[rows]))
        out.append(row)
    out.sort(key=lambda r: (np.isnan(r[score]), -np.nan_to_num(r[score], nan=0.0)))
    for i, r in enumerate(out):
        r["rank"] = i + 1
    return {"score": score, "ragged": ragged, "rows": len(enc), "seconds": round(time.perf_counter() - t, 3),
            "fields": out}
