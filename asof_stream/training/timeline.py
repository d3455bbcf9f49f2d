"""An entity's feature events over time: the data behind the timeline pictures.

:func:`read_events` reads one entity's rows of one view from both tiers of the log
(sealed segments and the head, one snapshot), sorted by ``(event_timestamp, seq)`` and
capped at ``limit`` rows (the rows a caller asks to keep, then the newest). :func:`choose`
is the point-in-time rule of the join, row by row: among the rows with
``event_timestamp <= t`` (``< t`` when strict) and, with as-known-at, ``ingest_ts <= t``,
the greatest ``(event_timestamp, seq)``; none when the view's ttl is shorter than its
age. The naive (last-value) choice is the greatest ``(event_timestamp, seq)`` of all.
The web page's script applies the same rule in JavaScript (:mod:`asof_stream.server.timeline`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..definitions import Definitions
from ..offline.log import OfflineLog
from ..offline.scan import scan_view
from ..offline.segments import column_name

#: The most rows of one view drawn for one entity.
MAX_ROWS = 200


@dataclass(frozen=True, slots=True)
class EventRow:
    """One log row of an entity: its seq, times (UTC microseconds) and feature values."""

    seq: int
    event_ts: int
    ingest_ts: int
    values: dict[str, Any]


@dataclass(slots=True)
class ViewEvents:
    """An entity's rows of one view, oldest first; ``total`` counts the rows before the cap."""

    view: str
    entity: str
    features: list[str]
    rows: list[EventRow]
    total: int
    ttl: int | None = None
    last: EventRow | None = field(default=None)  # the newest row (the naive choice), kept

    @property
    def truncated(self) -> bool:
        return self.total > len(self.rows)


def qualifies(row: EventRow, t: int, *, strict: bool = False, as_known_at: bool = False) -> bool:
    """Whether the join may use ``row`` for a label at time ``t``."""
    if row.event_ts > t or (strict and row.event_ts == t):
        return False
    return not as_known_at or row.ingest_ts <= t


def choose(rows: Iterable[EventRow], t: int, *, strict: bool = False, as_known_at: bool = False,
           ttl: int | None = None) -> EventRow | None:
    """The point-in-time row for a label at ``t`` (None when no row qualifies)."""
    best: EventRow | None = None
    for row in rows:
        if qualifies(row, t, strict=strict, as_known_at=as_known_at) and (
                best is None or (row.event_ts, row.seq) > (best.event_ts, best.seq)):
            best = row
    if best is not None and ttl is not None and t - best.event_ts > ttl:
        return None
    return best


def newest(rows: Iterable[EventRow]) -> EventRow | None:
    """The naive (last-value) row: the greatest ``(event_timestamp, seq)``, whatever the time."""
    return max(rows, key=lambda r: (r.event_ts, r.seq), default=None)


def cap_rows(rows: Sequence[EventRow], keep: Iterable[int], limit: int) -> list[EventRow]:
    """At most ``limit`` rows (order kept): the seqs in ``keep``, then the newest others."""
    if len(rows) <= limit:
        return list(rows)
    wanted = set(list(dict.fromkeys(keep))[:limit])
    for row in reversed(rows):
        if len(wanted) >= limit:
            break
        wanted.add(row.seq)
    return [r for r in rows if r.seq in wanted]


def read_events(log: OfflineLog, defs: Definitions, view: str, entity: str, *,
                limit: int = MAX_ROWS, keep_times: Sequence[int] = (), strict: bool = False,
                as_known_at: bool = False, upto_seq: int | None = None) -> ViewEvents:
    """One entity's rows of ``view`` (a raw view), capped at ``limit``: the rows chosen at
    ``keep_times`` and the newest row are always kept."""
    spec = defs.views[view]
    features = list(spec.feature_names)
    rows: list[EventRow] = []
    for tier in scan_view(log, defs, view, max_seq=upto_seq, entities=[entity]):
        table = tier.table
        cols = {f: table.column(column_name(f)).to_pylist() for f in features}
        base = zip(*(table.column(c).to_pylist()
                     for c in ("seq", "event_timestamp", "ingest_ts")), strict=True)
        for i, (seq, ets, its) in enumerate(base):
            rows.append(EventRow(seq, ets, its, {f: cols[f][i] for f in features}))
    rows.sort(key=lambda r: (r.event_ts, r.seq))
    last = newest(rows)
    keep = [r.seq for t in keep_times
            if (r := choose(rows, t, strict=strict, as_known_at=as_known_at, ttl=spec.ttl))]
    if last is not None:
        keep.insert(0, last.seq)
    return ViewEvents(view, entity, features, cap_rows(rows, keep, limit), len(rows),
                      spec.ttl, last)
