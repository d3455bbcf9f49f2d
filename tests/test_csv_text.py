"""Bulk CSV rendering of typed Arrow columns equals the per-value csv_cell."""

from __future__ import annotations

import math
import struct

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from asof_stream.training.csv_text import csv_text
from asof_stream.training.writers import csv_cell

EDGES = [0.0, -0.0, 1.0, 100.0, 1e-4, -1e-4, 9.999999999999999e-05, 1e-5, 1e15, 1e16,
         9999999999999998.0, 1e16 * (1 - 2**-53), 1e22, 5e-324, 1.7976931348623157e308,
         math.inf, -math.inf, math.nan, 0.1, 1 / 3, 123456789012345.6, 2.5e-7, 12345.67,
         1e9, 999999999.9999999, 1e9 - 1, 1e10, 1.0000001e-4, 9.999999e-5, 2.0**53, 1e-6]


def check(values: list[float | None]) -> None:
    arr = pa.array(values, pa.float64())
    got = csv_text(arr)
    assert got is not None
    assert got.to_pylist() == [csv_cell(v) for v in values]


def test_float_edges() -> None:
    check([*EDGES, None, *(-v for v in EDGES)])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                          st.floats(min_value=-1e17, max_value=1e17),
                          st.integers(-10**7, 10**7).map(lambda c: c / 100)), max_size=60))
def test_floats_equal_csv_cell(values: list[float | None]) -> None:
    check(values)


def test_random_bit_patterns() -> None:
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2**63, size=20_000, dtype=np.int64) | rng.integers(0, 2, 20_000) << 63
    values = [struct.unpack("<d", struct.pack("<q", int(b)))[0] for b in bits]
    sums = list(np.cumsum(rng.uniform(0, 500, 20_000).round(2)) / 7)
    check(values + sums)


@given(st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)), max_size=40))
def test_ints_equal_csv_cell(values: list[int | None]) -> None:
    got = csv_text(pa.array(values, pa.int64()))
    assert got is not None and got.to_pylist() == [csv_cell(v) for v in values]


def test_bools_and_other_types() -> None:
    values = [True, None, False]
    got = csv_text(pa.array(values, pa.bool_()))
    assert got is not None and got.to_pylist() == [csv_cell(v) for v in values]
    assert csv_text(pa.array(["a"], pa.string())) is None
