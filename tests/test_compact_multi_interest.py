"""Multi-interest users (recembed.compact.multi_interest, kNN-Embed): a user with a minor interest gets it back in
the merged list where one averaged vector loses it; slots add up to k; ILD and coverage equal brute force;
``recembed multi-interest RUN`` writes its json and bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from test_rankers import run_main

from recembed.compact.multi_interest import KNNEmbedConfig, _slots, knn_embed_top, list_metrics
from recembed.errors import ConfigError
from recembed.ranking.candidates import top_candidates


def _two_interest_world(seed: int = 0, groups: int = 4, subs: int = 6, size: int = 6, users: int = 60):
    """Items in ``groups`` clusters of ``subs`` tight sub-clusters of ``size``; each user trains on 7 items of a
    major group and 3 of one sub-cluster of a minor group, and the test holds that sub-cluster's 3 others; the
    user vector is the mean of the training items (so it leans to the major group)."""
    rng = np.random.default_rng(seed)
    n = groups * subs * size
    group, sub = np.arange(n) // (subs * size), np.arange(n) // size
    offsets = rng.standard_normal((groups * subs, 8)).astype(np.float32)
    items = (np.eye(groups, 8, dtype=np.float32) * 4)[group] + offsets[sub] \
        + 0.1 * rng.standard_normal((n, 8)).astype(np.float32)
    rows, cols, trows, tcols = [], [], [], []
    for u in range(users):
        major, minor = rng.choice(groups, 2, replace=False)
        a = rng.choice(np.flatnonzero(group == major), 7, replace=False)
        b = rng.permutation(np.flatnonzero(sub == minor * subs + rng.integers(subs)))
        rows += [u] * 10
        cols += [*a, *b[:3]]
        trows += [u] * 3
        tcols += list(b[3:])
    shape = (users, n)
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
    test = sp.csr_matrix((np.ones(len(trows), np.float32), (trows, tcols)), shape=shape)
    user_vecs = np.asarray(train @ items) / 10
    return items, user_vecs, train, test, np.eye(groups, dtype=np.float32)[group]


def test_knn_embed_recovers_the_minor_interest_a_single_vector_loses() -> None:
    items, user_vecs, train, test, tags = _two_interest_world()
    users = np.arange(train.shape[0])
    single = top_candidates(user_vecs @ items.T, train, 10)[0]
    multi, info = knn_embed_top(users, user_vecs, items, train, train, 10,
                                KNNEmbedConfig(components=2, clusters=4, neighbours=0, alpha=0.5))
    s, m = list_metrics(single, users, test, tags, items), list_metrics(multi, users, test, tags, items)
    assert m["recall@10"] > s["recall@10"] + 0.3, (s, m)  # the minor group's test items come back
    assert m["ild_tags@10"] > s["ild_tags@10"] and m["tag_coverage@10"] > s["tag_coverage@10"]
    assert info["components"] == 2 and abs(info["mean_top_weight"] - 0.7) < 0.01
    assert (multi >= 0).all() and all(len(set(r)) == 10 for r in multi.tolist())  # full lists, no repeats
    assert not train[users[:, None], multi].toarray().any()  # nothing already seen


@settings(max_examples=50, deadline=None)
@given(m=st.integers(1, 6), k=st.integers(1, 60), seed=st.integers(0, 1000))
def test_slots_add_up_to_k(m: int, k: int, seed: int) -> None:
    w = np.random.default_rng(seed).dirichlet(np.ones(m), size=5)
    slots = _slots(w, k)
    assert (slots.sum(1) == k).all() and (slots >= 0).all()
    if k >= m:
        assert (slots >= 1).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000))
def test_list_metrics_equal_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, n_users, k = 30, 6, 5
    vecs = rng.standard_normal((n_items, 4)).astype(np.float32)
    tags = (rng.random((n_items, 3)) < 0.4).astype(np.float32)
    top = np.array([rng.choice(n_items, k, replace=False) for _ in range(n_users)])
    top[0, -2:] = -1  # empty slots are left out
    test = sp.random(n_users, n_items, density=0.2, format="csr", random_state=seed)
    test.data[:] = 1
    users = np.arange(n_users)
    got = list_metrics(top, users, test, tags, vecs)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    ild, rec = [], []
    for u in users:
        row = [i for i in top[u] if i >= 0]
        pairs = [(a, b) for a in row for b in row if a != b]
        ild.append(np.mean([1 - unit[a] @ unit[b] for a, b in pairs]))
        rel = set(test[u].indices)
        if rel:
            rec.append(len(rel & set(row)) / min(len(rel), k))
    assert np.isclose(got["ild_embedding@5"], np.mean(ild), atol=1e-5)
    assert np.isclose(got["recall@5"], np.mean(rec))
    cover = [len({t for i in top[u] if i >= 0 for t in np.flatnonzero(tags[i])}) for u in users]
    assert np.isclose(got["tag_coverage@5"], np.mean(cover) / max(int(tags.any(0).sum()), 1))


def test_cli_writes_its_json_and_bad_input_exits_2(tmp_path: Path) -> None:
    run = tmp_path / "bpr"
    code, text = run_main(["fit", "bpr", "--data", "synthetic:tiny", "--set", "epochs=3", "--no-progress",
                           "--out", str(run)])
    assert code == 0, text
    code, text = run_main(["multi-interest", str(run), "--components", "2", "--clusters", "4", "--k", "20"])
    assert code == 0, text
    r = json.loads((run / "multi_interest.json").read_text())
    assert set(r["single"]) == set(r["multi"]) and "recall@20" in r["multi"] and r["knn_embed"]["components"] == 2
    code, text = run_main(["multi-interest", str(run), "--components", "8", "--clusters", "4"])
    assert code == 2 and "--components" in text and "Traceback" not in text
    code, text = run_main(["multi-interest", str(run), "--tags", "nope"])
    assert code == 2 and "--tags" in text
    ease = tmp_path / "ease"
    assert run_main(["fit", "ease", "--data", "synthetic:tiny", "--no-progress", "--out", str(ease)])[0] == 0
    code, text = run_main(["multi-interest", str(ease)])
    assert code == 2 and "no user and item vectors" in text
    with pytest.raises(ConfigError, match="--alpha"):
        KNNEmbedConfig(alpha=2.0)
