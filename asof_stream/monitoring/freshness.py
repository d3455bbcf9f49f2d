"""Freshness per view: how old the newest data is, against the view's objective.

For each view: ``event_age`` = now - the latest ``event_timestamp`` in the log, and
``ingest_age`` = now - the latest ``ingest_ts``. A view with ``freshness = "1h"`` is
judged on its event age (what a model reading the online store actually sees):

- ``BREACH``: event age > objective, or no data at all;
- ``NEAR``: event age > 80% of the objective (:data:`NEAR_FRACTION`), not yet a breach;
- ``OK``: otherwise.

A view without an objective is ``NO_OBJECTIVE`` (or ``NO_DATA`` when it is empty) and
never fails. :func:`update_metrics` sets the ``asof_view_freshness_seconds`` and
``asof_view_ingest_age_seconds`` gauges from the same numbers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .. import metrics
from ..config import Config
from ..definitions import Definitions
from ..offline.log import OfflineLog
from ..offline.shard_union import open_reader
from ..timestamps import now_micros, to_iso

NEAR_FRACTION = 0.8

OK = "OK"
NEAR = "NEAR"
BREACH = "BREACH"
NO_OBJECTIVE = "NO_OBJECTIVE"
NO_DATA = "NO_DATA"


@dataclass(frozen=True)
class ViewFreshness:
    """The freshness of one view at one instant (ages in seconds, None without data)."""

    view: str
    status: str
    rows: int
    latest_event_timestamp: str | None
    latest_ingest_ts: str | None
    event_age_seconds: float | None
    ingest_age_seconds: float | None
    objective_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(event_age_us: int | None, objective_us: int | None) -> str:
    """The status of one view from its event age and objective (both microseconds)."""
    if objective_us is None:
        return NO_DATA if event_age_us is None else NO_OBJECTIVE
    if event_age_us is None or event_age_us > objective_us:
        return BREACH
    if event_age_us > NEAR_FRACTION * objective_us:
        return NEAR
    return OK


def view_freshness(defs: Definitions, stats: Mapping[str, Mapping[str, Any]],
                   now: int) -> list[ViewFreshness]:
    """Freshness of every defined view from ``OfflineLog.view_stats()`` at ``now`` (µs)."""
    out = []
    for name, view in defs.views.items():
        st = stats.get(name, {})
        latest = st.get("latest_event_timestamp")
        ingest = st.get("latest_ingest_ts")
        event_age = None if latest is None else now - latest
        ingest_age = None if ingest is None else now - ingest
        out.append(ViewFreshness(
            view=name,
            status=judge(event_age, view.freshness),
            rows=int(st.get("rows", 0)),
            latest_event_timestamp=to_iso(latest),
            latest_ingest_ts=to_iso(ingest),
            event_age_seconds=None if event_age is None else event_age / 1e6,
            ingest_age_seconds=None if ingest_age is None else ingest_age / 1e6,
            objective_seconds=None if view.freshness is None else view.freshness / 1e6,
        ))
    return out


def _stats(log: OfflineLog) -> dict[str, dict[str, Any]]:
    try:
        return log.view_stats()
    except sqlite3.OperationalError:  # a read-only log that has never been written
        return {}


def check_freshness(config: Config, now: int | None = None) -> list[ViewFreshness]:
    """Freshness of every view of a config; a log that does not exist yet has no data."""
    now = now_micros() if now is None else now
    log = open_reader(config)
    if log is None:
        return view_freshness(config.defs, {}, now)
    try:
        return view_freshness(config.defs, _stats(log), now)
    finally:
        log.close()


def any_breach(report: list[ViewFreshness]) -> bool:
    return any(v.status == BREACH for v in report)


def update_metrics(defs: Definitions, stats: Mapping[str, Mapping[str, Any]],
                   now: int | None = None) -> list[ViewFreshness]:
    """Set the freshness gauges of every view from ``OfflineLog.view_stats()``.

    The feature server calls this on each ``GET /metrics`` (it already reads the stats
    on its commit thread). A view without data has no sample (its labels are removed),
    so an alert on ``absent()`` can tell "empty" from "fresh". Returns the report.
    """
    now = now_micros() if now is None else now
    report = view_freshness(defs, stats, now)
    for v in report:
        for gauge, age in ((metrics.FRESHNESS, v.event_age_seconds),
                           (metrics.INGEST_FRESHNESS, v.ingest_age_seconds)):
            if age is None:
                try:
                    gauge.remove(v.view)
                except KeyError:
                    pass
            else:
                gauge.labels(v.view).set(age)
    return report
