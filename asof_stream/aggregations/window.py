"""Exact windowed aggregations: count, sum, mean, min, max, last, stddev per label.

Window rule (see :mod:`.bounds`): for a label at ``t`` with window ``w`` the entity's rows with
``t - w < event_timestamp <= t`` (``< t`` when strict), with ``as_known_at`` also ``ingest_ts <= t``;
``w`` None is all history up to ``t``.  Nulls are skipped.  Empty window (or only nulls): count 0,
sum 0 (int 0 for integer input, 0.0 for float), everything else null.

Exactness:
* count: prefix counts of the validity mask (integers, exact).
* int64 sum: each value split into a signed high and an unsigned low 32-bit half, two int64 prefix
  sums (cannot overflow below 2**31 rows), recombined exactly; a window whose sum leaves int64 raises.
* float64 sum / mean: a double-double segment tree (:class:`.segtree.SumTree`), error about
  log2(n) * 2**-104 * sum(|x|) before the final rounding -- far below fsum-vs-result 1e-15.
  A finite input whose window sum overflows float64 raises OverflowError.
* stddev (population): double-double sums of x and of x*x (exact products), then
  (S2 - S1*S1/n)/n in double-double: equivalent to a two-pass result unless mean**2/var > ~1e16.
* min / max: range min/max tree; last: the last valid row index at or before each row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .bounds import Windows
from .dd import dd_add, dd_div_float, dd_mul, int_to_dd
from .segtree import ExtremeTree, SumTree

Func = Literal["count", "sum", "mean", "min", "max", "last", "stddev"]
ValuesLike: TypeAlias = pa.Array | pa.ChunkedArray | np.ndarray | tuple[np.ndarray, np.ndarray | None]
FUNCS: tuple[str, ...] = ("count", "sum", "mean", "min", "max", "last", "stddev")
_Agg = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _as_arrow(values: ValuesLike) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, tuple):
        data, valid = values
        mask = None if valid is None else ~np.asarray(valid, dtype=bool)
        return pa.array(np.asarray(data), mask=mask)
    return pa.array(np.asarray(values))


def _numeric(arr: pa.Array, func: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(data with nulls zeroed, validity, 'i' or 'f')."""
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        kind, target = "i", pa.int64()
    elif pa.types.is_floating(t):
        kind, target = "f", pa.float64()
    else:
        raise TypeError(f"{func} needs a numeric column, not {t}")
    valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    data = pc.fill_null(arr.cast(target), 0).to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(data), valid, kind


def _prefix(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x) + 1, dtype=np.int64)
    np.cumsum(x, out=out[1:])
    return out


