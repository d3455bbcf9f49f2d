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

Every run is recorded in the log's ``retention_runs`` table, in each deleting
transaction: when, the cutoff, and per view how many rows went and the range of their
seqs. ``rebuild`` reads it to refuse a rebuild that could no longer see rows the
original training set saw.

Over partition shards (:func:`apply_retention_config`) each shard runs its own
transactions and records its share in its own ``retention_runs``; an entity's rows are
all in one shard, so "keep each entity's newest row" is exact per shard.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ..config import Config
from ..timestamps import now_micros, to_iso
from .log import BUMP_HIGH_SEQ, OfflineLog, open_log
from .manifest import Segment, build_bloom, list_segments, register
from .scan import latest_records
from .seal import _ids, _new_name, _stats, segments_lock, step
from .segments import read_segment, write_segment


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
    """Delete rows of ``view`` with event_timestamp < ``before`` from both tiers, and
    record the run (``now``: its time, default the clock) unless ``dry_run``."""
    run = _Run(now_micros() if now is None else now, before, view, keep_latest)
    with segments_lock(log):
        keep = {r[3] for r in latest_records(log, view)[1]} if keep_latest else set()
        deleted = sum(_retain_segment(log, seg, before, keep, dry_run, run)
                      for seg in list_segments(log.conn, view) if seg.min_event_timestamp < before)
        deleted += _retain_head(log, view, before, keep, dry_run, run)
        kept = int(log.conn.execute("SELECT count(*) FROM log WHERE view = ?",
                                    (view,)).fetchone()[0]) + log.sealed_rows(view)
    return RetentionResult(view, deleted, kept - (deleted if dry_run else 0))


def apply_retention_config(config: Config, view: str, before: int, *, keep_latest: bool = True,
                           dry_run: bool = False, now: int | None = None) -> RetentionResult:
    """:func:`apply_retention` on a config's log: the one file, or every partition shard in
    turn (its own transactions, recorded in its own ``retention_runs``), results added up."""
    from .shards import existing_shards, is_sharded

    paths = list(existing_shards(config).values()) if is_sharded(config) else [config.offline_path]
    now = now_micros() if now is None else now
    deleted = kept = 0
    for path in paths:
        with open_log(path) as log:
            r = apply_retention(log, view, before, keep_latest=keep_latest, dry_run=dry_run,
                                now=now)
        deleted += r.deleted
        kept += r.kept
    return RetentionResult(view, deleted, kept)


@dataclass(frozen=True)
class _Run:
    """The run being made: each deleting transaction records its share of it."""

    run_ts: int
    cutoff: int
    view: str
    keep_latest: bool

    def record(self, conn: sqlite3.Connection, deleted: int, lo: int | None,
               hi: int | None) -> None:
        conn.execute("INSERT INTO retention_runs (run_ts, cutoff, view, deleted, min_seq,"
                     " max_seq, keep_latest) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (self.run_ts, self.cutoff, self.view, deleted, lo, hi,
                      int(self.keep_latest)))


def _retain_segment(log: OfflineLog, seg: Segment, before: int, keep: set[int],
                    dry_run: bool, run: _Run) -> int:
    table = read_segment(log.segments_dir / seg.file, seg.bytes, checksum=seg.checksum)
    stays = pc.or_(pc.greater_equal(table.column("event_timestamp"), before),
                   pc.is_in(table.column("seq"), value_set=pa.array(sorted(keep), pa.int64())))
    rest = table.filter(stays)
    gone = table.num_rows - rest.num_rows
    gone_seqs = table.filter(pc.invert(stays)).column("seq")
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
        run.record(conn, gone, pc.min(gone_seqs).as_py(), pc.max(gone_seqs).as_py())
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


def _retain_head(log: OfflineLog, view: str, before: int, keep: set[int], dry_run: bool,
                 run: _Run) -> int:
    conn = log.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS retention_keep (seq INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM retention_keep")
        conn.executemany("INSERT INTO retention_keep VALUES (?)", [(s,) for s in keep])
        where = "view = ? AND event_timestamp < ? AND seq NOT IN (SELECT seq FROM retention_keep)"
        count, lo, hi = conn.execute(f"SELECT count(*), min(seq), max(seq) FROM log WHERE {where}",
                                     (view, before)).fetchone()
        deleted = int(count)
        if not dry_run:
            conn.execute(BUMP_HIGH_SEQ)  # the newest row may go: its seq must not come back
            conn.execute(f"DELETE FROM log WHERE {where}", (view, before))
            _update_stats(log, view)
            run.record(conn, deleted, lo, hi)
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
