"""Complementary vs similar items: test sets from held-out co-purchases, and dual (IN.OUT) vs single (IN.IN)
embedding scores on them (the DESM reading of Mitra, Nalisnick et al. applied to items; model: ``sgns``).

Categories. An item table ``tags`` column (amazon-seq: ``attributes``, S3-Rec's category path tokens plus the brand)
gives each item its *department*: its top-level category token. Top-level tokens are found from the lists' order
(category paths are written top level first, the brand, when there is one, before them): a token that opens some
item's list *and* stands after the first place in another's (so it is not only ever a brand, which only opens
lists, nor a sub-category, which never does), carried by at least ``min_share`` of the items. On Beauty that gives
6 departments (ids 17, 4, 1, 64, 15, 8: 3,814 / 3,262 / 2,627 / 1,222 / 684 / 492 items) and every item has exactly
one. An item's department is the first top-level token of its list (-1: none).

Pairs (no leakage). A model is fitted on the split's training part; a user's sequence goes on through validation
and test, and a *pair* ``(A -> B)`` takes B at a **test** position and A among the ``window`` items just before it
(training or validation events; A != B). Validation positions are not used as B: the trainer early-stops on them.

* complementary: ``dept(A) != dept(B)`` (both known): bought shortly after A, from another department;
* similar: same department and attribute Jaccard ``|T(A) & T(B)| / |T(A) | T(B)| >= similar_jaccard`` (0.5);
* same_attributes (no interactions: substitutes by content): B has exactly A's token set (same brand, same
  category path), A with at least ``min_count`` (5) training events.

A query is a distinct A; its relevant items are all the Bs of that kind. Each score ranks every item but A
(``candidates="all"``), or only the items the kind admits (``"filtered"``: other departments for complements,
the same department for similar items). Per-query Recall@k / NDCG@k / HR@k; dual vs single compared per query
with the Wilcoxon signed-rank test and a paired bootstrap (95% interval of the mean difference).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..data.interactions import Interactions
from ..errors import ConfigError, DataError
from ..evaluation.ranking import evaluate
from ..evaluation.significance import paired_test
from ..training.sequences import Sequences

KINDS = ("complementary", "similar", "same_attributes")
CANDIDATES = ("all", "filtered")
METRIC_NAMES = ("recall", "ndcg", "hit")


def top_level_tokens(tags: np.ndarray, min_share: float = 0.01) -> list[str]:
    """Top-level category tokens of a ``tags`` column (see the module docstring), most frequent first."""
    lists = [tuple(t) for t in tags]
    first = {t[0] for t in lists if t}
    later = {x for t in lists for x in t[1:]}
    counts: dict[str, int] = {}
    for t in lists:
        for x in set(t):
            counts[x] = counts.get(x, 0) + 1
    floor = min_share * max(1, len(lists))
    return sorted((x for x in first & later if counts[x] >= floor), key=lambda x: (-counts[x], x))


def departments(tags: np.ndarray, min_share: float = 0.01) -> tuple[np.ndarray, list[str]]:
    """``(dept (I,) int64, tokens)``: each item's first top-level token as an index into ``tokens`` (-1: none)."""
    tokens = top_level_tokens(tags, min_share)
    pos = {t: i for i, t in enumerate(tokens)}
    dept = np.array([next((pos[x] for x in t if x in pos), -1) for t in tags], dtype=np.int64)
    return dept, tokens


def tag_matrix(tags: np.ndarray) -> sp.csr_matrix:
    """``(I, T)`` binary item x token matrix."""
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, t in enumerate(tags):
        for x in set(t):
            rows.append(i)
            cols.append(vocab.setdefault(x, len(vocab)))
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(tags), max(1, len(vocab))))


