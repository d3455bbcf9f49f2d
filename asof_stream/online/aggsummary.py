"""Running state of the aggregations with no window: what all of an entity's rows up to a
fold add up to, exactly, so the rows themselves can be dropped.

A :class:`Summary` holds, for one (source view, entity): the number of rows folded and
the newest event time among them, and per column read by a no-window feature the count
of non-null values, their exact sum and sum of squares (:class:`~fractions.Fraction`:
a float is a dyadic rational, so these are exact whatever the order), min, max, and the
non-null value with the greatest ``(event_timestamp, seq)`` (``last``). Every part is
commutative and associative, so folding rows in any order and in any grouping gives
the same summary: a late event (an event time below rows already folded) is folded
like any other, and a rebuild from the log that folds at another point reads the same
values. A no-window feature's value at ``now`` is the summary with the entity's
not-yet-folded rows up to ``now`` folded on top (:func:`value`): sums are then the
correctly rounded exact sum (equal to ``math.fsum``), mean that over the count, stddev
``sqrt`` of the exactly computed population variance.

Not folded: a view whose no-window features read a column that allows NaN (NaN and
infinities have no exact sum, and ``min``/``max`` with NaN depend on the order); such
a view keeps its rows as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ..definitions import Definitions
from ..definitions_computed import AggFeature
from ..events import loads_values

ZERO = Fraction(0)
SHIFT = 1074  # 2**-1074: the smallest float above 0, a unit of every finite float


@dataclass
class Column:
    """The folded non-null values of one column."""

    n: int = 0
    total: Fraction = ZERO
    squares: Fraction = ZERO
    lo: Any = None
    hi: Any = None
    last: tuple[int, int, Any] | None = None  # (event_timestamp, seq, value)

    def add(self, ts: int, seq: int, v: Any) -> None:
        """Count one non-null value: min, max and last (the sums: :meth:`add_sums`)."""
        self.n += 1
        if self.lo is None or v < self.lo:
            self.lo = v
        if self.hi is None or v > self.hi:
            self.hi = v
        if self.last is None or (ts, seq) > (self.last[0], self.last[1]):
            self.last = (ts, seq, v)

    def add_sums(self, values: list[Any], floats: bool) -> None:
        """Add ``values`` (ints, or finite floats) to the exact sum and sum of squares."""
        if not floats:
            self.total += sum(values)
            self.squares += sum(v * v for v in values)
            return
        # Every finite float is an integer multiple of 2**-1074: the sums are integers
        # in those units (and 2**-2148 for squares), added as Python ints, made a
        # Fraction once (a Fraction per value costs a gcd per addition).
        t = q = 0
        for v in values:
            a, d = v.as_integer_ratio()
            k = SHIFT - d.bit_length() + 1
            t += a << k
            q += (a * a) << (2 * k)
        self.total += Fraction(t, 1 << SHIFT)
        self.squares += Fraction(q, 1 << (2 * SHIFT))


@dataclass
class Summary:
    """The folded rows of one (view, entity)."""

    rows: int = 0
    newest: int | None = None
    cols: dict[str, Column] = field(default_factory=dict)

    def dumps(self) -> str:
        cols = {name: [c.n, c.total.numerator, c.total.denominator, c.squares.numerator,
                       c.squares.denominator, c.lo, c.hi,
                       None if c.last is None else list(c.last)]
                for name, c in sorted(self.cols.items())}
        return json.dumps({"rows": self.rows, "newest": self.newest, "cols": cols},
                          separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> Summary:
        d = json.loads(text)
        cols = {}
        for name, (n, tn, td, sn, sd, lo, hi, last) in d["cols"].items():
            cols[name] = Column(n, Fraction(tn, td), Fraction(sn, sd), lo, hi,
                                None if last is None else (last[0], last[1], last[2]))
        return cls(d["rows"], d["newest"], cols)


class Folder:
    """How one source view's rows fold: the columns its no-window features read and
    which of them are numeric (float64 values are folded as floats)."""

    def __init__(self, defs: Definitions, view: str) -> None:
        spec = defs.views[view]
        self.columns: dict[str, str] = {}  # column -> dtype
        for agg in defs.aggregations.values():
            if agg.source != view:
                continue
            for f in agg.features:
                if f.window is None and f.of is not None:
                    self.columns[f.of] = spec.feature(f.of).dtype

    def fold(self, into: Summary, rows: Iterable[tuple[int, int, str]]) -> None:
        """Fold rows (event_timestamp, seq, features JSON) into ``into``."""
        cols = into.cols
        sums: dict[str, list[Any]] = {name: [] for name, dtype in self.columns.items()
                                      if dtype in ("int64", "float64")}
        for ts, seq, text in rows:
            into.rows += 1
            if into.newest is None or ts > into.newest:
                into.newest = ts
            if not self.columns:
                continue
            values = loads_values(text)
            for name, dtype in self.columns.items():
                v = values.get(name)
                if v is None:
                    continue
                c = cols.get(name)
                if c is None:
                    c = cols[name] = Column()
                if dtype == "float64":
                    v = float(v)
                c.add(ts, seq, v)
                if name in sums:
                    sums[name].append(v)
        for name, numbers in sums.items():
            if numbers:
                cols[name].add_sums(numbers, self.columns[name] == "float64")


def folds(defs: Definitions, view: str) -> bool:
    """Whether the rows of ``view`` can be folded: it has a no-window feature, and none
    of those reads a column that allows NaN."""
    spec = defs.views[view]
    found = False
    for agg in defs.aggregations.values():
        if agg.source != view:
            continue
        for f in agg.features:
            if f.window is None:
                found = True
                if f.of is not None and spec.feature(f.of).allow_nan:
                    return False
    return found


def empty_value(fn: str, dtype: str | None) -> Any:
    """The value of an empty window: count 0, sum 0 (typed as its column), else null."""
    if fn == "count":
        return 0
    if fn == "sum":
        return 0 if dtype == "int64" else 0.0
    return None


def _to_float(x: Fraction) -> float:
    try:
        return float(x)
    except OverflowError:  # beyond the float range: IEEE semantics of a float sum
        return math.inf if x > 0 else -math.inf


def value(f: AggFeature, dtype: str | None, s: Summary) -> tuple[Any, int | None]:
    """A no-window feature's (value, newest counted event time) from a summary of every
    row it counts."""
    if f.of is None:
        return s.rows, s.newest
    c = s.cols.get(f.of)
    if c is None or c.n == 0:
        return empty_value(f.fn, dtype), None
    assert c.last is not None
    ts = c.last[0]
    if f.fn == "count":
        return c.n, ts
    if f.fn == "last":
        return c.last[2], ts
    if f.fn == "min":
        return c.lo, ts
    if f.fn == "max":
        return c.hi, ts
    if f.fn == "sum":
        return (int(c.total) if dtype == "int64" else _to_float(c.total)), ts
    if f.fn == "mean":
        return _to_float(c.total) / c.n, ts
    assert f.fn == "stddev"  # population: sqrt(E[x^2] - E[x]^2), exactly, rounded once
    mean = c.total / c.n
    var = c.squares / c.n - mean * mean
    return math.sqrt(max(_to_float(var), 0.0)), ts
