"""Online reads of windowed aggregations: the value at the time of the read.

At ``now`` a feature with window ``w`` counts the entity's rows with
``now - w < event_timestamp <= now`` (no window: every row up to ``now``), read from the
aggregation state (:mod:`.aggstate`); nulls are skipped. An empty window gives count 0,
sum 0 (int 0 for an int64 column) and null for the others. ``last`` is the value of the
row with the greatest (event_timestamp, seq) among the non-null ones; stddev is the
population one. Float sums are correctly rounded (``math.fsum``), mean is that sum over
the count.

Status: PRESENT when the entity has ever had a row of the source view (the view's
online row exists), NOT_FOUND otherwise; count and sum still read 0 then, as a training
set gives for an unknown entity. ``event_timestamp``: the newest counted row's event
time, None when the window is empty.

Reads are meant at the current time (``now`` only moves forward): a read at a time
before a write's eviction point (``write time - longest window``) may miss rows the
write evicted.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from ..definitions import Definitions
from ..definitions_computed import AggFeature, Aggregation
from ..events import loads_values


def empty_value(fn: str, dtype: str | None) -> Any:
    """The value of an empty window: count 0, sum 0 (typed as its column), else null."""
    if fn == "count":
        return 0
    if fn == "sum":
        return 0 if dtype == "int64" else 0.0
    return None


def _fsum(xs: list[Any]) -> float:
    try:
        return math.fsum(xs)
    except (OverflowError, ValueError):  # inf/nan inputs: IEEE semantics of a plain sum
        return float(sum(xs))


def compute(f: AggFeature, dtype: str | None, values: list[Any]) -> Any:
    """``f.fn`` over the non-null ``values`` of a window (in (event_timestamp, seq) order)."""
    if f.fn == "count":
        return len(values)
    if not values:
        return empty_value(f.fn, dtype)
    if f.fn == "sum":
        return sum(values) if dtype == "int64" else _fsum(values)
    if f.fn == "last":
        return values[-1]
    if f.fn == "min":
        return min(values)
    if f.fn == "max":
        return max(values)
    n = len(values)
    total = sum(values) if dtype == "int64" else _fsum(values)
    mean = float(total) / n
    if f.fn == "mean":
        return mean
    # stddev (population): two passes over the window, each sum correctly rounded
    return math.sqrt(max(_fsum([(float(x) - mean) ** 2 for x in values]) / n, 0.0))


class AggReader:
    """Evaluates one aggregation's features over rows read from the state."""

    def __init__(self, defs: Definitions, name: str) -> None:
        agg: Aggregation = defs.aggregations[name]
        self.agg = agg
        src = defs.views[agg.source]
        self.feats = {f.name: (f, src.feature(f.of).dtype if f.of else None)
                      for f in agg.features}
        self.window = agg.max_window

    def lower(self, now: int) -> int | None:
        return None if self.window is None else now - self.window

    def evaluate(self, names: Sequence[str], rows: list[tuple[int, int, str]],
                 now: int) -> dict[str, tuple[Any, int | None]]:
        """Per feature name, (value, newest counted event time) at ``now``; ``rows`` are
        the entity's rows with ``now - longest window < event_timestamp <= now``."""
        ts = [r[0] for r in rows]
        decoded: dict[int, dict[str, Any]] = {}  # row index -> its values, decoded once

        def values_of(i: int) -> dict[str, Any]:
            d = decoded.get(i)
            if d is None:
                d = decoded[i] = loads_values(rows[i][2])
            return d

        out: dict[str, tuple[Any, int | None]] = {}
        n = len(rows)
        for name in names:
            f, dtype = self.feats[name]
            start = 0 if f.window is None else bisect_right(ts, now - f.window)
            if f.of is None:
                out[name] = (n - start, ts[-1] if start < n else None)
                continue
            of = f.of
            if f.fn == "last":  # the newest non-null: walk back from the end
                found: tuple[Any, int | None] = (None, None)
                for i in range(n - 1, start - 1, -1):
                    v = values_of(i).get(of)
                    if v is not None:
                        found = (float(v) if dtype == "float64" else v, ts[i])
                        break
                out[name] = found
                continue
            vals = []
            newest = None
            for i in range(start, n):
                v = values_of(i).get(of)
                if v is not None:
                    vals.append(v)
                    newest = ts[i]
            if dtype == "float64":
                vals = [float(v) for v in vals]
            out[name] = (compute(f, dtype, vals), newest)
        return out
