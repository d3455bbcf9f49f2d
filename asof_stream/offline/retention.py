"""Retention: the one way history leaves the offline log (docs/offline-log.md).

Deletes log rows of a view whose ``event_timestamp`` is before a cutoff, keeping by
default the newest row of every entity, so the online store stays rebuildable from the
log (``materialize`` gives the same rows: I2 still holds). Training sets for labels older
than the cutoff change, which is the point of asking for it.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def apply_retention(log: OfflineLog, view: str, before: int, *, keep_latest: bool = True,
                    dry_run: bool = False) -> RetentionResult:
    """Delete rows of ``view`` with event_timestamp < ``before`` in one transaction."""
    conn = log.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS retention_keep (seq INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM retention_keep")
        if keep_latest:
            conn.execute(f"INSERT INTO retention_keep {_LATEST}", (view,))
        where = ("view = ? AND event_timestamp < ? AND seq NOT IN (SELECT seq FROM retention_keep)")
        if dry_run:
            deleted = int(conn.execute(f"SELECT count(*) FROM log WHERE {where}",
                                       (view, before)).fetchone()[0])
        else:
            deleted = conn.execute(f"DELETE FROM log WHERE {where}", (view, before)).rowcount
            rows, first = conn.execute("SELECT count(*), min(event_timestamp) FROM log WHERE view = ?",
                                       (view,)).fetchone()
            conn.execute("UPDATE view_stats SET rows = ?, earliest_event_timestamp = ? WHERE view = ?",
                         (rows, first, view))
        kept = int(conn.execute("SELECT count(*) FROM log WHERE view = ?", (view,)).fetchone()[0])
        conn.execute("DROP TABLE retention_keep")
        conn.execute("ROLLBACK" if dry_run else "COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return RetentionResult(view, deleted, kept - (0 if not dry_run else deleted))
