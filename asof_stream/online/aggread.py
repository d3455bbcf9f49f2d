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
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from ..definitions import Definitions
from ..definitions_computed import AggFeature, Aggregation
from ..events import loads_values
from .aggsummary import Folder, Summary, empty_value, value


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


class WindowRows(Protocol):
    """An entity's aggregation rows as of a read at ``now`` (``event_timestamp <= now``),
    asked for in the three shapes the features need; ``lo``: the lower edge
    (``event_timestamp > lo``), None for none."""

    def count(self, lo: int | None) -> tuple[int, int | None]:
        """How many rows, and the newest one's event time (None when none)."""

    def newest(self, lo: int | None) -> Iterator[tuple[int, str]]:
        """(event_timestamp, features JSON), newest (event_timestamp, seq) first."""

    def rows(self, lo: int | None) -> Sequence[tuple[int, int, str]]:
        """(event_timestamp, seq, features JSON) in (event_timestamp, seq) order."""


class ListRows:
    """:class:`WindowRows` over rows already read (ascending, all above the lowest edge
    asked for)."""

    def __init__(self, rows: Sequence[tuple[int, int, str]]) -> None:
        self._rows = rows
        self._ts = [r[0] for r in rows]

    def _start(self, lo: int | None) -> int:
        return 0 if lo is None else bisect_right(self._ts, lo)

    def count(self, lo: int | None) -> tuple[int, int | None]:
        n = len(self._rows) - self._start(lo)
        return n, (self._ts[-1] if n else None)

    def newest(self, lo: int | None) -> Iterator[tuple[int, str]]:
        rows = self._rows
        for i in range(len(rows) - 1, self._start(lo) - 1, -1):
            yield rows[i][0], rows[i][2]

    def rows(self, lo: int | None) -> Sequence[tuple[int, int, str]]:
        start = self._start(lo)
        return self._rows if start == 0 else self._rows[start:]


def _needs_rows(f: AggFeature) -> bool:
    """Whether a feature reads every value of its window (not a count of rows, not last)."""
    return f.fn != "last" and f.of is not None


class AggReader:
    """Evaluates one aggregation's features over rows read from the state."""

    def __init__(self, defs: Definitions, name: str) -> None:
        agg: Aggregation = defs.aggregations[name]
        self.agg = agg
        src = defs.views[agg.source]
        self.feats = {f.name: (f, src.feature(f.of).dtype if f.of else None)
                      for f in agg.features}
        self.window = agg.max_window
        self.folder = Folder(defs, agg.source)

    def lower(self, now: int) -> int | None:
        return None if self.window is None else now - self.window

    def all_history(self, names: Sequence[str]) -> bool:
        """Whether a feature of ``names`` has no window (reads the running summary)."""
        return any(self.feats[name][0].window is None for name in names)

    def rows_lower(self, names: Sequence[str], now: int) -> int:
        """The lowest edge among the windowed features of ``names`` that read every
        value of their window (``now`` when none does: no row is needed)."""
        lo = now
        for name in names:
            f = self.feats[name][0]
            if f.window is not None and _needs_rows(f):
                lo = min(lo, now - f.window)
        return lo

    def evaluate(self, names: Sequence[str], rows: list[tuple[int, int, str]],
                 now: int) -> dict[str, tuple[Any, int | None]]:
        """Per feature name, (value, newest counted event time) at ``now``; ``rows`` are
        the entity's rows with ``now - longest window < event_timestamp <= now``."""
        return self.evaluate_on(names, ListRows(rows), now)

    def evaluate_on(self, names: Sequence[str], src: WindowRows, now: int,
                    summary: Summary | None = None) -> dict[str, tuple[Any, int | None]]:
        """Per feature name, (value, newest counted event time) at ``now``, asking
        ``src`` only for what each feature needs: a count of rows, the newest rows until
        a non-null value (last), or the values of the widest window that reads them.
        No-window features: ``summary`` (the entity's folded rows, None: none) with
        every row of ``src`` folded on top, exactly (:mod:`.aggsummary`)."""
        out: dict[str, tuple[Any, int | None]] = {}
        if self.all_history(names):
            total = Summary() if summary is None else summary
            self.folder.fold(total, src.rows(None))
            for name in names:
                f, dtype = self.feats[name]
                if f.window is None:
                    out[name] = value(f, dtype, total)
        lo_rows = self.rows_lower(names, now)
        rows: Sequence[tuple[int, int, str]] = () if lo_rows == now else src.rows(lo_rows)
        ts = [r[0] for r in rows]
        decoded: dict[int, dict[str, Any]] = {}  # row index -> its values, decoded once

        n = len(rows)
        for name in names:
            f, dtype = self.feats[name]
            if f.window is None:
                continue
            lo = now - f.window
            if f.of is None:
                out[name] = src.count(lo)
                continue
            of = f.of
            if f.fn == "last":  # the newest non-null: walk back from the end
                found: tuple[Any, int | None] = (None, None)
                for t, text in src.newest(lo):
                    v = loads_values(text).get(of)
                    if v is not None:
                        found = (float(v) if dtype == "float64" else v, t)
                        break
                out[name] = found
                continue
            vals = []
            newest = None
            for i in range(bisect_right(ts, lo), n):
                d = decoded.get(i)
                if d is None:
                    d = decoded[i] = loads_values(rows[i][2])
                v = d.get(of)
                if v is not None:
                    vals.append(v)
                    newest = ts[i]
            if dtype == "float64":
                vals = [float(v) for v in vals]
            out[name] = (compute(f, dtype, vals), newest)
        return out
