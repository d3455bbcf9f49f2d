"""Brute-force oracle for windowed aggregations: the training-set value at ``t``, by the
rule itself, over every committed log row of the entity (exact arithmetic)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from asof_stream.definitions import Definitions
from asof_stream.events import loads_values
from asof_stream.offline.log import LogRow, OfflineLog


def all_rows(log: OfflineLog, defs: Definitions | None = None) -> list[LogRow]:
    """Every committed row: the head's, and with ``defs`` the sealed segments' too."""
    if defs is None:
        return [r for chunk in log.rows_after(0) for r in chunk]
    from asof_stream.events import dumps_values
    from asof_stream.offline.scan import scan_view

    out = []
    for view, spec in defs.views.items():
        for tier in scan_view(log, defs, view):
            cols = {n: tier.table.column(n).to_pylist() for n in tier.table.column_names}
            names = spec.feature_names
            for i, seq in enumerate(cols["seq"]):
                feats = dumps_values({n: cols[n][i] for n in names if n in cols})
                out.append(LogRow(seq, view, cols["entity"][i], cols["event_timestamp"][i],
                                  cols["ingest_ts"][i], feats))
    return out


def oracle(defs: Definitions, rows: list[LogRow], agg_name: str, feature: str, entity: str,
           t: int) -> Any:
    """``fn`` over the rows with ``t - window < event_timestamp <= t`` (no window: all up
    to ``t``), nulls skipped; empty: count 0, sum 0, others None."""
    agg = defs.aggregations[agg_name]
    f = agg.feature(feature)
    dtype = defs.views[agg.source].feature(f.of).dtype if f.of else None
    mine = sorted((r for r in rows if r.view == agg.source and r.entity == entity
                   and r.event_ts <= t and (f.window is None or r.event_ts > t - f.window)),
                  key=lambda r: (r.event_ts, r.seq))
    if f.of is None:
        return len(mine)
    vals = [v for v in (loads_values(r.features).get(f.of) for r in mine) if v is not None]
    if f.fn == "count":
        return len(vals)
    if not vals:
        return (0 if dtype == "int64" else 0.0) if f.fn == "sum" else None
    if f.fn == "last":
        return vals[-1]
    if f.fn == "min":
        return min(vals)
    if f.fn == "max":
        return max(vals)
    exact = sum((Fraction(v) for v in vals), Fraction(0))
    if f.fn == "sum":
        return int(exact) if dtype == "int64" else float(exact)
    n = len(vals)
    if f.fn == "mean":
        return float(exact) / n
    assert f.fn == "stddev"
    mean = exact / n
    var = sum(((Fraction(v) - mean) ** 2 for v in vals), Fraction(0)) / n
    return math.sqrt(float(var))


def same(fn: str, got: Any, want: Any) -> bool:
    """Exact equality, types included; stddev within 1e-12 relative (two-pass float vs
    exact arithmetic)."""
    if fn == "stddev" and got is not None and want is not None:
        return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12)
    return type(got) is type(want) and got == want
