"""Complementary items from dual embeddings (SGNS in . out) vs similar items (in . in); the test builder; the
``recembed complements`` command and ``GET /v1/items/{id}/complements``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from recembed.data.readers.formats import _sequence_dataset
from recembed.errors import ConfigError
from recembed.models.registry import model_class
from recembed.tasks.complements import build_pair_tests, departments, evaluate_pairs, paired_bootstrap
from test_sequential import QUIET, SequentialConformance
from test_sessions import run_main

GROUPS, SIZE = 8, 6
FAST: dict[str, Any] = {"epochs": 30, "patience": 0, "batch_size": 256, "learning_rate": 0.02, "embedding_dim": 16,
                        "min_steps": 0}


def chain_sequences(seed: int = 0, users: int = 300, length: int = 10) -> list[list[int]]:
    """Items ``g * SIZE + r`` in GROUPS groups; each next item is a random item of the NEXT group: an item's
    complements are the next group (never its own), its substitutes its own group (they share what follows)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(users):
        g = int(rng.integers(GROUPS))
        seq = []
        for _ in range(length):
            seq.append(g * SIZE + int(rng.integers(SIZE)))
            g = (g + 1) % GROUPS
        out.append(seq)
    return out


def chain_dataset(seed: int = 0):  # noqa: ANN201
    seqs = chain_sequences(seed)
    ds = _sequence_dataset("chain", [f"u{u}" for u in range(len(seqs))], [[str(i) for i in s] for s in seqs])
    return ds, np.array([int(i) for i in ds.items.ids])


@pytest.fixture(scope="module")
def chain_model():  # noqa: ANN201
    ds, ext = chain_dataset()
    model = model_class("sgns")(window=1, **FAST).fit(ds.given_split.train, options=QUIET)
    return model, ext


def _top_groups(rows_fn, ext: np.ndarray, k: int = 5) -> tuple[float, float]:  # noqa: ANN001
    """Share of each query's top-k in the query's next group, and in its own group."""
    group = ext // SIZE
    scores = rows_fn(np.arange(len(ext))).astype(np.float64)
    scores[np.arange(len(ext)), np.arange(len(ext))] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :k]
    nxt = (group[top] == ((group + 1) % GROUPS)[:, None]).mean()
    own = (group[top] == group[:, None]).mean()
    return float(nxt), float(own)


def test_dual_score_finds_complements_that_the_single_score_cannot(chain_model) -> None:  # noqa: ANN001
    model, ext = chain_model
    inp = model.item_vectors("input")
    unit = inp / np.linalg.norm(inp, axis=1, keepdims=True)
    dual_next, dual_own = _top_groups(model.complement_rows, ext)
    single_next, single_own = _top_groups(lambda q: unit[q] @ unit.T, ext)
    assert dual_next > 0.9, dual_next  # in . out: what follows the item
    assert single_next < 0.2, single_next  # in . in cannot: the next group shares no context with the item
    assert single_own > 0.9 and dual_own < 0.2, (single_own, dual_own)  # substitutes: in . in only
    # the public helpers agree with the rows
    items, scores = model.complements(0, k=5)
    assert 0 not in items.tolist() and np.all(np.diff(scores) <= 1e-6)
    sim, _ = model.similar(0, k=5)
    np.testing.assert_array_equal(sim, model.similar_items(0, k=5)[0])
    assert model.item_vectors("output").shape == inp.shape
    with pytest.raises(ConfigError, match="kind"):
        model.item_vectors("middle")


def test_sgns_next_item_beats_popularity_on_the_chain(chain_model) -> None:  # noqa: ANN001
    from recembed.runs import evaluate_split

    ds, _ = chain_dataset()
    model, _ = chain_model
    model.with_inference(history=1)  # the chain's next item depends on the last item only
    pop = model_class("pop")().fit(ds.given_split.train)
    ours, base = (evaluate_split(m, ds.given_split, "test", ks=(10,)).summary["ndcg@10"] for m in (model, pop))
    assert ours > 3 * base, (ours, base)


def test_bad_sgns_settings_name_the_key() -> None:
    for key, value in (("window", 0), ("direction", "sideways"), ("num_negatives", 0), ("history", 0)):
        with pytest.raises(ConfigError, match=key):
            model_class("sgns")(**{key: value})


class TestSGNS(SequentialConformance):
    model_name = "sgns"
    params: ClassVar[dict[str, Any]] = {"epochs": 25, "patience": 0, "batch_size": 512, "learning_rate": 0.01,
                                        "embedding_dim": 32, "history": 1}


# -- the test builder on a tiny log ------------------------------------------------------------------
TAGS = np.empty(6, dtype=object)
TAGS[:] = [("b1", "D1", "s1"), ("D1", "s1"), ("b2", "D2", "s2"), ("D2", "s2"), ("b1", "D1", "s1"), ("D1", "s3")]


def tiny_split():  # noqa: ANN201
    seqs = {"u0": ["i0", "i1", "i2", "i5"], "u1": ["i1", "i3", "i0", "i4"]}
    ds = _sequence_dataset("tiny", list(seqs), list(seqs.values()))
    order = [int(i[1:]) for i in ds.items.ids]
    return ds.given_split, TAGS[order], ds.items


def test_departments_are_the_top_level_tokens() -> None:
    dept, tokens = departments(TAGS)
    assert tokens == ["D1", "D2"]  # b1 only opens lists (a brand), s1 never does (a sub-category)
    assert dept.tolist() == [0, 0, 1, 1, 0, 0]


