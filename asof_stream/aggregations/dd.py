"""Vectorized double-double arithmetic (a value is an unevaluated sum hi + lo of two float64 arrays).

``two_sum`` is exact for all finite inputs (subnormals included); ``two_prod`` uses Dekker's split
and is exact while |a|, |b| < ~1e300 and the product neither overflows nor underflows.
"""

from __future__ import annotations

import numpy as np

DD = tuple[np.ndarray, np.ndarray]
_SPLITTER = 134217729.0  # 2**27 + 1


def two_sum(a: np.ndarray, b: np.ndarray) -> DD:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def quick_two_sum(a: np.ndarray, b: np.ndarray) -> DD:
    """Requires |a| >= |b| (or a == 0)."""
    s = a + b
    return s, b - (s - a)


def _split(a: np.ndarray) -> DD:
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a: np.ndarray, b: np.ndarray) -> DD:
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def dd_add(ah: np.ndarray, al: np.ndarray, bh: np.ndarray, bl: np.ndarray) -> DD:
    """Accurate (IEEE-style) double-double addition."""
    s, e = two_sum(ah, bh)
    t, f = two_sum(al, bl)
    e = e + t
    s, e = quick_two_sum(s, e)
    e = e + f
    return quick_two_sum(s, e)


def dd_add_float(ah: np.ndarray, al: np.ndarray, b: np.ndarray) -> DD:
    """``dd_add(ah, al, b, 0)`` with the terms of the zero left out (the same result)."""
    s, e = two_sum(ah, b)
    return quick_two_sum(s, e + al)


def dd_mul(ah: np.ndarray, al: np.ndarray, bh: np.ndarray, bl: np.ndarray) -> DD:
    p, e = two_prod(ah, bh)
    e = e + (ah * bl + al * bh)
    return quick_two_sum(p, e)


def dd_div_float(ah: np.ndarray, al: np.ndarray, b: np.ndarray) -> DD:
    q1 = ah / b
    p, e = two_prod(q1, b)
    rh, rl = dd_add(ah, al, -p, -e)
    return quick_two_sum(q1, (rh + rl) / b)


def int_to_dd(x: np.ndarray) -> DD:
    """Exact int64 -> double-double (hi is clamped below 2**63 so the int64 round trip cannot overflow)."""
    x = np.asarray(x, dtype=np.int64)
    hi = np.minimum(x.astype(np.float64), 9223372036854774784.0)  # largest float64 below 2**63
    lo = (x - hi.astype(np.int64)).astype(np.float64)  # |lo| <= 1024: exact
    return hi, lo
