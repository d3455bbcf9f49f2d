"""The naive last-value join: each entity's newest row, whatever the label's time.

It is what a careless join does; the leakage report (:mod:`.leakage`) compares it to the
point-in-time join and counts the cells that came from the future. It reads both tiers
of the log (sealed segments and the head), from one snapshot, bounded by ``upto_seq``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc

from ..events import loads_values
from ..offline.log import OfflineLog
from ..offline.scan import BASE_COLUMNS, _manifest_moved, _snapshot, last_per_entity
from ..offline.segments import SegmentError, read_segment

# A segment's bookkeeping columns: not features.
_META = ("event_id", "source", "position", "def_version")


@dataclass(slots=True)
class NaiveMatches:
    """Per label (in label order): the entity's newest row, whatever the label's time."""

    view: str
    event_ts: list[int | None]
    ingest_ts: list[int | None]
    values: list[dict[str, Any] | None]


Newest = tuple[int, int, int, dict[str, Any]]  # (event_timestamp, seq, ingest_ts, features)


def naive_view(log: OfflineLog, view: str, keys: Sequence[str | None], *,
               upto_seq: int | None = None) -> NaiveMatches:
    """The last-value join: per distinct entity, its greatest (event_timestamp, seq) row."""
    wanted = sorted({k for k in keys if k is not None})
    for _attempt in range(5):
        bound, segments, head = _snapshot(log, view, upto_seq, wanted)
        try:
            found = _segments_newest(log, segments, bound, wanted)
        except SegmentError:
            if not _manifest_moved(log, segments):
                raise
            continue  # a compaction replaced files after the snapshot: read the new state
        break
    else:
        raise SegmentError(f"{log.segments_dir}: the segments kept changing while being read")
    last: dict[str, tuple[int, int, int, str]] = {}
    for seq, entity, ets, its, text in head:  # sorted: the last row of an entity is its newest
        last[entity] = (ets, seq, its, text)
    for entity, (ets, seq, its, text) in last.items():
        cur = found.get(entity)
        if cur is None or (ets, seq) > (cur[0], cur[1]):
            found[entity] = (ets, seq, its, loads_values(text))
    rows = [None if k is None else found.get(k) for k in keys]
    return NaiveMatches(view, [None if r is None else r[0] for r in rows],
                        [None if r is None else r[2] for r in rows],
                        [None if r is None else r[3] for r in rows])


def _segments_newest(log: OfflineLog, segments: Sequence[Any], bound: int,
                     entities: list[str]) -> dict[str, Newest]:
    """Per entity, its newest row over these segments (seq <= bound)."""
    found: dict[str, Newest] = {}
    for seg in segments:
        table = read_segment(log.segments_dir / seg.file, seg.bytes, entities=entities)
        if seg.max_seq > bound:
            table = table.filter(pc.less_equal(table.column("seq"), bound))
        table = last_per_entity(table)
        names = [c for c in table.column_names if c not in BASE_COLUMNS and c not in _META]
        features = [c[len("feature:"):] if c.startswith("feature:") else c for c in names]
        cols = [table.column(c).to_pylist() for c in names]
        base = (table.column(c).to_pylist() for c in ("entity", "event_timestamp", "seq",
                                                       "ingest_ts"))
        for i, (entity, ets, seq, its) in enumerate(zip(*base, strict=True)):
            cur = found.get(entity)
            if cur is None or (ets, seq) > (cur[0], cur[1]):
                found[entity] = (ets, seq, its, {f: c[i] for f, c in zip(features, cols,
                                                                          strict=True)})
    return found
