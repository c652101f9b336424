"""The query-aware recommendation task: (user, query, held-out items) triples and their evaluation.

A test triple is a user, a query naming one category of one of the user's held-out items (ml-100k: a genre;
scientific: the department of the item's category path) and, as targets, every held-out item of that user in
that category. Each row of the evaluation is one (user, query) pair; the user's training (and, on test,
validation) items are excluded. Methods compared (:func:`evaluate_queries`):

* ``query``: the query-aware user vector (:class:`~recembed.models.content.queryue.QueryUE`);
* ``no_query``: the same model's neutral-query user vector;
* ``text``: text-only retrieval, the query's MiniLM vector against the items' MiniLM vectors (needs a model
  fitted with ``item_content="text"``, so both live in the same space);
* ``no_query+filter`` (oracle-ish): the unconditioned list restricted to the items labelled with the query's
  category, i.e. it reads the very labels the triples are built from;
* optional CF baselines (any fitted model, e.g. EASE), plain and filtered the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..data.interactions import Interactions
from ..evaluation.ranking import evaluate

# The departments (second level of the category path) of Amazon Industrial & Scientific in the scientific data
SCIENTIFIC_DEPARTMENTS = (
    "Additive Manufacturing Products", "Test, Measure & Inspect", "Tapes, Adhesives & Sealants",
    "Industrial Electrical", "Janitorial & Sanitation Supplies", "Lab & Scientific Products",
    "Hydraulics, Pneumatics & Plumbing", "Professional Medical Supplies", "Material Handling Products",
    "Abrasive & Finishing Products", "Industrial Hardware", "Cutting Tools", "Fasteners",
    "Professional Dental Supplies", "Occupational Health & Safety Products", "Packaging & Shipping Supplies",
    "Power Transmission Products", "Science Education", "Food Service Equipment & Supplies",
    "Industrial Power & Hand Tools", "Raw Materials", "Filtration", "Retail Store Fixtures & Equipment", "Robotics",
)
_ROOT = "Industrial & Scientific"


def scientific_departments(texts: np.ndarray) -> np.ndarray:
    """Object array of 1-tuples (or ``()``): the department named in each item text's category sentence
    (``"<title>. Industrial & Scientific <path>. <brand>."``), the longest matching name."""
    out = np.empty(len(texts), dtype=object)
    by_length = sorted(SCIENTIFIC_DEPARTMENTS, key=len, reverse=True)
    for i, text in enumerate(texts):  # 1,585 catalog rows, not interactions
        found: tuple[str, ...] = ()
        for part in str(text or "").split(". "):
            if part.startswith(_ROOT):
                path = part[len(_ROOT):].strip()
                found = next(((d,) for d in by_length if path.startswith(d)), ())
                break
        out[i] = found
    return out


def add_departments(dataset: Any, column: str = "department") -> None:
    """Add the scientific items' department as a tags column (the queries of this task)."""
    table = dataset.item_table
    if column not in table.names():
        table.add(column, scientific_departments(table["text"]), "tags")


@dataclass
class QueryTriples:
    users: np.ndarray  # (P,) user index of each (user, query) row
    qid: np.ndarray  # (P,) query index into ``texts``
    texts: list[str]  # (Q,) query texts
    target: sp.csr_matrix  # (P, I) held-out items of the user in the query's category
    exclude: sp.csr_matrix  # (P, I) the user's known items

    def __len__(self) -> int:
        return len(self.users)


def query_triples(held_out: Interactions, known: sp.csr_matrix, item_query: sp.csr_matrix, texts: list[str]
                  ) -> QueryTriples:
    """Rows (user, query) for every category of every held-out item; ``known``: the items to exclude."""
    r = held_out.csr("binary")
    coo = r.tocoo()
    # (held-out pair, category) expansion: sparse product of the pair one-hots with item x query
    pairs = sp.csr_matrix((np.ones(coo.nnz, dtype=np.float32), (np.arange(coo.nnz), coo.col)),
                          shape=(coo.nnz, r.shape[1]))
    pq = (pairs @ item_query).tocoo()  # (pair, query)
    users, items, qid = coo.row[pq.row], coo.col[pq.row], pq.col
    key = users.astype(np.int64) * max(len(texts), 1) + qid
    uniq, row = np.unique(key, return_inverse=True)
    target = sp.csr_matrix((np.ones(len(items), dtype=np.float32), (row, items)), shape=(len(uniq), r.shape[1]))
    target.data[:] = 1.0
    u = (uniq // max(len(texts), 1)).astype(np.int64)
    return QueryTriples(u, (uniq % max(len(texts), 1)).astype(np.int64), texts, target,
                        sp.csr_matrix(known)[u])


def _filter_mask(item_query: sp.csr_matrix, qid: np.ndarray) -> np.ndarray:
    """``(B, I)`` 0 where the item carries the row's category, -inf elsewhere."""
    on = item_query.T.tocsr()[qid].toarray() > 0
    return np.where(on, 0.0, -np.inf).astype(np.float32)


def evaluate_queries(model: Any, triples: QueryTriples, item_query: sp.csr_matrix, *, ks=(10,),
                     baselines: dict[str, Any] | None = None, text: bool = True) -> dict[str, dict[str, float]]:
    """recall / ndcg at ``ks`` of each method over the (user, query) rows (see the module docstring)."""
    rows = np.arange(len(triples))
    queries = [triples.texts[q] for q in triples.qid]

    def run(scorer: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
        res = evaluate(scorer, triples.target, triples.exclude, ks=ks, metrics=("recall", "ndcg"), users=rows)
        return {k: round(float(v), 4) for k, v in res.summary.items() if k.split("@")[0] in ("recall", "ndcg")}

    out = {"query": run(lambda b: model.score_query(triples.users[b], [queries[i] for i in b])),
           "no_query": run(lambda b: model.score(triples.users[b]))}
    qvec = model.query_vectors(triples.texts)[0] if text else None
    if qvec is not None and qvec.shape[1] == model.content_.shape[1]:  # query and item text in one space
        out["text"] = run(lambda b: (qvec[triples.qid[b]] @ model.content_.T).astype(np.float32))
    out["no_query+filter (oracle-ish)"] = run(
        lambda b: model.score(triples.users[b]) + _filter_mask(item_query, triples.qid[b]))
    for name, other in (baselines or {}).items():
        out[name] = run(lambda b, m=other: np.asarray(m.score(triples.users[b]), dtype=np.float32))
        out[f"{name}+filter (oracle-ish)"] = run(
            lambda b, m=other: np.asarray(m.score(triples.users[b]), dtype=np.float32)
            + _filter_mask(item_query, triples.qid[b]))
    return out