def _int_sum_exact(data: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact window sums of int64 as (G, R) with sum = G * 2**32 + R, 0 <= R < 2**32."""
    high = _prefix(data >> 32)  # |x >> 32| < 2**31
    low = _prefix(data & 0xFFFFFFFF)  # < 2**32
    h = high[hi] - high[lo]
    l_ = low[hi] - low[lo]
    return h + (l_ >> 32), l_ & 0xFFFFFFFF


def _count(valid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    p = _prefix(valid.astype(np.int64))
    return p[hi] - p[lo]


def _float_sum_dd(data: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return SumTree(data).query(lo, hi)


def _check_finite(
    res: np.ndarray, data: np.ndarray, valid: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> None:
    bad = ~np.isfinite(res)
    if bad.any():
        finite_in = _count(valid & ~np.isfinite(data), lo[bad], hi[bad]) == 0
        if finite_in.any():
            raise OverflowError("float64 window sum overflows")


def _agg_sum(data: np.ndarray, valid: np.ndarray, lo: np.ndarray, hi: np.ndarray, kind: str) -> np.ndarray:
    if kind == "i":
        g, r = _int_sum_exact(data, lo, hi)
        if ((g < -(2**31)) | (g > 2**31 - 1)).any():
            raise OverflowError("int64 window sum overflows int64")
        return (g << 32) | r
    sh, sl = _float_sum_dd(data, lo, hi)
    res = sh + sl
    nonfinite = ~np.isfinite(data) & valid
    if nonfinite.any():  # inf/nan inputs: IEEE semantics of a plain sum
        hit = _count(nonfinite, lo, hi) > 0
        if hit.any():
            res[hit] = np.add.reduceat(np.append(data, 0.0), np.stack([lo[hit], hi[hit]], 1).ravel())[::2]
            res[hit & (lo == hi)] = 0.0
    _check_finite(res, data, valid, lo, hi)
    return res


def _dd_of(data: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    return int_to_dd(data) if kind == "i" else (data, np.zeros_like(data))


def _agg_mean_std(
    data: np.ndarray, valid: np.ndarray, lo: np.ndarray, hi: np.ndarray, kind: str, std: bool
) -> np.ndarray:
    n = _count(valid, lo, hi).astype(np.float64)
    safe_n = np.maximum(n, 1.0)
    if kind == "i" and not std:
        g, r = _int_sum_exact(data, lo, hi)
        gh, gl = int_to_dd(g)
        s1 = dd_add(gh * 2.0**32, gl * 2.0**32, r.astype(np.float64), np.zeros(len(r)))
    else:
        xh, xl = _dd_of(data, kind)
        tree = SumTree(xh, xl)
        s1 = tree.query(lo, hi)
    if not std:  # rounding the sum then dividing: within ~2 ulp, and safe for any magnitude
        return (s1[0] + s1[1]) / safe_n
    sq = dd_mul(xh, xl, xh, xl)
    s2 = SumTree(sq[0], sq[1]).query(lo, hi)
    m1 = dd_mul(s1[0], s1[1], s1[0], s1[1])
    m1 = dd_div_float(m1[0], m1[1], safe_n)
    m2 = dd_add(s2[0], s2[1], -m1[0], -m1[1])
    vh, vl = dd_div_float(m2[0], m2[1], safe_n)
    return np.sqrt(np.maximum(vh + vl, 0.0))


def _agg_extreme(
    data: np.ndarray, valid: np.ndarray, lo: np.ndarray, hi: np.ndarray, kind: str, op: np.ufunc
) -> np.ndarray:
    if kind == "i":
        info = np.iinfo(np.int64)
        ident: float | int = int(info.max) if op is np.minimum else int(info.min)
    else:
        ident = np.inf if op is np.minimum else -np.inf
    return ExtremeTree(np.where(valid, data, ident), op, ident).query(lo, hi)


def _last_index(valid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Index of the last valid row in [lo, hi), or -1."""
    idx = np.where(valid, np.arange(len(valid)), -1)
    prev = np.maximum.accumulate(idx) if len(idx) else idx
    out = np.full(len(lo), -1, dtype=np.int64)
    ne = hi > lo
    cand = prev[hi[ne] - 1]
    out[ne] = np.where(cand >= lo[ne], cand, -1)
    return out


def _contiguous(func: str, arr: pa.Array | None, lo: np.ndarray, hi: np.ndarray) -> pa.Array:
    """``func`` over contiguous ranges of ``arr`` (None: count rows)."""
    if arr is None:
        return pa.array(hi - lo, pa.int64())
    if func == "last":
        valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
        li = _last_index(valid, lo, hi)
        return arr.take(pa.array(li, mask=li < 0))
    if func == "count":
        return pa.array(_count(pc.is_valid(arr).to_numpy(zero_copy_only=False), lo, hi), pa.int64())
    data, valid, kind = _numeric(arr, func)
    n = _count(valid, lo, hi)
    if func == "sum":
        s = _agg_sum(data, valid, lo, hi, kind)
        return pa.array(s, pa.int64() if kind == "i" else pa.float64())
    if func in ("mean", "stddev"):
        return pa.array(_agg_mean_std(data, valid, lo, hi, kind, func == "stddev"), mask=n == 0)
    if func in ("min", "max"):
        res = _agg_extreme(data, valid, lo, hi, kind, np.minimum if func == "min" else np.maximum)
        out = pa.array(res, mask=n == 0)
        return out if kind == "f" else out.cast(arr.type)
    raise ValueError(f"unknown aggregation {func!r}; expected one of {FUNCS}")


def aggregate(windows: Windows, func: Func, values: ValuesLike | None = None) -> pa.Array:
    """``func`` over each label's window, in label order, as a pyarrow array (nulls where undefined).

    ``values`` is the column aligned with the rows: a pyarrow array, a numpy array, or
    ``(numpy data, validity mask or None)``.  ``count`` without values counts rows.
    """
    if func not in FUNCS:
        raise ValueError(f"unknown aggregation {func!r}; expected one of {FUNCS}")
    if values is None and func != "count":
        raise ValueError(f"{func} needs values")
    arr = None if values is None else _as_arrow(values)
    if arr is not None and len(arr) != windows.n_rows:
        raise ValueError("values must have one entry per row")
    g = windows.gathered
    if not g.any():
        return _contiguous(func, arr, windows.lo, windows.hi)
    fast = np.flatnonzero(~g)
    slow = np.flatnonzero(g)
    sub = None if arr is None else arr.take(pa.array(windows.gather))
    parts = [
        _contiguous(func, arr, windows.lo[fast], windows.hi[fast]),
        _contiguous(func, sub, windows.lo[slow], windows.hi[slow]),
    ]
    merged = pa.concat_arrays([p.cast(parts[0].type) for p in parts])
    where = np.empty(len(g), dtype=np.int64)
    where[np.concatenate([fast, slow])] = np.arange(len(g))
    return merged.take(pa.array(where))
