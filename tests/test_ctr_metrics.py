"""Property tests of the ranking stage's metrics and field schema against brute force.

``recembed.ranking.metrics``: AUC equals the pairwise count (ties 1/2), GAUC the impression-weighted mean of
per-user brute-force AUCs over users with both classes, logloss the direct formula, ECE lies in [0, 1] and is 0
when every bin is calibrated. ``recembed.ranking.schema``: OOV / padding indices, statistics from the training
part only, most-recent-``max_len`` sequence padding, ``Ragged.take`` against list slicing, the ``to_dict`` /
``from_dict`` round trip, and errors that name the field."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recembed.errors import DataError
from recembed.ranking.metrics import EPS, auc, ece, gauc, logloss, per_group_auc, reliability
from recembed.ranking.schema import OOV, PAD, Field, Frame, Ragged, Schema

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


# ==============================================================================================
# metrics
# ==============================================================================================
def brute_auc(labels: list[int], scores: list[float]) -> float:
    pos = [s for y, s in zip(labels, scores) if y]
    neg = [s for y, s in zip(labels, scores) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


# scores from a handful of values force ties; floats (incl. 0 and 1) exercise the general case
scores_st = st.one_of(st.integers(0, 4).map(float), st.floats(0.0, 1.0, allow_nan=False))


@st.composite
def labelled(draw, min_size=1, max_size=40):
    n = draw(st.integers(min_size, max_size))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    if draw(st.booleans()):  # many ties
        scores = draw(st.lists(st.integers(0, 3).map(float), min_size=n, max_size=n))
    else:
        scores = draw(st.lists(scores_st, min_size=n, max_size=n))
    return labels, scores


@SETTINGS
@given(labelled())
def test_auc_equals_pairwise_count(data):
    labels, scores = data
    expected = brute_auc(labels, scores)
    got = auc(np.array(labels), np.array(scores))
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-12)


@SETTINGS
@given(labelled(max_size=50), st.integers(1, 6), st.data())
def test_gauc_equals_weighted_mean_of_per_user_auc(data, n_users, draw):
    labels, scores = data
    users = draw.draw(st.lists(st.integers(0, n_users - 1), min_size=len(labels), max_size=len(labels)))
    values, weights = [], []
    for u in sorted(set(users)):
        rows = [i for i, x in enumerate(users) if x == u]
        a = brute_auc([labels[i] for i in rows], [scores[i] for i in rows])
        if not math.isnan(a):  # the user has both a click and a non-click
            values.append(a)
            weights.append(len(rows))
    got, n = gauc(np.array(users), np.array(labels), np.array(scores))
    assert n == len(values)
    if not values:
        assert math.isnan(got)
    else:
        assert got == pytest.approx(sum(v * w for v, w in zip(values, weights)) / sum(weights), abs=1e-12)
    per_user, imp = per_group_auc(np.array(users), np.array(labels), np.array(scores))
    np.testing.assert_allclose(per_user, values, atol=1e-12)
    np.testing.assert_array_equal(imp, weights)


def test_gauc_string_users_and_a_known_value():
    users = np.array(["b", "a", "a", "b", "b", "c"], dtype=object)
    labels = np.array([1, 0, 1, 0, 0, 1])
    scores = np.array([0.2, 0.3, 0.3, 0.1, 0.4, 0.9])
    # a: one tie -> 0.5 (2 rows); b: 0.2 beats 0.1, loses to 0.4 -> 0.5 (3 rows); c: one class only
    assert gauc(users, labels, scores) == (pytest.approx(0.5), 2)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0.0, 1.0, allow_nan=False)), min_size=1, max_size=40))
def test_logloss_equals_direct_formula(rows):
    y = [r[0] for r in rows]
    p = [min(max(r[1], EPS), 1 - EPS) for r in rows]
    expected = -sum(t * math.log(q) + (1 - t) * math.log(1 - q) for t, q in zip(y, p)) / len(rows)
    assert logloss(np.array(y), np.array([r[1] for r in rows])) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0.0, 1.0, allow_nan=False)), min_size=1, max_size=60),
       st.integers(1, 20))
def test_ece_in_unit_interval_and_reliability_counts(rows, bins):
    y, p = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    e = ece(y, p, bins)
    assert 0.0 <= e <= 1.0
    rel = reliability(y, p, bins)
    assert len(rel["count"]) == bins and sum(rel["count"]) == len(rows)


@SETTINGS
@given(st.lists(st.tuples(st.integers(1, 8), st.data()), min_size=1, max_size=8), st.integers(1, 20))
def test_ece_is_zero_when_every_bin_is_calibrated(groups, bins):
    """Groups of ``n`` rows with ``k`` clicks all predicted ``k / n``: whatever bins they share, each bin's mean
    prediction equals its click rate."""
    y, p = [], []
    for n, data in groups:
        k = data.draw(st.integers(0, n))
        y += [1] * k + [0] * (n - k)
        p += [k / n] * n
    assert ece(np.array(y), np.array(p), bins) == pytest.approx(0.0, abs=1e-12)


def test_ece_known_value():
    # one bin [0.9, 1]: predicted 0.9, observed 0.5 -> gap 0.4 over all rows
    assert ece(np.array([1, 0]), np.array([0.9, 0.9])) == pytest.approx(0.4)


# ==============================================================================================
# schema
# ==============================================================================================
tokens_st = st.sampled_from(list("abcdefg"))
token_rows = st.lists(st.lists(tokens_st, max_size=7), min_size=1, max_size=25)


def frame(columns: dict, n: int | None = None) -> Frame:
    n = n if n is not None else len(next(iter(columns.values())))
    return Frame(columns, np.zeros(n, dtype=np.float32), np.arange(n))


def index_of(schema: Schema, table: str, token: str) -> int:
    vocab = schema.vocab[table]
    return vocab.index(token) + 2 if token in vocab else OOV


@SETTINGS
@given(st.lists(tokens_st, min_size=1, max_size=40), st.integers(1, 5),
       st.lists(st.sampled_from(list("abcdefgxyz")), min_size=1, max_size=20))
def test_categorical_oov_below_min_count_and_unseen(train, min_count, other):
    schema = Schema([Field("c", "categorical", min_count=min_count)]).fit(frame({"c": np.array(train, object)}))
    counts = Counter(train)
    assert set(schema.vocab["c"]) == {t for t, c in counts.items() if c >= min_count}
    enc = schema.encode(frame({"c": np.array(other, object)})).arrays["c"]
    for tok, idx in zip(other, enc):
        if counts.get(tok, 0) >= min_count:
            assert idx >= 2 and schema.vocab["c"][idx - 2] == tok
        else:  # under min_count in training, or never seen there ("x", "y", "z")
            assert idx == OOV
    assert schema.cardinality("c") == 2 + len(schema.vocab["c"])


@SETTINGS
@given(token_rows, st.integers(1, 3), st.integers(0, 5))
def test_tags_oov_and_padding(rows, min_count, max_len):
    schema = Schema([Field("t", "tags", min_count=min_count, max_len=max_len)])
    schema.fit(frame({"t": Ragged.from_lists(rows)}))
    width = max_len or max(1, max(len(r) for r in rows))
    assert schema.lengths["t"] == width
    counts = Counter(t for r in rows for t in r)
    test_rows = [r + ["zz"] for r in rows]  # an unseen token at the end of each row
    enc = schema.encode(frame({"t": Ragged.from_lists(test_rows)})).arrays["t"]
    assert enc.shape == (len(rows), width)
    for r, out in zip(test_rows, enc):
        kept = r[:width]  # tags keep a row's first tokens
        expected = [index_of(schema, "t", t) if counts[t] >= min_count else OOV for t in kept]
        assert out.tolist() == expected + [PAD] * (width - len(kept))


@SETTINGS
@given(token_rows, st.integers(1, 5))
def test_sequence_keeps_the_most_recent_max_len_in_order(rows, max_len):
    fields = [Field("item", "categorical"), Field("hist", "sequence", max_len=max_len, vocab_from="item")]
    items = np.array([r[0] if r else "a" for r in rows], object)
    schema = Schema(fields).fit(frame({"item": items, "hist": Ragged.from_lists(rows)}))
    # the shared table counts the target field's and the sequence's training tokens
    assert set(schema.vocab["item"]) == set(items) | {t for r in rows for t in r}
    assert schema.cardinality("hist") == schema.cardinality("item")
    enc = schema.encode(frame({"item": items, "hist": Ragged.from_lists(rows)})).arrays["hist"]
    for r, out in zip(rows, enc):
        recent = r[-max_len:] if r else []
        assert out.tolist() == [index_of(schema, "item", t) for t in recent] + [PAD] * (max_len - len(recent))


@SETTINGS
@given(st.lists(st.lists(st.text("abc", max_size=3), max_size=5), max_size=12), st.data())
def test_ragged_take_equals_list_slicing(rows, data):
    rag = Ragged.from_lists(rows)
    assert len(rag) == len(rows)
    idx = data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=20)) if rows else []
    taken = rag.take(np.array(idx, dtype=np.int64))
    got = [list(taken.values[a:b]) for a, b in zip(taken.offsets[:-1], taken.offsets[1:])]
    assert got == [rows[i] for i in idx]
    assert taken.offsets[0] == 0 and len(taken) == len(idx)


def ctr_fields() -> list[Field]:
    return [Field("u", "categorical", min_count=2), Field("tags", "tags"),
            Field("item", "categorical"), Field("hist", "sequence", max_len=3, vocab_from="item"),
            Field("x", "numeric"), Field("v", "vector")]


@st.composite
def ctr_frames(draw, n_min=1):
    n = draw(st.integers(n_min, 15))
    tok = st.sampled_from(list("abcdefgh"))
    cols = {
        "u": np.array(draw(st.lists(tok, min_size=n, max_size=n)), object),
        "tags": Ragged.from_lists(draw(st.lists(st.lists(tok, max_size=4), min_size=n, max_size=n))),
        "item": np.array(draw(st.lists(tok, min_size=n, max_size=n)), object),
        "hist": Ragged.from_lists(draw(st.lists(st.lists(tok, max_size=6), min_size=n, max_size=n))),
        "x": np.array(draw(st.lists(st.one_of(st.floats(-50, 50), st.just(float("nan"))), min_size=n, max_size=n))),
        "v": np.array(draw(st.lists(st.lists(st.floats(-1, 1), min_size=3, max_size=3), min_size=n, max_size=n)),
                      dtype=np.float32).reshape(n, 3),
    }
    return frame(cols, n)


@SETTINGS
@given(ctr_frames(), ctr_frames(), ctr_frames())
def test_statistics_come_from_the_training_part_only(train, valid, test):
    schema = Schema(ctr_fields()).fit(train)
    before = json.dumps(schema.to_dict(), sort_keys=True)
    for part in (valid, test):
        schema.encode(part)
    assert json.dumps(schema.to_dict(), sort_keys=True) == before  # encoding other parts changes nothing
    # the same training part with any other parts around it fits the same schema
    assert json.dumps(Schema(ctr_fields()).fit(train).to_dict(), sort_keys=True) == before
    train_tokens = {f: set(train.columns[f].values if isinstance(train.columns[f], Ragged) else train.columns[f])
                    for f in ("u", "tags", "item", "hist")}
    assert set(schema.vocab["u"]) <= train_tokens["u"]
    assert set(schema.vocab["item"]) == train_tokens["item"] | train_tokens["hist"]
    x = train.columns["x"][np.isfinite(train.columns["x"])]
    mean, std = schema.stats["x"]
    assert mean == pytest.approx(x.mean() if x.size else 0.0)
    assert std == pytest.approx(x.std() if x.size and x.std() > 0 else 1.0)
    assert schema.dims["v"] == 3
    enc = schema.encode(valid).arrays["x"]
    assert np.isfinite(enc).all()  # missing values -> 0 after standardising


@SETTINGS
@given(ctr_frames(), ctr_frames())
def test_schema_round_trip_encodes_identically(train, other):
    schema = Schema(ctr_fields()).fit(train)
    again = Schema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again.to_dict() == schema.to_dict()
    for part in (train, other):
        a, b = schema.encode(part).arrays, again.encode(part).arrays
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
            assert a[k].dtype == b[k].dtype


@SETTINGS
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=20), st.lists(st.integers(-5, 5), min_size=1, max_size=20))
def test_non_string_tokens_encode_as_their_str(train, other):
    """An integer column encodes as the same column of strings (what ``write_csv`` writes for it)."""
    as_int = Schema([Field("c", "categorical")]).fit(frame({"c": np.array(train)}))
    as_str = Schema([Field("c", "categorical")]).fit(frame({"c": np.array([str(v) for v in train], object)}))
    assert as_int.vocab == as_str.vocab
    np.testing.assert_array_equal(as_int.encode(frame({"c": np.array(other)})).arrays["c"],
                                  as_str.encode(frame({"c": np.array([str(v) for v in other], object)})).arrays["c"])
    mixed = np.array([*train, "a"], dtype=object)  # mixed objects too
    assert "a" in Schema([Field("c", "categorical")]).fit(frame({"c": mixed})).vocab["c"]


# ---- errors name the field --------------------------------------------------------------------------------------
def fitted() -> tuple[Schema, dict]:
    cols = {"u": np.array(["a", "b"], object), "tags": Ragged.from_lists([["x"], ["y", "z"]]),
            "v": np.zeros((2, 4), np.float32)}
    schema = Schema([Field("u", "categorical"), Field("tags", "tags"), Field("v", "vector")]).fit(frame(cols))
    return schema, cols


def raises_naming(field: str, call) -> DataError:  # noqa: ANN001
    with pytest.raises(DataError) as info:
        call()
    assert field in str(info.value) and info.value.field == field
    return info.value


@pytest.mark.parametrize("missing", ["u", "tags", "v"])
def test_missing_column_names_the_field(missing):
    schema, cols = fitted()
    rest = {k: v for k, v in cols.items() if k != missing}
    raises_naming(missing, lambda: schema.encode(frame(rest, 2)))
    fresh = Schema([Field(n, k) for n, k in (("u", "categorical"), ("tags", "tags"), ("v", "vector"))])
    raises_naming(missing, lambda: fresh.fit(frame(rest, 2)))


def test_ragged_field_given_scalars_names_the_field():
    schema, cols = fitted()
    raises_naming("tags", lambda: schema.encode(frame({**cols, "tags": np.array(["x", "y"], object)})))
    raises_naming("tags", lambda: Schema([Field("tags", "sequence")]).fit(frame({"tags": np.array(["x", "y"])})))
    raises_naming("u", lambda: schema.encode(frame({**cols, "u": Ragged.from_lists([["a"], ["b"]])})))


def test_vector_of_the_wrong_width_names_the_field():
    schema, cols = fitted()
    raises_naming("v", lambda: schema.encode(frame({**cols, "v": np.zeros((2, 3), np.float32)})))
    raises_naming("v", lambda: schema.encode(frame({**cols, "v": np.zeros(2, np.float32)})))
    raises_naming("v", lambda: Schema([Field("v", "vector")]).fit(frame({"v": np.zeros(2)})))


def test_bad_field_definitions_name_the_field():
    raises_naming("f", lambda: Field("f", "nope"))
    raises_naming("f", lambda: Field("f", "categorical", min_count=0))
    raises_naming("h", lambda: Schema([Field("n", "numeric"), Field("h", "sequence", vocab_from="n")]))


def test_a_near_zero_std_gives_finite_standardised_values() -> None:
    """Found by hypothesis: a training column with std ~1e-120 made a later value standardise to inf in float32."""
    from recembed.ranking.schema import MAX_STANDARDISED, Field, Frame, Schema

    x = np.array([0.0] * 5 + [5.6e-120])
    train = Frame({"x": x}, np.zeros(6, np.float32), np.arange(6))
    schema = Schema([Field("x", "numeric")]).fit(train)
    enc = schema.encode(Frame({"x": np.array([0.0, 1.0, np.nan, np.inf])}, np.zeros(4, np.float32),
                              np.arange(4))).arrays["x"]
    assert np.isfinite(enc).all() and enc[1] == np.float32(MAX_STANDARDISED) and enc[2] == 0 and enc[3] == 0
