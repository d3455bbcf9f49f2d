"""The vectorized as-of kernel against the brute-force oracle (tests/oracles.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asof_stream.kernels.asof_kernel import asof_indices, encode_entities, pick_latest
from asof_stream.kernels.sortkeys import sorted_unique
from tests.oracles import Row, asof_oracle

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
YEAR1 = -62135596800_000000  # 0001-01-01 in µs
YEAR9999 = 253402300799_999999
ANCHORS = [0, -1_000_000, YEAR1, YEAR9999, I64_MIN + 6, I64_MAX - 6]
ENTITIES = ["a", "b", "c", "d"]
LABEL_ENTITIES = [*ENTITIES, "zz", None]  # "zz" and None are absent


@st.composite
def datasets(draw: st.DrawFn) -> tuple[list[Row], list[tuple[str | None, int]]]:
    anchors = draw(st.lists(st.sampled_from(ANCHORS), min_size=1, max_size=3, unique=True))
    n = draw(st.integers(0, 30))

    def stamp() -> int:
        return draw(st.sampled_from(anchors)) + draw(st.integers(-4, 4))

    seqs = draw(st.lists(st.integers(-50, 10_000), min_size=n, max_size=n, unique=True))
    rows = []
    for s in seqs:
        ts = stamp()
        late = draw(st.sampled_from([0, 0, 1, 2, 5, -1]))  # ingest_ts late, on time or (oddly) early
        ingest = min(max(ts + late, I64_MIN), I64_MAX)
        rows.append(Row(draw(st.sampled_from(ENTITIES)), ts, s, ingest))
    rows.sort(key=lambda r: (r.entity, r.ts, r.seq))
    labels = []
    for _ in range(draw(st.integers(0, 25))):
        t = min(max(stamp() + draw(st.integers(-2, 2)), I64_MIN), I64_MAX)
        labels.append((draw(st.sampled_from(LABEL_ENTITIES)), t))
    return rows, labels


def columns(rows: list[Row]) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    return (
        pa.array([r.entity for r in rows], pa.string()),
        np.array([r.ts for r in rows], np.int64),
        np.array([r.seq for r in rows], np.int64),
        np.array([r.ingest for r in rows], np.int64),
    )


def run_kernel(rows: list[Row], labels: list[tuple[str | None, int]], **kw: object) -> list[int]:
    ent, ts, seq, ingest = columns(rows)
    row_codes, label_codes = encode_entities(ent, pa.array([e for e, _ in labels], pa.string()))
    got = asof_indices(
        row_codes, ts, seq, label_codes, np.array([t for _, t in labels], np.int64), row_ingest=ingest, **kw
    )
    return [int(x) for x in got]


TTLS = st.sampled_from([None, 0, 1, 3, 8, I64_MAX])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datasets(), strict=st.booleans(), ttl=TTLS, as_known_at=st.booleans())
def test_asof_matches_oracle(data: tuple, strict: bool, ttl: int | None, as_known_at: bool) -> None:
    rows, labels = data
    want = asof_oracle(rows, labels, strict=strict, ttl=ttl, as_known_at=as_known_at)
    got = run_kernel(rows, labels, strict=strict, ttl_us=ttl, as_known_at=as_known_at)
    assert got == want


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=datasets(),
    n_tiers=st.integers(1, 4),
    split=st.randoms(use_true_random=False),
    strict=st.booleans(),
    ttl=TTLS,
    as_known_at=st.booleans(),
)
def test_pick_latest_across_tiers(
    data: tuple, n_tiers: int, split: object, strict: bool, ttl: int | None, as_known_at: bool
) -> None:
    """Rows split over tiers (equal times across tiers: seq decides) give the global answer."""
    rows, labels = data
    want = asof_oracle(rows, labels, strict=strict, ttl=ttl, as_known_at=as_known_at)
    tier_rows: list[list[Row]] = [[] for _ in range(n_tiers)]
    for r in rows:
        tier_rows[split.randrange(n_tiers)].append(r)  # type: ignore[attr-defined]
    tiers = []
    for tr in tier_rows:
        idx = np.array(run_kernel(tr, labels, strict=strict, ttl_us=ttl, as_known_at=as_known_at), np.int64)
        _, ts, seq, _ = columns(tr)
        tiers.append((idx, ts, seq))
    tier_id, index = pick_latest(tiers)
    got_seq = [tier_rows[k][i].seq if k >= 0 else None for k, i in zip(tier_id, index, strict=True)]
    assert got_seq == [rows[i].seq if i >= 0 else None for i in want]
    assert all((k < 0) == (i < 0) for k, i in zip(tier_id, index, strict=True))


def test_ttl_edge_and_strict_exact_values() -> None:
    rows = [Row("a", 10, 1, 10), Row("a", 10, 2, 30), Row("a", 20, 3, 20), Row("b", -5, 4, -5)]
    labels = [("a", 20), ("a", 19), ("a", 25), ("a", 9), ("b", -5), ("c", 100), (None, 20)]
    assert run_kernel(rows, labels) == [2, 1, 2, -1, 3, -1, -1]
    assert run_kernel(rows, labels, strict=True) == [1, 1, 2, -1, -1, -1, -1]
    assert run_kernel(rows, labels, ttl_us=5) == [2, -1, 2, -1, 3, -1, -1]  # 25 - 20 == ttl qualifies
    assert run_kernel(rows, labels, as_known_at=True) == [2, 0, 2, -1, 3, -1, -1]  # seq 2 known at 30


def test_unsorted_rows_rejected() -> None:
    with pytest.raises(ValueError, match="not sorted"):
        asof_indices(np.array([0, 0]), np.array([2, 1]), np.array([1, 2]), np.array([0]), np.array([5]))
    with pytest.raises(ValueError, match="not grouped"):
        encode_entities(pa.array(["a", "b", "a"]), pa.array(["a"]))


def test_encode_entities_chunked_and_large_string() -> None:
    big = pa.large_string()
    rows = pa.chunked_array([pa.array(["x", "x"], big), pa.array(["y", "z"], big)])
    rc, lc = encode_entities(rows, pa.chunked_array([pa.array(["z", "q", None, "x"])]))
    assert rc.tolist() == [0, 0, 1, 2]
    assert lc.tolist() == [2, -1, -1, 0]


@settings(deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 3), max_size=40))
def test_sorted_unique_is_np_unique(values: list[int]) -> None:
    arr = np.array(values, dtype=np.int64)
    got = sorted_unique(arr)
    assert got.dtype == np.int64 and got.tolist() == np.unique(arr).tolist()


@settings(deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "é", ""]), max_size=30), st.data())
def test_encode_entities_dictionary_chunks(values: list[str], data: st.DataObject) -> None:
    """Rows as dictionary chunks (each its own dictionary, in any order, with unused
    entries, as a segment's row groups read) get the codes the plain strings get; labels
    dictionary-encoded too."""
    rows = sorted(values)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=4)))
    chunks = []
    for lo, hi in zip([0, *cuts], [*cuts, len(rows)], strict=True):
        part = rows[lo:hi]
        dictionary = data.draw(st.permutations(sorted({*part, *data.draw(
            st.lists(st.sampled_from(["a", "q", "é"]), max_size=2))})))
        indices = pa.array([dictionary.index(v) for v in part], pa.int32())
        chunks.append(pa.DictionaryArray.from_arrays(indices, pa.array(dictionary, pa.string())))
    labels = pa.array(data.draw(st.lists(st.sampled_from(["a", "b", "é", "zz", "", None]),
                                         max_size=10)), pa.string())
    dict_rows = pa.chunked_array(chunks, pa.dictionary(pa.int32(), pa.string()))
    want = encode_entities(pa.array(rows, pa.string()), labels)
    for got in (encode_entities(dict_rows, labels),
                encode_entities(dict_rows, labels.dictionary_encode()),
                encode_entities(pa.array(rows, pa.string()), labels.dictionary_encode())):
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()


def test_encode_entities_dictionary_not_grouped() -> None:
    rows = pa.array(["a", "b", "a"]).dictionary_encode()
    with pytest.raises(ValueError, match="not grouped"):
        encode_entities(rows, pa.array(["a"]))
    with pytest.raises(ValueError, match="not be null"):
        encode_entities(pa.array(["a", None]).dictionary_encode(), pa.array(["a"]))