def heldout_pairs(seqs: Sequences, first_heldout: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(A (P,), B (P,))``: B at a position ``>= first_heldout[u]`` of user u's sequence, A one of the ``window``
    items before it (A != B)."""
    user_of = np.repeat(np.arange(seqs.num_users), seqs.lengths())
    pos = np.arange(len(seqs.items))
    held = pos[pos - seqs.indptr[user_of] >= first_heldout[user_of]]
    a, b = [], []
    for d in range(1, window + 1):
        ok = held[held - d >= seqs.indptr[user_of[held]]]
        a.append(seqs.items[ok - d])
        b.append(seqs.items[ok])
    a, b = np.concatenate(a), np.concatenate(b)
    keep = a != b
    return a[keep], b[keep]


@dataclass
class PairTest:
    kind: str
    queries: np.ndarray  # (Q,) item indices A
    relevant: sp.csr_matrix  # (Q, I) the Bs of each query
    pairs: int  # distinct (A, B) pairs

    def summary(self) -> dict[str, int]:
        return {"queries": int(len(self.queries)), "pairs": self.pairs}


def build_pair_tests(train: Interactions, valid: Interactions, test: Interactions, tags: np.ndarray, *,
                     window: int = 3, similar_jaccard: float = 0.5, min_share: float = 0.01,
                     min_count: int = 5) -> tuple[dict[str, PairTest], np.ndarray]:
    """The complementary and similar tests: B = a ``test`` event, A = one of the ``window`` events before it in
    the user's train + valid + test sequence (see the module docstring). Returns the tests and every item's
    department."""
    if window < 1:
        raise ConfigError(f"window: must be >= 1, got {window}")
    if len(tags) != train.num_items:
        raise DataError(f"{len(tags)} tag lists for {train.num_items} items", field="attributes")
    dept, tokens = departments(tags, min_share)
    if not tokens:
        raise DataError("no top-level category token found in the tags column (tokens opening some items' lists "
                        "and standing later in others')", field="attributes")
    seqs = Sequences.from_interactions(train).extend(valid)
    first = seqs.lengths()  # positions from here on are test events: the Bs
    seqs = seqs.extend(test)
    a, b = heldout_pairs(seqs, first, window)
    tm = tag_matrix(tags)
    inter = np.asarray(tm[a].multiply(tm[b]).sum(1)).ravel()
    union = np.asarray(tm[a].sum(1)).ravel() + np.asarray(tm[b].sum(1)).ravel() - inter
    jac = inter / np.maximum(union, 1)
    known = (dept[a] >= 0) & (dept[b] >= 0)
    masks = {"complementary": known & (dept[a] != dept[b]),
             "similar": known & (dept[a] == dept[b]) & (jac >= similar_jaccard)}
    tests = {kind: _pair_test(kind, a[m], b[m], train.num_items) for kind, m in masks.items()}
    qa, qb = same_attribute_pairs(tags, train.item_counts() >= min_count)
    tests["same_attributes"] = _pair_test("same_attributes", qa, qb, train.num_items)
    return tests, dept


def same_attribute_pairs(tags: np.ndarray, query_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(A, B)``: every two distinct items with the same token set (same brand and category path), A among
    ``query_ok`` (enough training events to have learnt vectors); no interaction enters."""
    keys: dict[tuple[str, ...], int] = {}
    group = np.array([keys.setdefault(tuple(sorted(set(t))), len(keys)) if len(t) else -1 for t in tags])
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, len(g)])
    a, b = [], []
    for s, n in zip(starts[(sizes > 1) & (g[starts] >= 0)], sizes[(sizes > 1) & (g[starts] >= 0)]):
        members = order[s : s + n]
        a.append(np.repeat(members, n))
        b.append(np.tile(members, n))
    if not a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = np.concatenate(a), np.concatenate(b)
    keep = (a != b) & query_ok[a]
    return a[keep], b[keep]


def _pair_test(kind: str, a: np.ndarray, b: np.ndarray, num_items: int) -> PairTest:
    key = np.unique(a.astype(np.int64) * num_items + b)
    qa, qb = key // num_items, key % num_items
    queries, row = np.unique(qa, return_inverse=True)
    rel = sp.csr_matrix((np.ones(len(key), np.float32), (row, qb)), shape=(len(queries), num_items))
    return PairTest(kind, queries, rel, int(len(key)))


