"""Two reference joins beside the real one (docs/join.md).

- :func:`oracle_view`: the point-in-time join by brute force, in plain Python over
  every log row of the view. Obviously correct and slow: the tests compare
  :func:`asof_stream.join.asof_view` to it.
- :func:`naive_view`: the naive last-value join (the entity's newest row, ignoring
  the label's time), which is what a careless join does; the leakage report compares
  it to the point-in-time join.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..definitions import Definitions
from ..events import loads_values
from ..offline.log import OfflineLog
from .join import JoinMode, ViewMatches

_temp_ids = itertools.count()


def oracle_view(log: OfflineLog, defs: Definitions, view: str, keys: Sequence[str],
                times: Sequence[int], mode: JoinMode = JoinMode()) -> ViewMatches:
    """The join rule (docs/join.md) read literally: filter every row of the view, take the greatest."""
    ttl = defs.views[view].ttl
    rows = log.conn.execute(
        "SELECT seq, entity, event_timestamp, ingest_ts, features FROM log WHERE view = ?",
        (view,)).fetchall()
    out_seq: list[int | None] = []
    out_ts: list[int | None] = []
    out_values: list[dict[str, Any] | None] = []
    for key, t in zip(keys, times, strict=True):
        candidates = [
            (ets, seq, features) for seq, entity, ets, ingest_ts, features in rows
            if entity == key
            and (ets < t if mode.strict else ets <= t)
            and (ttl is None or t - ets <= ttl)
            and (not mode.as_known_at or ingest_ts <= t)
        ]
        if not candidates:
            out_seq.append(None)
            out_ts.append(None)
            out_values.append(None)
            continue
        ets, seq, features = max(candidates, key=lambda c: (c[0], c[1]))
        out_seq.append(seq)
        out_ts.append(ets)
        out_values.append(loads_values(features))
    by_seq: dict[int, dict[str, Any]] = {}
    times_by_seq: dict[int, int] = {}
    for s, e, v in zip(out_seq, out_ts, out_values, strict=True):
        if s is not None and e is not None and v is not None:
            by_seq[s], times_by_seq[s] = v, e
    return ViewMatches(view, out_seq, by_seq, times_by_seq)


@dataclass(slots=True)
class NaiveMatches:
    """Per label (in label order): the entity's newest row, whatever the label's time."""

    view: str
    event_ts: list[int | None]
    ingest_ts: list[int | None]
    values: list[dict[str, Any] | None]


def naive_view(log: OfflineLog, view: str, keys: Sequence[str], *,
               upto_seq: int | None = None) -> NaiveMatches:
    """The last-value join: per distinct entity, its greatest (event_timestamp, seq) row."""
    if upto_seq is None:
        upto_seq = log.max_seq()
    distinct = sorted(set(keys))
    table = f"temp.asof_naive_{next(_temp_ids)}"
    conn = log.conn
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, entity TEXT NOT NULL)")
    found: dict[str, tuple[int, int, dict[str, Any]]] = {}
    try:
        conn.executemany(f"INSERT INTO {table} (id, entity) VALUES (?, ?)", enumerate(distinct))
        cur = conn.execute(
            f"SELECT p.entity, l.event_timestamp, l.ingest_ts, l.features FROM {table} AS p"
            " JOIN log AS l ON l.seq = (SELECT seq FROM log WHERE view = ?1 AND entity = p.entity"
            "  AND seq <= ?2 ORDER BY event_timestamp DESC, seq DESC LIMIT 1) ORDER BY p.id",
            (view, upto_seq))
        for entity, ets, its, text in cur:
            found[entity] = (ets, its, loads_values(text))
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    rows = [found.get(k) for k in keys]
    return NaiveMatches(view, [None if r is None else r[0] for r in rows],
                        [None if r is None else r[1] for r in rows],
                        [None if r is None else r[2] for r in rows])


def naive_view_oracle(log: OfflineLog, view: str, keys: Sequence[str]) -> NaiveMatches:
    """:func:`naive_view` by brute force (for tests)."""
    rows = log.conn.execute(
        "SELECT seq, entity, event_timestamp, ingest_ts, features FROM log WHERE view = ?",
        (view,)).fetchall()
    best: dict[str, tuple[int, int, int, str]] = {}
    for seq, entity, ets, its, features in rows:
        cur = best.get(entity)
        if cur is None or (ets, seq) > (cur[0], cur[1]):
            best[entity] = (ets, seq, its, features)
    chosen = [best.get(k) for k in keys]
    return NaiveMatches(view, [None if c is None else c[0] for c in chosen],
                        [None if c is None else c[2] for c in chosen],
                        [None if c is None else loads_values(c[3]) for c in chosen])