@pytest.mark.parametrize("window, want_comp, want_sim", [
    (1, {("i2", "i5")}, {("i0", "i4")}),
    (2, {("i2", "i5"), ("i3", "i4")}, {("i0", "i4")}),  # i1 -> i5: same department, Jaccard 1/3: neither
])
def test_pairs_come_from_test_events_only(window: int, want_comp: set, want_sim: set) -> None:
    split, tags, items = tiny_split()
    tests, _ = build_pair_tests(split.train, split.valid, split.test, tags, window=window, min_count=1)

    def pairs(t) -> set:  # noqa: ANN001
        rows, cols = t.relevant.nonzero()
        return set(zip(items.lookup(t.queries[rows]), items.lookup(cols)))

    assert pairs(tests["complementary"]) == want_comp
    assert pairs(tests["similar"]) == want_sim
    assert pairs(tests["same_attributes"]) == {("i0", "i4")}  # i4 has no training event: never a query
    with pytest.raises(ConfigError, match="window"):
        build_pair_tests(split.train, split.valid, split.test, tags, window=0)


def test_pair_metrics_and_the_paired_bootstrap() -> None:
    split, tags, _ = tiny_split()
    tests, dept = build_pair_tests(split.train, split.valid, split.test, tags, window=2, min_count=1)
    t = tests["complementary"]
    oracle = evaluate_pairs(lambda q: t.relevant[np.searchsorted(t.queries, q)].toarray(), t, dept, k=1)
    assert oracle.summary["hit@1"] == 1.0
    wrong = evaluate_pairs(lambda q: -t.relevant[np.searchsorted(t.queries, q)].toarray(), t, dept, k=1,
                           candidates="filtered")
    assert wrong.summary["hit@1"] == 0.0
    b = paired_bootstrap(np.zeros(50), np.ones(50))
    assert b["diff"] == 1.0 and b["ci95_low"] == 1.0 and b["p_boot_le0"] == 0.0


# -- the CLI and the service on a planted amazon-seq folder --------------------------------------------
def write_seq_root(root: Path) -> Path:
    """An ``amazon-seq`` folder: the chain log; tags: brand b{g} (absent on each group's first item), department
    d{g // 2}, sub-category s{g}."""
    folder = root / "amazon-seq"
    folder.mkdir(parents=True)
    seqs = chain_sequences(1, users=200)
    (folder / "Beauty.txt").write_text("".join(f"{u + 1} " + " ".join(str(i + 1) for i in s) + "\n"
                                               for u, s in enumerate(seqs)))
    attrs = {str(i + 1): ([] if i % SIZE == 0 else [f"b{i // SIZE}"]) + [f"d{i // SIZE // 2}", f"s{i // SIZE}"]
             for i in range(GROUPS * SIZE)}
    (folder / "Beauty_item2attributes.json").write_text(json.dumps(attrs))
    return root


def test_cli_and_complements_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from fastapi.testclient import TestClient
    from recembed.serve.app import AppConfig, create_app

    root = write_seq_root(tmp_path / "data")
    run = tmp_path / "run"
    sets = [a for k, v in {**FAST, "window": 1}.items() for a in ("--set", f"{k}={v}")]
    code, text = run_main(["fit", "sgns", "--data", "amazon-seq", "--data-root", str(root), "--out", str(run),
                           "--threads", "1", *sets], capsys)
    assert code == 0, text
    code, text = run_main(["complements", str(run), "--window", "1", "--out", str(tmp_path / "c")], capsys)
    assert code == 0, text
    report = json.loads((tmp_path / "c" / "complements.json").read_text())
    comp = report["results"]["complementary/all"]
    assert report["tests"]["complementary"]["queries"] > 0
    assert comp["scores"]["dual"]["hit"] > comp["scores"]["single"]["hit"] + 0.3, comp["scores"]
    assert comp["dual_minus_single"]["ndcg@10"]["p_wilcoxon"] < 0.01
    pop_run = tmp_path / "pop"
    assert run_main(["fit", "pop", "--data", "amazon-seq", "--data-root", str(root), "--out", str(pop_run)],
                    capsys)[0] == 0
    code, text = run_main(["complements", str(pop_run)], capsys)
    assert code == 2 and "sgns" in text, text
    for name, r in (("sgns", run), ("pop", pop_run)):
        assert run_main(["bundle", str(r), "--out", str(tmp_path / f"b-{name}")], capsys)[0] == 0
    with TestClient(create_app(AppConfig(bundle=str(tmp_path / "b-sgns")))) as client:
        r = client.get("/v1/items/1/complements", params={"k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["count"] == 5 and body["item_id"] == "1"
        groups = [(int(it["item_id"]) - 1) // SIZE for it in body["items"]]
        assert sum(g == 1 for g in groups) >= 4, groups  # item 1 is in group 0: its complements follow, group 1
        similar = client.get("/v1/items/1/similar", params={"k": 5}).json()["items"]
        assert sum((int(it["item_id"]) - 1) // SIZE == 0 for it in similar) >= 4, similar
        assert client.get("/v1/items/nope/complements").status_code == 404
        assert client.get("/v1/items/1/complements", params={"k": 0}).status_code == 422
    with TestClient(create_app(AppConfig(bundle=str(tmp_path / "b-pop")))) as client:
        r = client.get("/v1/items/1/complements")
        assert r.status_code == 409 and "no complementary" in r.json()["detail"], r.text
