"""The skew audit: does the online store hold exactly what the log says it should?

For every (view, entity), the expected online row is the as-known-at join of the log at
``now``: among the log rows with ``ingest_ts <= now``, the one with the greatest
``(event_timestamp, seq)``. With the monotonic rule (docs/online.md) the online
store equals it; any difference means something wrote to the online store from
outside, or a row was lost. Kinds of difference:

- ``missing_online``: the log has a row for the key, the online store none;
- ``missing_in_log``: the online store has a key the log never saw (as of now);
- ``different_row``: the online row is another log row (``seq``/``event_timestamp``);
- ``different_values``: same ``seq``, but other features or times than the log row;
- ``known_later``: the online row is a log row whose ``ingest_ts`` is after now (a
  replay with ``available_at`` in the future); listed, since the store is ahead of
  what was known at now.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from ..events import loads_values, same_value
from ..offline.log import OfflineLog
from ..offline.manifest import list_segments
from ..offline.scan import latest_records, sealed_row
from ..online.base import OnlineRow, OnlineStore
from ..timestamps import to_iso

MISSING_ONLINE = "missing_online"
MISSING_IN_LOG = "missing_in_log"
DIFFERENT_ROW = "different_row"
DIFFERENT_VALUES = "different_values"
KNOWN_LATER = "known_later"


@dataclass(frozen=True)
class Difference:
    """One key where the online store and the log disagree."""

    view: str
    entity: str
    kind: str
    online: dict[str, Any] | None
    log: dict[str, Any] | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SkewReport:
    """What :func:`audit` found."""

    now: int
    checked: dict[str, int]  # per view: keys compared (union of both sides)
    differences: list[Difference]

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for d in self.differences:
            counts[d.kind] = counts.get(d.kind, 0) + 1
        return {"as_known_at": to_iso(self.now), "checked": self.checked,
                "differences_total": len(self.differences), "by_kind": counts,
                "differences": [d.to_dict() for d in self.differences]}


def _row_dict(seq: int, event_ts: int, ingest_ts: int, features: str) -> dict[str, Any]:
    try:
        values: Any = loads_values(features)
    except ValueError:
        values = features
    return {"seq": seq, "event_timestamp": to_iso(event_ts), "ingest_ts": to_iso(ingest_ts),
            "features": values}


def same_features(a: str, b: str, *, absent_is_null: bool = False) -> bool:
    """Feature JSON texts equal as values (key order and NaN spelling do not matter).

    ``absent_is_null``: a missing key equals a null (a sealed row's text names every
    feature, null where the event had none, so it cannot tell the two apart).
    """
    if a == b:
        return True
    try:
        da, db = loads_values(a), loads_values(b)
    except ValueError:
        return False
    if absent_is_null:
        da = {k: v for k, v in da.items() if v is not None}
        db = {k: v for k, v in db.items() if v is not None}
    return da.keys() == db.keys() and all(same_value(da[k], db[k]) for k in da)


def known_rows(log: OfflineLog, view: str, now: int) -> Iterator[tuple[str, int, int, int, str]]:
    """Per entity of ``view``: (entity, seq, event_ts, ingest_ts, features) known at ``now``,
    over both tiers of the log."""
    _, records = latest_records(log, view, known_at=now)
    for _, entity, ets, seq, its, text in records:
        yield entity, seq, ets, its, text


def _log_row(log: OfflineLog, view: str, entity: str, seq: int) -> tuple[int, int, str] | None:
    """(event_ts, ingest_ts, features) of log row ``seq`` if it belongs to this key."""
    row = log.conn.execute(
        "SELECT event_timestamp, ingest_ts, features FROM log"
        " WHERE seq = ? AND view = ? AND entity = ?", (seq, view, entity)).fetchone()
    if row is None:
        sealed = sealed_row(log, view, entity, seq)
        return None if sealed is None else (sealed[2], sealed[4], sealed[5])
    return int(row[0]), int(row[1]), str(row[2])


def _sealed_below(log: OfflineLog, view: str) -> int:
    """The highest seq sealed for ``view`` (0: none): rows at or below it are in segments,
    whose features text names every feature (null where the event had none)."""
    if not log.has_tiers():
        return 0
    return max((s.max_seq for s in list_segments(log.conn, view)), default=0)


def _compare(log: OfflineLog, view: str, entity: str, on: OnlineRow,
             known: tuple[int, int, int, str] | None, now: int,
             sealed_upto: int = 0) -> Difference | None:
    online = _row_dict(on.seq, on.event_ts, on.ingest_ts, on.features)

    def same(features: str, seq: int) -> bool:
        return same_features(on.features, features, absent_is_null=seq <= sealed_upto)

    if known is None:
        later = _log_row(log, view, entity, on.seq)
        if later is not None and later[1] > now and later[0] == on.event_ts \
                and same(later[2], on.seq):
            return Difference(view, entity, KNOWN_LATER, online, None,
                              f"online holds log seq {on.seq}, ingested at {to_iso(later[1])} "
                              "(after now); the log knew no row for this key at now")
        return Difference(view, entity, MISSING_IN_LOG, online, None,
                          "online row for a key the log has no row for (as of now)")
    seq, event_ts, ingest_ts, features = known
    logd = _row_dict(seq, event_ts, ingest_ts, features)
    if on.seq != seq:
        later = _log_row(log, view, entity, on.seq) if on.seq > seq else None
        if later is not None and later[1] > now and (on.event_ts, on.seq) > (event_ts, seq) \
                and later[0] == on.event_ts and same(later[2], on.seq):
            return Difference(view, entity, KNOWN_LATER, online, logd,
                              f"online holds log seq {on.seq}, ingested at {to_iso(later[1])} "
                              f"(after now); known at now: seq {seq}")
        return Difference(view, entity, DIFFERENT_ROW, online, logd,
                          f"online holds seq {on.seq} at {to_iso(on.event_ts)}, the log's latest "
                          f"known row is seq {seq} at {to_iso(event_ts)}")
    problems = []
    if on.event_ts != event_ts:
        problems.append("event_timestamp")
    if on.ingest_ts != ingest_ts:
        problems.append("ingest_ts")
    if not same(features, seq):
        try:
            a, b = loads_values(on.features), loads_values(features)
            if seq <= sealed_upto:
                a = {k: v for k, v in a.items() if v is not None}
                b = {k: v for k, v in b.items() if v is not None}
            keys = sorted(k for k in a.keys() | b.keys()
                          if k not in a or k not in b or not same_value(a[k], b[k]))
            problems.append("features " + ", ".join(keys))
        except ValueError:
            problems.append("features (not valid JSON online)")
    if problems:
        return Difference(view, entity, DIFFERENT_VALUES, online, logd,
                          f"seq {seq}: online differs in " + "; ".join(problems))
    return None


def _known_row(log: OfflineLog, view: str, entity: str,
               now: int) -> tuple[int, int, int, str] | None:
    _, records = latest_records(log, view, known_at=now, entity=entity)
    if not records:
        return None
    _, _, ets, seq, its, text = records[0]
    return int(seq), int(ets), int(its), str(text)


def audit(log: OfflineLog, online: OnlineStore, views: list[str], now: int, *,
          clock: Callable[[], int] | None = None,
          keep: Callable[[str], bool] | None = None) -> SkewReport:
    """Compare every online row of ``views`` with the log as known at ``now``.

    The daemon may commit while the audit reads the two stores, so with a ``clock``
    each difference found is checked again, key by key, against fresh reads of both
    stores as known at ``clock()`` (taken after the first pass); only differences that
    remain are reported (a batch that landed between the two reads is not tampering).
    ``keep``: audit only the online rows of the entities it accepts (those of one shard).
    """
    differences: list[Difference] = []
    checked: dict[str, int] = {}
    for view in views:
        expected = {e: (s, t, i, f) for e, s, t, i, f in known_rows(log, view, now)}
        sealed_upto = _sealed_below(log, view)
        seen: set[str] = set()
        found: list[Difference] = []
        for on in online.entries(view):
            if keep is not None and not keep(on.entity):
                continue
            seen.add(on.entity)
            diff = _compare(log, view, on.entity, on, expected.get(on.entity), now, sealed_upto)
            if diff is not None:
                found.append(diff)
        for entity in sorted(expected.keys() - seen):
            s, t, i, f = expected[entity]
            found.append(Difference(view, entity, MISSING_ONLINE, None, _row_dict(s, t, i, f),
                                    f"the log's latest known row (seq {s}) is not online"))
        checked[view] = len(seen | expected.keys())
        if clock is not None and found:
            later = max(now, clock())
            found = [d for d in (_recheck(log, online, d, later) for d in found) if d is not None]
        differences.extend(found)
    return SkewReport(now, checked, differences)


def _recheck(log: OfflineLog, online: OnlineStore, d: Difference, now: int) -> Difference | None:
    on = online.get(d.view, [d.entity])[0]
    known = _known_row(log, d.view, d.entity, now)
    if on is None:
        if known is None:
            return None
        s, t, i, f = known
        return Difference(d.view, d.entity, MISSING_ONLINE, None, _row_dict(s, t, i, f),
                          f"the log's latest known row (seq {s}) is not online")
    return _compare(log, d.view, d.entity, on, known, now, _sealed_below(log, d.view))


def dumps(report: SkewReport) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)
