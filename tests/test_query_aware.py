"""QueryUE (query-aware user embeddings): it learns a planted query-conditional preference that its own
unconditioned vector and text-only retrieval cannot express; the query task's triples; the endpoint; the
conformance suite (with a stub text encoder: no MiniLM in unit tests)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient

from recembed.data.interactions import Interactions
from recembed.data.tables import Table
from recembed.data.vocab import Vocabulary
from recembed.errors import ConfigError, DataError
from recembed.models.content.queryue import QueryUE, item_queries, last_items
from recembed.tasks.query_aware import evaluate_queries, query_triples, scientific_departments
from recembed.testing.conformance import ContentConformance

GROUPS, SUBS, PER_SUB, DIM = 4, 3, 20, 16  # 4 genres x 3 sub-clusters x 20 items


class StubEncoder:
    """Text -> vector without a network: 'group g' is the one-hot of g (the items' genre coordinates), any other
    text a seeded random unit vector."""

    dim = DIM

    def encode(self, texts):  # noqa: ANN001, ANN201
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            if t.startswith("group "):
                out[i, int(t.split()[1])] = 1.0
            else:
                v = np.random.default_rng(sum(map(ord, t))).standard_normal(DIM)
                out[i] = v / np.linalg.norm(v)
        return out


@lru_cache(maxsize=1)
def planted():  # noqa: ANN201
    """Users like two genres and, within each, one sub-cluster; each user holds out one item of each liked
    genre (from the liked sub-cluster). Asked for genre g, the right items are the user's sub-cluster of g:
    the query decides which of the user's two tastes applies."""
    rng = np.random.default_rng(0)
    n_items = GROUPS * SUBS * PER_SUB
    group = np.arange(n_items) // (SUBS * PER_SUB)
    sub = np.arange(n_items) // PER_SUB  # global sub-cluster id
    content = np.zeros((n_items, DIM), dtype=np.float32)
    content[np.arange(n_items), group] = 1.0
    content[np.arange(n_items), GROUPS + sub % SUBS] = 1.0  # the sub-cluster coordinate is shared across genres
    content += 0.1 * rng.standard_normal(content.shape).astype(np.float32)
    train_u, train_i, test_u, test_i = [], [], [], []
    n_users = 300
    for u in range(n_users):  # 300 users, not interactions
        liked = rng.choice(GROUPS, 2, replace=False)
        for g in liked:
            s = g * SUBS + rng.integers(SUBS)
            pool = np.flatnonzero(sub == s)
            picks = rng.choice(pool, 9, replace=False)
            train_u += [u] * 8
            train_i += picks[:8].tolist()
            test_u.append(u)
            test_i.append(int(picks[8]))
    order = rng.permutation(len(train_u))
    train = Interactions(np.asarray(train_u)[order], np.asarray(train_i)[order], n_users, n_items)
    test = Interactions(np.asarray(test_u), np.asarray(test_i), n_users, n_items)
    table = Table(n_items)
    table.add("content", content, "vector")
    genres = np.empty(n_items, dtype=object)
    genres[:] = [(f"group {g}",) for g in group]
    table.add("genres", genres, "tags")
    return train, test, table


PARAMS = {"item_content": "vectors", "embedding_dim": 32, "epochs": 25, "batch_size": 256, "learning_rate": 3e-3,
          "patience": 0, "history_len": 16, "id_embeddings": False}


@lru_cache(maxsize=1)
def fitted() -> QueryUE:
    train, _, table = planted()
    return QueryUE(**PARAMS).fit(train, item_table=table, encoder=StubEncoder())


def test_learns_the_query_conditional_preference_the_unconditioned_vector_cannot() -> None:
    train, test, table = planted()
    model = fitted()
    texts, iq = item_queries(table, "genres")
    triples = query_triples(test, train.csr("binary"), iq, texts)
    assert len(triples) == 600 and triples.target.sum() == 600  # one held-out item per (user, liked genre)
    res = evaluate_queries(model, triples, iq, ks=(10,))
    q, nq, txt = (res[m]["recall@10"] for m in ("query", "no_query", "text"))
    # with the query, the user's sub-cluster of the asked genre (~12 unseen items) fills the top 10; without it
    # two sub-clusters compete; the query text alone knows the genre, not the user's sub-cluster
    assert q > nq + 0.2, res
    assert q > txt + 0.3, res
    assert q >= res["no_query+filter (oracle-ish)"]["recall@10"] - 0.05, res


def test_recommend_with_query_follows_the_query_and_batch_equals_single() -> None:
    _, _, table = planted()
    model = fitted()
    group = np.arange(table.num_rows) // (SUBS * PER_SUB)
    users = np.array([0, 5, 9])
    for g in range(GROUPS):
        items, _ = model.recommend(users, k=10, query=f"group {g}")
        assert items.shape == (3, 10)
        for row, u in enumerate(users):
            single, _ = model.recommend(int(u), k=10, query=f"group {g}")
            np.testing.assert_array_equal(single, items[row])
            assert not set(single.tolist()) & set(model.user_items_[u].indices.tolist())
        assert (group[items] == g).mean() > 0.8  # a query for genre g brings genre g
    plain, _ = model.recommend(users, k=10)
    empty, _ = model.recommend(users, k=10, query="")  # the empty query is the neutral one
    np.testing.assert_array_equal(plain, empty)


def test_select_on_query_validates_on_query_rows() -> None:
    train, held_out, table = planted()
    curves = {}
    for select_on in ("query", "no_query"):
        m = QueryUE(**{**PARAMS, "epochs": 4, "select_on": select_on}).fit(train, valid=held_out, item_table=table,
                                                                           encoder=StubEncoder())
        curves[select_on] = [h["valid_ndcg@10"] for h in m.history_]
    # the same training (same seed): only what validation measures differs; asked the genre, the held-out item of
    # that genre ranks far higher than among both tastes
    assert len(curves["query"]) == 4 and curves["query"][-1] > 1.5 * curves["no_query"][-1], curves


def test_save_load_keeps_the_query_path(tmp_path: Path) -> None:
    model = fitted()
    model.save(tmp_path / "m")
    loaded = QueryUE.load(tmp_path / "m")
    assert loaded.query_texts_ == model.query_texts_
    np.testing.assert_allclose(loaded.score_query(np.arange(5), "group 2"), model.score_query(np.arange(5), "group 2"),
                               rtol=1e-5, atol=1e-6)


def test_bad_input_names_the_field() -> None:
    train, _, table = planted()
    with pytest.raises(ConfigError, match="query_column"):
        QueryUE(**{**PARAMS, "query_column": "content", "epochs": 1}).fit(train, item_table=table,
                                                                          encoder=StubEncoder())
    with pytest.raises(ConfigError, match="null_query_rate"):
        QueryUE(null_query_rate=1.5)
    with pytest.raises(DataError, match="queries for"):
        fitted().recommend(np.array([0, 1]), query=["group 0"])


def test_last_items_keeps_the_most_recent_in_order() -> None:
    indptr, items = np.array([0, 3, 3, 8]), np.array([1, 2, 3, 4, 5, 6, 7, 8])
    out = last_items(indptr, items, 4)
    np.testing.assert_array_equal(out, [[-1, 1, 2, 3], [-1, -1, -1, -1], [5, 6, 7, 8]])


def test_scientific_departments_parse_the_category_sentence() -> None:
    texts = np.array(["Gorilla Glue, 8 ounce. Industrial & Scientific Tapes, Adhesives & Sealants Urethane "
                      "Adhesives. Gorilla. ", "A thing. Industrial & Scientific Industrial Electrical Wiring. X. ",
                      "no category here"], dtype=object)
    assert list(scientific_departments(texts)) == [("Tapes, Adhesives & Sealants",), ("Industrial Electrical",), ()]


# -- the endpoint ------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def query_bundle() -> Path:
    import tempfile

    from recembed.serve.bundle import write_bundle

    train, test, _ = planted()
    model = fitted()
    out = Path(tempfile.mkdtemp(prefix="queryue-bundle-")) / "b"
    indptr, hist = train.histories()
    write_bundle(out, model=model, users=Vocabulary([f"u{i}" for i in range(train.num_users)], name="user"),
                 items=Vocabulary([f"i{i}" for i in range(train.num_items)]), history_indptr=indptr,
                 history_items=hist, titles=[f"item {i}" for i in range(train.num_items)])
    return out


def test_post_user_recommendations_with_a_query() -> None:
    from test_serve_support import bundle_of

    from recembed.serve.app import AppConfig, create_app

    model = fitted()
    with TestClient(create_app(AppConfig(bundle=str(query_bundle())))) as client:
        r = client.post("/v1/users/u5/recommendations", json={"query": "group 1", "k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["user_id"] == "u5" and body["query"] == "group 1" and body["count"] == 5
        ref, _ = model.recommend(5, k=5, query="group 1")
        assert [it["item_id"] for it in body["items"]] == [f"i{i}" for i in ref]
        plain = client.post("/v1/users/u5/recommendations", json={"k": 5}).json()
        ref_plain, _ = model.recommend(5, k=5)
        assert [it["item_id"] for it in plain["items"]] == [f"i{i}" for i in ref_plain]
        bad = client.post("/v1/users/u5/recommendations", json={"query": "group 1", "qurey": "x"})
        assert bad.status_code == 422 and "qurey" in bad.text
        assert client.post("/v1/users/u5/recommendations", json={"query": "group 1", "k": 0}).status_code == 422
        missing = client.post("/v1/users/nobody/recommendations", json={"query": "group 1"})
        assert missing.status_code == 404 and "nobody" in missing.text
        assert client.get("/v1/users/u5/recommendations", params={"k": 3}).status_code == 200  # GET unchanged
    with TestClient(create_app(AppConfig(bundle=str(bundle_of("bpr", "hnsw"))))) as client:
        r = client.post("/v1/users/u3/recommendations", json={"query": "science fiction"})
        assert r.status_code == 422 and "query" in r.json()["detail"] and "bpr" in r.json()["detail"], r.text


# -- the conformance suite (registered models must pass it) --------------------------------------------
class TestQueryUE(ContentConformance):
    model_name = "queryue"
    params = {"item_content": "vectors", "epochs": 15, "batch_size": 512, "learning_rate": 3e-3, "patience": 0}

    @classmethod
    def fit_context(cls):  # noqa: ANN206
        return {**super().fit_context(), "encoder": StubEncoder()}


def test_item_queries_from_a_categorical_column() -> None:
    table = Table(3)
    table.add("cat", np.array(["a", "b", "a"], dtype=object), "categorical")
    texts, m = item_queries(table, "", "about {}")
    assert texts == ["about a", "about b"]
    np.testing.assert_array_equal(m.toarray(), [[1, 0], [0, 1], [1, 0]])
    assert sp.issparse(m)
