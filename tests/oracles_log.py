"""Brute-force references over a whole log, for the tests (never used by the product).

- :func:`oracle_view`: the point-in-time join read literally, in plain Python over every
  log row of the view; the tests compare the real join to it.
- :func:`naive_view_oracle`: the naive last-value join by brute force.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asof_stream.definitions import Definitions
from asof_stream.events import loads_values
from asof_stream.offline.log import OfflineLog
from asof_stream.training.join import JoinMode, ViewMatches
from asof_stream.training.naive import NaiveMatches


def oracle_view(log: OfflineLog, defs: Definitions, view: str, keys: Sequence[str],
                times: Sequence[int], mode: JoinMode = JoinMode()) -> ViewMatches:
    """The join rule (docs/join.md) read literally: filter every row of the view, take the greatest."""
    rows = log.conn.execute(
        "SELECT seq, entity, event_timestamp, ingest_ts, features FROM log WHERE view = ?",
        (view,)).fetchall()
    return oracle_rows(rows, defs, view, keys, times, mode)


#: a committed log row: (seq, entity, event_timestamp, ingest_ts, features JSON text)
LogRow = tuple[int, str, int, int, str]


def oracle_rows(rows: Sequence[LogRow], defs: Definitions, view: str, keys: Sequence[str],
                times: Sequence[int], mode: JoinMode = JoinMode()) -> ViewMatches:
    """:func:`oracle_view` over given rows of ``view`` (e.g. every row ever committed,
    collected before parts of the log were sealed into segments)."""
    ttl = defs.views[view].ttl
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


def naive_view_oracle(log: OfflineLog, view: str, keys: Sequence[str]) -> NaiveMatches:
    """:func:`naive_view` by brute force (for tests)."""
    rows = log.conn.execute(
        "SELECT seq, entity, event_timestamp, ingest_ts, features FROM log WHERE view = ?",
        (view,)).fetchall()
    return naive_rows_oracle(rows, view, keys)


def naive_rows_oracle(rows: Sequence[LogRow], view: str, keys: Sequence[str]) -> NaiveMatches:
    """:func:`naive_view_oracle` over given rows of ``view``."""
    best: dict[str, tuple[int, int, int, str]] = {}
    for seq, entity, ets, its, features in rows:
        cur = best.get(entity)
        if cur is None or (ets, seq) > (cur[0], cur[1]):
            best[entity] = (ets, seq, its, features)
    chosen = [best.get(k) for k in keys]
    return NaiveMatches(view, [None if c is None else c[0] for c in chosen],
                        [None if c is None else c[2] for c in chosen],
                        [None if c is None else loads_values(c[3]) for c in chosen])
