"""The naive last-value join: each entity's newest row, whatever the label's time.

It is what a careless join does; the leakage report (:mod:`.leakage`) compares it to the
point-in-time join and counts the cells that came from the future.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..events import loads_values
from ..offline.log import OfflineLog

_temp_ids = itertools.count()


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
