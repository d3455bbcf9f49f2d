"""Brute-force oracles (plain Python loops over rows) for the as-of and window kernels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any


@dataclass(frozen=True)
class Row:
    entity: str
    ts: int
    seq: int
    ingest: int


def asof_oracle(
    rows: Sequence[Row],
    labels: Sequence[tuple[str | None, int]],
    *,
    strict: bool,
    ttl: int | None,
    as_known_at: bool,
) -> list[int]:
    """Index into ``rows`` of the qualifying row with the greatest (ts, seq), or -1, per label."""
    out = []
    for entity, t in labels:
        best = -1
        for i, r in enumerate(rows):
            if r.entity != entity:
                continue
            if not (r.ts < t if strict else r.ts <= t):
                continue
            if ttl is not None and t - r.ts > ttl:
                continue
            if as_known_at and r.ingest > t:
                continue
            if best < 0 or (r.ts, r.seq) > (rows[best].ts, rows[best].seq):
                best = i
        out.append(best)
    return out


def window_rows(
    rows: Sequence[Row],
    entity: str | None,
    t: int,
    *,
    window: int | None,
    strict: bool,
    as_known_at: bool,
) -> list[int]:
    """Indices of the rows in the label's window: t - w < ts <= t (< t when strict), ingest <= t."""
    out = []
    for i, r in enumerate(rows):
        if r.entity != entity:
            continue
        if not (r.ts < t if strict else r.ts <= t):
            continue
        if window is not None and not (t - window < r.ts):
            continue
        if as_known_at and r.ingest > t:
            continue
        out.append(i)
    return out


def aggregate_oracle(func: str, rows: Sequence[Row], idx: list[int], values: Sequence[Any] | None) -> Any:
    """The window rule's value of ``func`` over rows ``idx`` (values None: count rows)."""
    if values is None:
        assert func == "count"
        return len(idx)
    present = [values[i] for i in idx if values[i] is not None]
    if func == "count":
        return len(present)
    if func == "sum":
        if not present:
            return 0 if not any(isinstance(v, float) for v in values if v is not None) else 0.0
        if isinstance(present[0], float):
            return math.fsum(present)
        return sum(present)
    if not present:
        return None
    if func == "min":
        return min(present)
    if func == "max":
        return max(present)
    if func == "last":
        best = max((i for i in idx if values[i] is not None), key=lambda i: (rows[i].ts, rows[i].seq))
        return values[best]
    exact = [Fraction(v) for v in present]
    mean = sum(exact) / len(exact)
    if func == "mean":
        return float(mean)
    if func == "stddev":
        var = sum((x - mean) ** 2 for x in exact) / len(exact)
        return math.sqrt(float(var))
    raise ValueError(func)
