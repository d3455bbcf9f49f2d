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

import functools
from collections.abc import Callable
from typing import Literal, TypeAlias

import numpy as np
import pyarrow as pa

from ..kernels.buffers import int64_array, int_numpy, valid_numpy
from .bounds import Windows
from .dd import dd_add, dd_add_float, dd_div_float, dd_mul, int_to_dd
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


def _arrow(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """An int64 or float64 numpy array as Arrow (``valid``: False marks a null), through
    its buffers: ``pa.array`` of numpy makes pyarrow import pandas."""
    data = np.ascontiguousarray(values)
    kind = pa.float64() if data.dtype.kind == "f" else pa.int64()
    data = data.astype(np.float64 if data.dtype.kind == "f" else np.int64, copy=False)
    bits = None
    if valid is not None and not valid.all():
        bits = pa.py_buffer(np.packbits(np.asarray(valid, dtype=bool), bitorder="little"))
    return pa.Array.from_buffers(kind, len(data), [bits, pa.py_buffer(data)])


def _prefix(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x) + 1, dtype=np.int64)
    np.cumsum(x, out=out[1:])
    return out


class Prepared:
    """A values column converted once, with its prefix arrays and trees built on first use,
    shared by every aggregate over it (several functions, several window lengths).

    Pass one to :func:`aggregate` instead of the raw values to reuse that work."""

    def __init__(self, values: ValuesLike) -> None:
        self.arr = _as_arrow(values)
        self._subs: dict[int, tuple[Windows, Prepared]] = {}
        self._extreme: dict[str, ExtremeTree] = {}
        self._memo: dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray, object]] = {}

    def __len__(self) -> int:
        return len(self.arr)

    @functools.cached_property
    def valid(self) -> np.ndarray:
        if self.arr.null_count == 0:
            return np.ones(len(self.arr), dtype=bool)
        return valid_numpy(self.arr)

    @functools.cached_property
    def count_prefix(self) -> np.ndarray:
        return _prefix(self.valid.view(np.int8))

    def memo(self, what: str, lo: np.ndarray, hi: np.ndarray,
             make: Callable[[], object]) -> object:
        """``make()`` once per (what, window arrays): sum and mean share their sums, every
        function its counts. Keyed by the arrays' identity (kept alive with the value)."""
        key = (what, id(lo), id(hi))
        got = self._memo.get(key)
        if got is None or got[0] is not lo or got[1] is not hi:
            got = self._memo[key] = (lo, hi, make())
        return got[2]

    def count(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        if self.arr.null_count == 0:  # no prefix over every row needed
            return hi - lo
        p = self.count_prefix
        out = self.memo("count", lo, hi, lambda: p[hi] - p[lo])
        assert isinstance(out, np.ndarray)
        return out

    def numeric(self, func: str) -> tuple[np.ndarray, str]:
        """(data with nulls zeroed, 'i' or 'f')."""
        t = self.arr.type
        if not (pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_floating(t)):
            raise TypeError(f"{func} needs a numeric column, not {t}")
        return self._numeric

    @functools.cached_property
    def _numeric(self) -> tuple[np.ndarray, str]:
        t = self.arr.type
        kind, target = ("f", pa.float64()) if pa.types.is_floating(t) else ("i", pa.int64())
        arr = self.arr if t == target else self.arr.cast(target)
        data = int_numpy(arr) if len(arr) else np.zeros(0, np.float64 if kind == "f" else np.int64)
        if arr.null_count:  # under a null the buffer holds anything: zero it
            data = np.where(self.valid, data, 0)
        return np.ascontiguousarray(data), kind

    @functools.cached_property
    def int_prefixes(self) -> tuple[np.ndarray, np.ndarray]:
        data = self._numeric[0]
        return _prefix(data >> 32), _prefix(data & 0xFFFFFFFF)  # |x >> 32| < 2**31, < 2**32

    @functools.cached_property
    def nonfinite(self) -> np.ndarray | None:
        data, kind = self._numeric
        if kind == "i":
            return None
        step = 1 << 20  # a block at a time: no temporaries over every row when all are finite
        if all(np.isfinite(data[at:at + step]).all() for at in range(0, len(data), step)):
            return None
        bad = ~np.isfinite(data) & self.valid
        return bad if bad.any() else None

    @functools.cached_property
    def dd(self) -> tuple[np.ndarray, np.ndarray]:
        data, kind = self._numeric
        return int_to_dd(data) if kind == "i" else (data, np.zeros_like(data))

    @functools.cached_property
    def squares(self) -> tuple[np.ndarray, np.ndarray]:
        xh, xl = self.dd
        return dd_mul(xh, xl, xh, xl)

    @functools.cached_property
    def sum_tree(self) -> SumTree:
        data, kind = self._numeric
        return SumTree(data) if kind == "f" else SumTree(*self.dd)

    @functools.cached_property
    def square_tree(self) -> SumTree:
        return SumTree(*self.squares)

    def with_identity(self, op: np.ufunc) -> tuple[np.ndarray, float | int]:
        """The values with nulls set to ``op``'s identity (min: the largest value), and it."""
        data, kind = self._numeric
        if kind == "i":
            info = np.iinfo(np.int64)
            ident: float | int = int(info.max) if op is np.minimum else int(info.min)
        else:
            ident = np.inf if op is np.minimum else -np.inf
        return (data if self.arr.null_count == 0 else np.where(self.valid, data, ident)), ident

    def extreme_tree(self, op: np.ufunc) -> ExtremeTree:
        tree = self._extreme.get(op.__name__)
        if tree is None:
            vals, ident = self.with_identity(op)
            tree = self._extreme[op.__name__] = ExtremeTree(vals, op, ident)
        return tree

    @functools.cached_property
    def last_prev(self) -> np.ndarray:
        """Per row, the index of the last valid row at or before it, or -1."""
        idx = np.where(self.valid, np.arange(len(self.valid)), -1)
        return np.maximum.accumulate(idx) if len(idx) else idx

    def sub(self, windows: Windows) -> Prepared:
        """These values gathered by ``windows.gather`` (cached per windows)."""
        got = self._subs.get(id(windows))
        if got is None or got[0] is not windows:
            got = (windows, Prepared(self.arr.take(int64_array(windows.gather))))
            self._subs[id(windows)] = got
        return got[1]


def _int_sum_exact(prep: Prepared, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact window sums of int64 as (G, R) with sum = G * 2**32 + R, 0 <= R < 2**32."""
    high, low = prep.int_prefixes
    h = high[hi] - high[lo]
    l_ = low[hi] - low[lo]
    return h + (l_ >> 32), l_ & 0xFFFFFFFF


SHORT = 16  # windows up to this many rows are summed directly (no tree to build)


def _dd_sums(
    xh: np.ndarray, xl: np.ndarray | None, lo: np.ndarray, hi: np.ndarray,
    tree: Callable[[], SumTree],
) -> tuple[np.ndarray, np.ndarray]:
    """Double-double window sums: short windows row by row (vectorized across windows), long ones
    through a :class:`SumTree`.  Both keep about 2**-104 * sum(|x|) before the final rounding.

    A float column's first row is the sum so far as it is (``x + 0.0``, with ``x - x`` as the
    low part: what adding it to zero gives, NaN for an infinite ``x`` included), and each
    next row is added without the zero low part of a plain value (:func:`.dd.dd_add_float`):
    the same sums with less work, most windows being one or two rows long."""
    acc_h = np.zeros(len(lo), dtype=np.float64)
    acc_l = np.zeros(len(lo), dtype=np.float64)
    length = hi - lo
    short = np.flatnonzero(length <= SHORT)
    first = 0
    if xl is None:
        short = short[length[short] > 0]
        x = xh[lo[short]]
        acc_h[short] = x + 0.0
        acc_l[short] = x - x
        first = 1
    for k in range(first, int(length[short].max()) if len(short) else 0):
        act = short[length[short] > k]
        short = act
        at = lo[act] + k
        if xl is None:
            acc_h[act], acc_l[act] = dd_add_float(acc_h[act], acc_l[act], xh[at])
        else:
            acc_h[act], acc_l[act] = dd_add(acc_h[act], acc_l[act], xh[at], xl[at])
    long_ = np.flatnonzero(length > SHORT)
    if len(long_):
        acc_h[long_], acc_l[long_] = tree().query(lo[long_], hi[long_])
    return acc_h, acc_l


def _float_sums(prep: Prepared, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Double-double window sums of a float column, once per window arrays."""
    out = prep.memo("fsum", lo, hi, lambda: _dd_sums(prep._numeric[0], None, lo, hi,
                                                    lambda: prep.sum_tree))
    return out  # type: ignore[return-value]


def _check_finite(res: np.ndarray, prep: Prepared, lo: np.ndarray, hi: np.ndarray) -> None:
    bad = ~np.isfinite(res)
    if bad.any():
        data = prep._numeric[0]
        nonfin = prep.valid & ~np.isfinite(data)
        p = _prefix(nonfin.view(np.int8))
        finite_in = (p[hi[bad]] - p[lo[bad]]) == 0
        if finite_in.any():
            raise OverflowError("float64 window sum overflows")


def _agg_sum(prep: Prepared, lo: np.ndarray, hi: np.ndarray, kind: str) -> np.ndarray:
    if kind == "i":
        g, r = _int_sum_exact(prep, lo, hi)
        if ((g < -(2**31)) | (g > 2**31 - 1)).any():
            raise OverflowError("int64 window sum overflows int64")
        return (g << 32) | r
    data = prep._numeric[0]
    sh, sl = _float_sums(prep, lo, hi)
    res = sh + sl
    nonfinite = prep.nonfinite
    if nonfinite is not None:  # inf/nan inputs: IEEE semantics of a plain sum
        p = _prefix(nonfinite.view(np.int8))
        hit = (p[hi] - p[lo]) > 0
        if hit.any():
            res[hit] = np.add.reduceat(np.append(data, 0.0), np.stack([lo[hit], hi[hit]], 1).ravel())[::2]
            res[hit & (lo == hi)] = 0.0
    _check_finite(res, prep, lo, hi)
    return res


def _agg_mean_std(prep: Prepared, lo: np.ndarray, hi: np.ndarray, kind: str, std: bool) -> np.ndarray:
    n = prep.count(lo, hi).astype(np.float64)
    safe_n = np.maximum(n, 1.0)
    if kind == "i" and not std:
        g, r = _int_sum_exact(prep, lo, hi)
        gh, gl = int_to_dd(g)
        s1 = dd_add(gh * 2.0**32, gl * 2.0**32, r.astype(np.float64), np.zeros(len(r)))
    elif kind == "f":
        s1 = _float_sums(prep, lo, hi)
    else:
        xh, xl = prep.dd
        s1 = _dd_sums(xh, xl, lo, hi, lambda: prep.sum_tree)
    if not std:  # rounding the sum then dividing: within ~2 ulp, and safe for any magnitude
        return (s1[0] + s1[1]) / safe_n
    sq = prep.squares
    s2 = _dd_sums(sq[0], sq[1], lo, hi, lambda: prep.square_tree)
    m1 = dd_mul(s1[0], s1[1], s1[0], s1[1])
    m1 = dd_div_float(m1[0], m1[1], safe_n)
    m2 = dd_add(s2[0], s2[1], -m1[0], -m1[1])
    vh, vl = dd_div_float(m2[0], m2[1], safe_n)
    return np.sqrt(np.maximum(vh + vl, 0.0))


def _extremes(prep: Prepared, lo: np.ndarray, hi: np.ndarray, op: np.ufunc) -> np.ndarray:
    """Window min/max: short windows row by row (vectorized across windows, no tree to
    build over every row), long ones through the cached :class:`ExtremeTree`. Nulls hold
    the identity; a window of only nulls is masked by the caller."""
    vals, ident = prep.with_identity(op)
    data = vals
    length = hi - lo
    long_ = np.flatnonzero(length > SHORT)
    acc = np.full(len(lo), ident, dtype=data.dtype)
    short = np.flatnonzero((length <= SHORT) & (length > 0))
    acc[short] = vals[lo[short]]  # op(identity, x) is x
    for k in range(1, int(length[short].max()) if len(short) else 0):
        short = short[length[short] > k]
        acc[short] = op(acc[short], vals[lo[short] + k])
    if len(long_):
        acc[long_] = prep.extreme_tree(op).query(lo[long_], hi[long_])
    return acc


def _contiguous(func: str, prep: Prepared | None, lo: np.ndarray, hi: np.ndarray) -> pa.Array:
    """``func`` over contiguous ranges of ``prep`` (None: count rows)."""
    if prep is None:
        return _arrow(hi - lo)
    arr = prep.arr
    if func == "last":
        out = np.full(len(lo), -1, dtype=np.int64)
        ne = hi > lo
        cand = prep.last_prev[hi[ne] - 1]
        out[ne] = np.where(cand >= lo[ne], cand, -1)
        return arr.take(_arrow(out, out >= 0))
    if func == "count":
        return _arrow(prep.count(lo, hi))
    _, kind = prep.numeric(func)
    if func == "sum":
        s = _agg_sum(prep, lo, hi, kind)
        return _arrow(s)
    n = prep.count(lo, hi)
    if func in ("mean", "stddev"):
        return _arrow(_agg_mean_std(prep, lo, hi, kind, func == "stddev"), n != 0)
    if func in ("min", "max"):
        res = _extremes(prep, lo, hi, np.minimum if func == "min" else np.maximum)
        out = _arrow(res, n != 0)
        return out if kind == "f" else out.cast(arr.type)
    raise ValueError(f"unknown aggregation {func!r}; expected one of {FUNCS}")


def aggregate(windows: Windows, func: Func, values: ValuesLike | Prepared | None = None) -> pa.Array:
    """``func`` over each label's window, in label order, as a pyarrow array (nulls where undefined).

    ``values`` is the column aligned with the rows: a pyarrow array, a numpy array, or
    ``(numpy data, validity mask or None)``.  ``count`` without values counts rows.
    """
    if func not in FUNCS:
        raise ValueError(f"unknown aggregation {func!r}; expected one of {FUNCS}")
    if values is None and func != "count":
        raise ValueError(f"{func} needs values")
    prep = None if values is None else values if isinstance(values, Prepared) else Prepared(values)
    if prep is not None and len(prep) != windows.n_rows:
        raise ValueError("values must have one entry per row")
    g = windows.gathered
    if not g.any():
        return _contiguous(func, prep, windows.lo, windows.hi)
    fast = np.flatnonzero(~g)
    slow = np.flatnonzero(g)
    sub = None if prep is None else prep.sub(windows)
    parts = [
        _contiguous(func, prep, windows.lo[fast], windows.hi[fast]),
        _contiguous(func, sub, windows.lo[slow], windows.hi[slow]),
    ]
    merged = pa.concat_arrays([p.cast(parts[0].type) for p in parts])
    where = np.empty(len(g), dtype=np.int64)
    where[np.concatenate([fast, slow])] = np.arange(len(g))
    return merged.take(int64_array(where))
