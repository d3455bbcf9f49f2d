"""Retention: the one way history leaves the offline log.

Deletes log rows of a view whose ``event_timestamp`` is before a cutoff, keeping by
default the newest row of every entity, so the online store stays rebuildable from the
log (``materialize`` gives the same rows: I2 still holds). Training sets for labels older
than the cutoff change, which is the point of asking for it.

Every run is recorded in the log's ``retention_runs`` table, in the deleting
transaction: when, the cutoff, and per view how many rows went and the range of their
seqs. ``rebuild`` reads it to refuse a rebuild that could no longer see rows the
original training set saw.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ..timestamps import now_micros, to_iso
from .log import OfflineLog

_LATEST = """
SELECT seq FROM (
    SELECT seq, row_number() OVER (PARTITION BY entity ORDER BY event_timestamp DESC, seq DESC) AS rn
    FROM log WHERE view = ?)
WHERE rn = 1
"""


@dataclass(frozen=True)
class RetentionResult:
    view: str
    deleted: int
    kept: int


@dataclass(frozen=True)
class RetentionRun:
    """One view's part of one recorded retention run."""

    run_ts: int  # when it ran (UTC microseconds)
    cutoff: int  # rows with event_timestamp < cutoff went
    view: str
    deleted: int
    min_seq: int | None  # the seqs of the deleted rows lie in [min_seq, max_seq]
    max_seq: int | None

    def describe(self) -> str:
        return (f"retention run at {to_iso(self.run_ts)} (cutoff {to_iso(self.cutoff)})"
                f" deleted {self.deleted} rows of view {self.view}"
                f" (seq {self.min_seq}..{self.max_seq})")


def apply_retention(log: OfflineLog, view: str, before: int, *, keep_latest: bool = True,
                    dry_run: bool = False, now: int | None = None) -> RetentionResult:
    """Delete rows of ``view`` with event_timestamp < ``before`` in one transaction, and
    record the run (``now``: its time, default the clock) unless ``dry_run``."""
    conn = log.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS retention_keep (seq INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM retention_keep")
        if keep_latest:
            conn.execute(f"INSERT INTO retention_keep {_LATEST}", (view,))
        where = ("view = ? AND event_timestamp < ? AND seq NOT IN (SELECT seq FROM retention_keep)")
        count, lo, hi = conn.execute(f"SELECT count(*), min(seq), max(seq) FROM log WHERE {where}",
                                     (view, before)).fetchone()
        deleted = int(count)
        if not dry_run:
            conn.execute(f"DELETE FROM log WHERE {where}", (view, before))
            rows, first = conn.execute("SELECT count(*), min(event_timestamp) FROM log WHERE view = ?",
                                       (view,)).fetchone()
            conn.execute("UPDATE view_stats SET rows = ?, earliest_event_timestamp = ? WHERE view = ?",
                         (rows, first, view))
            conn.execute("INSERT INTO retention_runs (run_ts, cutoff, view, deleted, min_seq,"
                         " max_seq, keep_latest) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (now_micros() if now is None else now, before, view, deleted, lo, hi,
                          int(keep_latest)))
        kept = int(conn.execute("SELECT count(*) FROM log WHERE view = ?", (view,)).fetchone()[0])
        conn.execute("DROP TABLE retention_keep")
        conn.execute("ROLLBACK" if dry_run else "COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return RetentionResult(view, deleted, kept - (0 if not dry_run else deleted))


def retention_runs(conn: sqlite3.Connection, *, after: int | None = None,
                   upto_seq: int | None = None, views: list[str] | None = None,
                   ) -> list[RetentionRun]:
    """Recorded runs that deleted rows: ran after ``after``, deleted some row with a seq
    at most ``upto_seq``, of one of ``views`` (each filter optional); oldest first.
    A log written before runs were recorded has none."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                    " AND name = 'retention_runs'").fetchone() is None:
        return []
    sql = ("SELECT run_ts, cutoff, view, deleted, min_seq, max_seq FROM retention_runs"
           " WHERE deleted > 0")
    params: list[object] = []
    if after is not None:
        sql += " AND run_ts > ?"
        params.append(after)
    if upto_seq is not None:
        sql += " AND min_seq <= ?"
        params.append(upto_seq)
    if views is not None:
        sql += f" AND view IN ({','.join('?' * len(views))})"
        params.extend(views)
    return [RetentionRun(*r) for r in conn.execute(sql + " ORDER BY run_ts, id", params)]
