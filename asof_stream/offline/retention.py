"""Retention: the one way history leaves the offline log (docs/offline-log.md).

Deletes log rows of a view whose ``event_timestamp`` is before a cutoff, in both tiers,
keeping by default the newest row of every entity (over both tiers), so the online store
stays rebuildable from the log (``materialize`` gives the same rows: I2 still holds).
Training sets for labels older than the cutoff change, which is the point of asking.

A segment with rows to drop is rewritten without them (or its manifest row dropped when
none remain), by the same rules as a merge: new file first, then one transaction that
swaps the manifest rows, then the old file is unlinked. The head's rows go in one
transaction. A crash between segments leaves the retention half done, never a row lost
that should stay or stored twice; running it again finishes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ..timestamps import now_micros
from .log import BUMP_HIGH_SEQ, OfflineLog
from .manifest import Segment, build_bloom, list_segments, register
from .scan import latest_records
from .seal import _ids, _new_name, _stats, segments_lock, step
from .segments import read_segment, write_segment


@dataclass(frozen=True)
class RetentionResult:
    view: str
    deleted: int
    kept: int


def apply_retention(log: OfflineLog, view: str, before: int, *, keep_latest: bool = True,
                    dry_run: bool = False) -> RetentionResult:
    """Delete rows of ``view`` with event_timestamp < ``before`` from both tiers."""
    with segments_lock(log):
        keep = {r[3] for r in latest_records(log, view)[1]} if keep_latest else set()
        deleted = sum(_retain_segment(log, seg, before, keep, dry_run)
                      for seg in list_segments(log.conn, view) if seg.min_event_timestamp < before)
        deleted += _retain_head(log, view, before, keep, dry_run)
        kept = int(log.conn.execute("SELECT count(*) FROM log WHERE view = ?",
                                    (view,)).fetchone()[0]) + log.sealed_rows(view)
    return RetentionResult(view, deleted, kept - (deleted if dry_run else 0))


def _retain_segment(log: OfflineLog, seg: Segment, before: int, keep: set[int],
                    dry_run: bool) -> int:
    table = read_segment(log.segments_dir / seg.file, seg.bytes, checksum=seg.checksum)
    stays = pc.or_(pc.greater_equal(table.column("event_timestamp"), before),
                   pc.is_in(table.column("seq"), value_set=pa.array(sorted(keep), pa.int64())))
    rest = table.filter(stays)
    gone = table.num_rows - rest.num_rows
    if dry_run or gone == 0:
        return gone
    rel = None
    if rest.num_rows:
        seqs, ets, its = _stats(rest)
        rel = _new_name(seg.view, seg.level, *seqs)
        size, checksum = write_segment(log.segments_dir / rel, rest, on_step=step)
    conn = log.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM segments WHERE id = ?", (seg.id,))
        if rel is not None:
            register(conn, seg.view, rel, rest.num_rows, seqs, ets, its, size, checksum, seg.level,
                     build_bloom(_ids(rest)), now_micros())
        _update_stats(log, seg.view)
        step("registered")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if rel is not None:
            (log.segments_dir / rel).unlink(missing_ok=True)
        raise
    (log.segments_dir / seg.file).unlink(missing_ok=True)
    return gone


def _retain_head(log: OfflineLog, view: str, before: int, keep: set[int], dry_run: bool) -> int:
    conn = log.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS retention_keep (seq INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM retention_keep")
        conn.executemany("INSERT INTO retention_keep VALUES (?)", [(s,) for s in keep])
        where = "view = ? AND event_timestamp < ? AND seq NOT IN (SELECT seq FROM retention_keep)"
        if dry_run:
            deleted = int(conn.execute(f"SELECT count(*) FROM log WHERE {where}",
                                       (view, before)).fetchone()[0])
        else:
            conn.execute(BUMP_HIGH_SEQ)  # the newest row may go: its seq must not come back
            deleted = conn.execute(f"DELETE FROM log WHERE {where}", (view, before)).rowcount
            _update_stats(log, view)
        conn.execute("DROP TABLE retention_keep")
        conn.execute("ROLLBACK" if dry_run else "COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return deleted


def _update_stats(log: OfflineLog, view: str) -> None:
    """view_stats rows and earliest timestamp over both tiers (inside the transaction)."""
    c = log.conn
    rows, first = c.execute("SELECT count(*), min(event_timestamp) FROM log WHERE view = ?",
                            (view,)).fetchone()
    srows, sfirst = c.execute("SELECT coalesce(sum(rows), 0), min(min_event_timestamp)"
                              " FROM segments WHERE view = ?", (view,)).fetchone()
    firsts = [t for t in (first, sfirst) if t is not None]
    c.execute("UPDATE view_stats SET rows = ?, earliest_event_timestamp = ? WHERE view = ?",
              (rows + srows, min(firsts) if firsts else None, view))
