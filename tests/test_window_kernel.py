"""Windowed aggregations against the brute-force oracle (tests/oracles.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asof_stream.aggregations import window as window_mod
from asof_stream.aggregations.bounds import window_bounds
from asof_stream.aggregations.window import aggregate
from asof_stream.kernels.asof_kernel import encode_entities
from tests.oracles import Row, aggregate_oracle, window_rows

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
ANCHORS = [0, -1_000_000, -62135596800_000000, 253402300799_999999, I64_MIN + 6, I64_MAX - 6]
ENTITIES = ["a", "b", "c"]
WINDOWS = st.sampled_from([None, 0, 1, 2, 3, 5, 2**62, I64_MAX])
TINY = 5e-324

SMALL_INT = st.integers(-1000, 1000)
BIG_INT = st.integers(-(2**62), 2**62)
FLOAT_SUM = st.one_of(
    st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False),
    st.floats(-1e-300, 1e-300, allow_nan=False),
    st.sampled_from([1.0, -1.0, 1e16, -1e16, 0.1, 3.0, 1e-16]),
)
FLOAT_STD = st.one_of(
    st.floats(-1e100, 1e100, allow_nan=False, allow_infinity=False),
    st.sampled_from([1e8, 1e8 + 1, 1e8 - 2, 0.5, -3.25, 1e-80]),
)
KINDS = {
    "small_int": st.one_of(st.none(), SMALL_INT),
    "big_int": st.one_of(st.none(), BIG_INT),
    "float_sum": st.one_of(st.none(), FLOAT_SUM),
    "float_std": st.one_of(st.none(), FLOAT_STD),
    "str": st.one_of(st.none(), st.text("xyz", max_size=3)),
    "bool": st.one_of(st.none(), st.booleans()),
}
PA_TYPES = {"small_int": pa.int64(), "big_int": pa.int64(), "float_sum": pa.float64(),
            "float_std": pa.float64(), "str": pa.string(), "bool": pa.bool_()}  # fmt: skip


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    anchors = draw(st.lists(st.sampled_from(ANCHORS), min_size=1, max_size=2, unique=True))

    def stamp() -> int:
        return draw(st.sampled_from(anchors)) + draw(st.integers(-4, 4))

    n = draw(st.integers(0, 30))
    seqs = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    kind = draw(st.sampled_from(sorted(KINDS)))
    raw = []
    for s in seqs:
        ts = stamp()
        ingest = min(max(ts + draw(st.sampled_from([0, 0, 1, 3, -1])), I64_MIN), I64_MAX)
        raw.append((Row(draw(st.sampled_from(ENTITIES)), ts, s, ingest), draw(KINDS[kind])))
    raw.sort(key=lambda rv: (rv[0].entity, rv[0].ts, rv[0].seq))
    labels = []
    for _ in range(draw(st.integers(0, 20))):
        t = min(max(stamp() + draw(st.integers(-3, 3)), I64_MIN), I64_MAX)
        labels.append((draw(st.sampled_from([*ENTITIES, "absent"])), t))
    return {
        "rows": [r for r, _ in raw],
        "values": [v for _, v in raw],
        "kind": kind,
        "labels": labels,
        "window": draw(WINDOWS),
        "strict": draw(st.booleans()),
        "as_known_at": draw(st.booleans()),
    }


def funcs_for(kind: str) -> list[str]:
    if kind in ("str",):
        return ["count", "last"]
    if kind == "bool":
        return ["count", "last", "min", "max"]
    funcs = ["count", "sum", "mean", "min", "max", "last"]
    return funcs if kind == "float_sum" else [*funcs, "stddev"]  # stddev: |x| < 1e150 (x*x is exact)


def check_float(func: str, got: float | None, want: Any, xs: list[float]) -> None:
    if want is None:
        assert got is None
        return
    assert got is not None
    mag = math.fsum(abs(x) for x in xs)
    if func == "sum":
        assert abs(got - want) <= 1e-15 * abs(want) + 1e-28 * mag + TINY, (got, want)
    elif func == "mean":
        assert abs(got - want) <= 1e-15 * abs(want) + 1e-28 * mag / len(xs) + TINY, (got, want)
    else:  # stddev: see aggregations.window for the bound
        assert abs(got - want) <= 1e-12 * want + 1e-14 * max(abs(x) for x in xs) + TINY, (got, want)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), short=st.sampled_from([0, 2, 16]))
def test_window_aggregations_match_oracle(case: dict[str, Any], short: int) -> None:
    """``short``: windows up to that many rows are summed directly, the rest through the tree."""
    saved, window_mod.SHORT = window_mod.SHORT, short
    try:
        check_case(case)
    finally:
        window_mod.SHORT = saved


def check_case(case: dict[str, Any]) -> None:
    rows, values, labels = case["rows"], case["values"], case["labels"]
    kw = {"window": case["window"], "strict": case["strict"], "as_known_at": case["as_known_at"]}
    row_codes, label_codes = encode_entities(
        pa.array([r.entity for r in rows], pa.string()), pa.array([e for e, _ in labels], pa.string())
    )
    w = window_bounds(
        row_codes,
        np.array([r.ts for r in rows], np.int64),
        np.array([r.seq for r in rows], np.int64),
        label_codes,
        np.array([t for _, t in labels], np.int64),
        window_us=case["window"],
        strict=case["strict"],
        row_ingest=np.array([r.ingest for r in rows], np.int64),
        as_known_at=case["as_known_at"],
    )
    in_window = [window_rows(rows, e, t, **kw) for e, t in labels]
    assert aggregate(w, "count").to_pylist() == [len(ix) for ix in in_window]
    arr = pa.array(values, PA_TYPES[case["kind"]])
    for func in funcs_for(case["kind"]):
        want = [aggregate_oracle(func, rows, ix, values) for ix in in_window]
        if func == "sum" and case["kind"] == "float_sum":
            want = [0.0 if not [values[i] for i in ix if values[i] is not None] else x
                    for x, ix in zip(want, in_window, strict=True)]  # fmt: skip
        if func == "sum" and "int" in case["kind"] and any(not I64_MIN <= x <= I64_MAX for x in want):
            with pytest.raises(OverflowError, match="int64"):
                aggregate(w, "sum", arr)
            continue
        got = aggregate(w, func, arr).to_pylist()
        if func in ("mean", "stddev") or (func == "sum" and "float" in case["kind"]):
            for g, x, ix in zip(got, want, in_window, strict=True):
                check_float(func, g, x, [values[i] for i in ix if values[i] is not None])
        else:
            assert got == want, func
            if func == "sum":
                assert all(type(g) is type(x) for g, x in zip(got, want, strict=True))


def test_window_edges_exact_values() -> None:
    # a: ts 0, 7, 7(seq 5, known late at 20), 14; window 7 at t=14 holds (7, 14]
    ts = np.array([0, 7, 7, 14], np.int64)
    seq = np.array([1, 2, 5, 9], np.int64)
    ingest = np.array([0, 7, 20, 14], np.int64)
    vals = pa.array([1.0, 2.0, None, 4.0])
    codes = np.zeros(4, np.int64)
    lab_c = np.array([0, 0, 0, -1], np.int64)
    lab_t = np.array([14, 7, 6, 14], np.int64)

    def agg(func: str, window: int | None = 7, **kw: Any) -> list[Any]:
        w = window_bounds(codes, ts, seq, lab_c, lab_t, window_us=window, row_ingest=ingest, **kw)
        return aggregate(w, "count" if func == "rows" else func, None if func == "rows" else vals).to_pylist()  # type: ignore[arg-type]

    assert agg("rows") == [1, 2, 1, 0]  # t=7, w=7: (0, 7] excludes the row at 0
    assert agg("rows", strict=True) == [0, 0, 1, 0]  # (7, 14) and (0, 7) are empty
    assert agg("count") == [1, 1, 1, 0]  # the null does not count
    assert agg("sum") == [4.0, 2.0, 1.0, 0.0]
    assert agg("last", window=None) == [4.0, 2.0, 1.0, None]
    assert agg("rows", window=None, as_known_at=True) == [3, 2, 1, 0]  # seq 5 known only at 20
    assert agg("mean", window=None) == [7.0 / 3, 1.5, 1.0, None]
    assert agg("stddev", window=None, as_known_at=True) == [pytest.approx(math.sqrt(14 / 9)), 0.5, 0.0, None]
    assert agg("max", window=0) == [None, None, None, None]


@pytest.fixture(params=[16, 0], ids=["short-direct", "all-tree"])
def short(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(window_mod, "SHORT", request.param)


@pytest.mark.usefixtures("short")
def test_fsum_trap() -> None:
    """Prefix-sum differencing loses these; the double-double tree does not."""
    x = np.array([1e16, 1.0, -1e16, 3.0, 1e-3] * 40, np.float64)
    n = len(x)
    w = window_bounds(np.zeros(n, np.int64), np.arange(n), np.arange(n), np.zeros(n, np.int64),
                      np.arange(n), window_us=5)  # fmt: skip
    got = aggregate(w, "sum", x).to_pylist()
    want = [math.fsum(x[max(0, i - 4) : i + 1]) for i in range(n)]
    assert all(abs(g - f) <= 1e-15 * abs(f) for g, f in zip(got, want, strict=True))
    prefix = np.concatenate([[0.0], np.cumsum(x)])
    naive = [prefix[i + 1] - prefix[max(0, i - 4)] for i in range(n)]
    assert not all(abs(g - f) <= 1e-15 * abs(f) for g, f in zip(naive, want, strict=True))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from(ANCHORS), st.integers(-6, 6)),
                min_size=1, max_size=30),
       st.lists(st.tuples(st.integers(0, 8), st.one_of(st.sampled_from([I64_MIN, I64_MAX]),
                                                       st.integers(I64_MIN, I64_MAX)),
                          st.booleans()), min_size=1, max_size=20))
def test_window_keys_order_like_composite_keys(rows: list[tuple[int, int, int]],
                                               probes: list[tuple[int, int, bool]]) -> None:
    """The windows' own row and probe keys put every probe after the same rows as
    kernels.sortkeys.composite_keys does (its fast path and its fallback)."""
    from asof_stream.aggregations.bounds import _keys
    from asof_stream.kernels.sortkeys import composite_keys

    rows.sort(key=lambda r: (r[0], r[1] + r[2]))
    codes = np.array([r[0] for r in rows], np.int64)
    ts = np.array([r[1] + r[2] for r in rows], np.int64)
    args = (np.array([p[0] for p in probes], np.int64), np.array([p[1] for p in probes], np.int64),
            np.array([p[2] for p in probes], bool))
    want = composite_keys(codes, ts, *args)
    got = _keys(codes, ts, *args)
    assert (np.searchsorted(want[0], want[1], side="right")
            == np.searchsorted(got[0], got[1], side="right")).all()