def evaluate_pairs(score_rows: Callable[[np.ndarray], np.ndarray], test: PairTest, dept: np.ndarray, *,
                   k: int = 10, candidates: str = "all"):  # noqa: ANN201 - an EvalResult
    """Rank for each query of ``test`` with ``score_rows(items (b,)) -> (b, I)``; per-query metrics at ``k``."""
    if candidates not in CANDIDATES:
        raise ConfigError(f"candidates: expected one of {CANDIDATES}, got {candidates!r}")
    q = test.queries
    self_mask = sp.csr_matrix((np.ones(len(q), np.float32), (np.arange(len(q)), q)), shape=test.relevant.shape)

    def scorer(rows: np.ndarray) -> np.ndarray:
        s = np.asarray(score_rows(q[rows]), dtype=np.float32)
        if candidates == "filtered":
            same = dept[None, :] == dept[q[rows]][:, None]
            s = np.where(~same if test.kind == "complementary" else same, s, -np.inf).astype(np.float32)
        return s

    return evaluate(scorer, test.relevant, self_mask, ks=(k,), metrics=METRIC_NAMES)


def other_department_share(topk: np.ndarray, queries: np.ndarray, dept: np.ndarray) -> float:
    """Share of the ranked items ``topk (Q, K)`` (-1: empty) outside their query's department."""
    ok = topk >= 0
    return float((dept[np.where(ok, topk, 0)] != dept[queries][:, None])[ok].mean()) if ok.any() else float("nan")


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """95% bootstrap interval of ``mean(b - a)`` over paired values (queries resampled with replacement)."""
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(samples, len(d)))].mean(1) if len(d) else np.zeros(1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return {"diff": float(d.mean()) if len(d) else float("nan"), "ci95_low": float(lo), "ci95_high": float(hi),
            "p_boot_le0": float((means <= 0).mean())}


def item_scorers(model: Any, train: Interactions) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The scores compared: ``dual`` (in . out, the model's ``complement_rows``), ``single`` (cosine of input
    vectors, the model's similar items), their other forms (``dual_cosine``, ``single_dot``) and ``pop``."""
    if not hasattr(model, "item_vectors"):
        raise ConfigError(f"the run's model {model.name!r} has no input/output item vectors: fit `sgns`")
    inp, out = model.item_vectors("input"), model.item_vectors("output")

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    ni, no = unit(inp), unit(out)
    pop = train.item_counts().astype(np.float32)
    return {"dual": model.complement_rows,
            "single": lambda q: ni[q] @ ni.T,
            "dual_cosine": lambda q: ni[q] @ no.T,
            "single_dot": lambda q: inp[q] @ inp.T,
            "pop": lambda q: np.broadcast_to(pop, (len(q), len(pop)))}


def compare(model: Any, train: Interactions, valid: Interactions, test: Interactions, tags: np.ndarray, *, window: int = 3, k: int = 10,
            similar_jaccard: float = 0.5) -> dict[str, Any]:
    """Every score of :func:`item_scorers` on both tests and both candidate sets, and dual vs single per query."""
    start = time.perf_counter()
    tests, dept = build_pair_tests(train, valid, test, tags, window=window, similar_jaccard=similar_jaccard)
    scorers = item_scorers(model, train)
    out: dict[str, Any] = {"protocol": {"window": window, "k": k, "similar_jaccard": similar_jaccard,
                                        "b_positions": "test events",
                                        "departments": int(dept.max() + 1)},
                           "tests": {kind: t.summary() for kind, t in tests.items()}, "results": {}}
    for kind, test in tests.items():
        for cand in CANDIDATES:
            runs = {name: evaluate_pairs(fn, test, dept, k=k, candidates=cand) for name, fn in scorers.items()}
            rows = {name: {**{m: float(r.summary[f"{m}@{k}"]) for m in METRIC_NAMES},
                           "other_department": other_department_share(r.topk, test.queries[r.users], dept)}
                    for name, r in runs.items()}
            a, b = runs["single"], runs["dual"]
            tests_ = {}
            for m in ("ndcg", "recall"):
                key = f"{m}@{k}"
                tests_[key] = {**paired_test(a.users, a.per_user[key], b.users, b.per_user[key]),
                               **{f"boot_{n}": v for n, v in paired_bootstrap(a.per_user[key], b.per_user[key])
                                  .items()}}
            out["results"][f"{kind}/{cand}"] = {"scores": rows, "dual_minus_single": tests_}
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out
