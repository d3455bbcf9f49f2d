"""Commit one batch: log rows, online upserts, dead letters and positions in one transaction.

This is the only write path into the offline log; the daemon, replays, HTTP pushes
and dead-letter re-queues all call :meth:`Committer.commit` (docs/exactly-once.md).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING

from ..events import Event, EventDecoder, EventError, dumps_values
from ..offline.log import HIGH_SEQ_SQL, OfflineLog, Position
from ..offline.sqlite import damaged_message, is_busy, is_damaged
from ..online.aggstate import NOT_KEPT
from ..online.base import OnlineRow, OnlineStore, OnlineUnavailable
from ..timestamps import now_micros
from ..versions import record_versions
from .dedupe import drop_duplicates
from .sources.base import Record

if TYPE_CHECKING:
    from ..offline.manifest import SealedIds
    from ..online.aggstate import AggBatch

log = logging.getLogger(__name__)

INSERT_LOG = (
    "INSERT INTO log (seq, view, entity, event_timestamp, ingest_ts, source, position,"
    " event_id, features, def_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_DEAD = (
    "INSERT INTO dead_letters (source, position, raw, reason, error_ts) VALUES (?, ?, ?, ?, ?)"
)
UPSERT_POSITION = (
    "INSERT INTO positions (source, key, next_offset, detail, updated_ts) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (source, key) DO UPDATE SET next_offset = excluded.next_offset,"
    " detail = excluded.detail, updated_ts = excluded.updated_ts"
)
DELETE_POSITION = "DELETE FROM positions WHERE source = ? AND key = ?"  # a RETIRED key
UPSERT_STATS = """
INSERT INTO view_stats (view, rows, earliest_event_timestamp, latest_event_timestamp,
                        latest_ingest_ts, duplicates)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (view) DO UPDATE SET
    rows = rows + excluded.rows,
    earliest_event_timestamp = coalesce(min(earliest_event_timestamp, excluded.earliest_event_timestamp),
                                        earliest_event_timestamp, excluded.earliest_event_timestamp),
    latest_event_timestamp = coalesce(max(latest_event_timestamp, excluded.latest_event_timestamp),
                                      latest_event_timestamp, excluded.latest_event_timestamp),
    latest_ingest_ts = coalesce(max(latest_ingest_ts, excluded.latest_ingest_ts),
                                latest_ingest_ts, excluded.latest_ingest_ts),
    duplicates = duplicates + excluded.duplicates
"""
#: What a dead letter keeps of a record over the event size limit: its first bytes.
DEAD_LETTER_EXCERPT = 4096


def dead_letter_row(source: str, rec: Record, reason: str, now: int,
                    max_bytes: int) -> tuple[str, str, bytes, str, int]:
    """The dead_letters row of a rejected record, its raw bytes bounded.

    A record within the event size limit is kept whole (it can be re-queued once the
    definitions are fixed); a larger one keeps its first :data:`DEAD_LETTER_EXCERPT`
    bytes and its full size in the reason, so storing a rejection costs at most the
    limit, whatever a producer sends.
    """
    raw = rec.raw
    if len(raw) > max_bytes:
        raw = raw[:DEAD_LETTER_EXCERPT]
        reason = f"{reason} (raw truncated: the first {len(raw)} of {len(rec.raw)} bytes kept)"
    return (source, rec.position, raw, reason, now)


ONLINE_RETRY_MIN = 0.25  # seconds before the first retry of a store that did not answer
ONLINE_RETRY_MAX = 5.0


class StoreError(Exception):
    """A store fault that retrying will not fix (disk full, corrupt file, read-only).

    ``damaged``: the file itself is corrupt, so what was committed may be lost too.
    """

    def __init__(self, message: str, *, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged


class _Repeated(Exception):
    """The optimistic insert met a (view, event_id) already in the head or repeated in
    the batch; the transaction was rolled back and the batch is committed again with the
    ids looked up first."""


#: After a batch with a repeated event id (a replay of logged events, a producer's
#: retries), this many batches look their ids up before inserting, instead of trying the
#: optimistic insert, which would roll back each time.
LOOK_FIRST_BATCHES = 32


class PositionConflict(Exception):
    """The stored positions moved since the batch was read: another writer owns the source.

    Raised by :meth:`Committer.commit` when ``expect`` does not match; nothing is written.
    """


@dataclass(slots=True)
class BatchResult:
    """What one commit did."""

    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    high_seq: int = 0
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (position, reason)
    seconds: float = 0.0

    def add(self, other: BatchResult) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.high_seq = max(self.high_seq, other.high_seq)
        self.seconds += other.seconds


#: A row of the log table, in :data:`INSERT_LOG`'s order.
LogTuple = tuple[int, str, str, int, int, str, str, "str | None", str, str]
_EVENT_TS = itemgetter(3)

#: Decoded records: (event, position) for the good ones, (record, reason) for the bad.
Decoded = tuple[list[tuple[Event, str]], list[tuple[Record, str]]]


def decode_records(decoder: EventDecoder, records: Sequence[Record]) -> Decoded:
    """Decode and validate records; a rejection is a reason, never an exception."""
    good: list[tuple[Event, str]] = []
    bad: list[tuple[Record, str]] = []
    decoder.refresh_clock()  # the future bound: once per batch
    decode = decoder.decode
    for rec in records:
        if rec.error is not None:
            bad.append((rec, rec.error))
            continue
        try:
            good.append((decode(rec.raw), rec.position))
        except EventError as exc:
            bad.append((rec, str(exc)))
        except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
            # A decoder gap must not stop the daemon: the record is a dead letter.
            log.warning("unexpected decode error at %s: %r", rec.position, exc)
            bad.append((rec, f"cannot decode: {exc}"))
    return good, bad


def log_rows(fresh: list[tuple[Event, str]], first_seq: int, ingest_ts: int, source: str,
             versions: Mapping[str, str]) -> list[LogTuple]:
    """The log's rows of the batch's new events (:data:`INSERT_LOG`'s order), seqs from
    ``first_seq`` on."""
    return [(s, ev.view, ev.entity, ev.event_ts, ingest_ts, source, pos, ev.event_id,
             ev.features if ev.features is not None else dumps_values(ev.values),
             versions[ev.view])
            for s, (ev, pos) in enumerate(fresh, first_seq)]


def newest_and_stats(rows: list[LogTuple]) -> tuple[dict[tuple[str, str], tuple[int, int, str]],
                                                     dict[str, list[int]]]:
    """Per (view, entity), the newest row's (event_timestamp, seq, features): the greatest
    (event_timestamp, seq); and per view [rows, earliest, latest event_timestamp]."""
    # A stable sort by time keeps seq order among equal times, so the last row of a key
    # in this order is its newest (and a stream in time order is sorted in one pass).
    by_time = sorted(rows, key=_EVENT_TS)
    best = {(r[1], r[2]): (r[3], r[0], r[8]) for r in by_time}
    stats: dict[str, list[int]] = {}
    if rows and all(r[1] == rows[0][1] for r in rows):
        stats[rows[0][1]] = [len(rows), by_time[0][3], by_time[-1][3]]
        return best, stats
    for r in by_time:
        st = stats.get(r[1])
        if st is None:
            stats[r[1]] = [1, r[3], r[3]]
        else:
            st[0] += 1
            st[2] = r[3]
    return best, stats


class Committer:
    """Validates records and commits them with their positions, exactly once."""

    def __init__(self, log_: OfflineLog, online: OnlineStore | None, decoder: EventDecoder, *,
                 clock: Callable[[], int] = now_micros, busy_retries: int = 50) -> None:
        self.log = log_
        self.online = online
        self.decoder = decoder
        self.clock = clock
        self.busy_retries = busy_retries
        if online is not None and online.transactional:
            online.attach_to(log_.conn)
        #: per source view of an aggregation, its longest window (None: all history);
        #: the plan is set on the store by :func:`~asof_stream.stores.open_stores`
        self._agg_keep = online.agg_plan.keep if online is not None and online.agg_plan else {}
        self.versions = record_versions(log_.conn, decoder.defs, clock())
        self._sealed: SealedIds | None = None
        # While a non-transactional store (Redis) is down, its writes are skipped until
        # this monotonic time (backing off to ONLINE_RETRY_MAX); the healer catches it up.
        self._online_retry_at = 0.0
        self._online_backoff = 0.0
        #: batches left that look their event ids up in the head before inserting
        self._look_first = 0

    def _sealed_ids(self) -> SealedIds:
        """The sealed tier's event-id check (Bloom filters cached across commits)."""
        if self._sealed is None:
            from ..offline.manifest import SealedIds

            self._sealed = SealedIds(self.log.segments_dir)
        return self._sealed

    def decode(self, records: Sequence[Record]) -> Decoded:
        return decode_records(self.decoder, records)

    def positions(self, source: str, keys: Collection[str] | None = None) -> dict[str, Position]:
        """The committed positions of one source (``keys``: the ones it is about to read)."""
        return self.log.positions(source).get(source, {})

    def commit(self, source: str, records: Sequence[Record], positions: Sequence[Position] = (),
               *, available_at: int | None = None,
               decoded: Decoded | None = None,
               expect: Mapping[str, int | None] | None = None,
               also: Callable[[sqlite3.Connection], None] | None = None,
               ) -> BatchResult:
        """Decode, then commit everything in one transaction; retries while the file is busy.

        ``expect`` fences the commit: for each position key, the ``next_offset`` that must
        still be stored for ``source`` (None: no row yet). If another writer moved it, the
        transaction is rolled back and :class:`PositionConflict` raised. ``also`` runs
        more statements in the same transaction, just before COMMIT (dead-letter re-queues
        mark their rows with it).
        """
        started = time.perf_counter()
        good, bad = decoded if decoded is not None else self.decode(records)
        for attempt in range(self.busy_retries + 1):
            try:
                # Optimistic: the head's unique (view, event_id) index finds a repeated id
                # while the rows go in; after a batch that had one, look first for a while.
                look_first = self._look_first > 0
                try:
                    result = self._commit_once(source, good, bad, positions, available_at,
                                               expect, also, look_first=look_first)
                except _Repeated:  # rolled back: nothing of it is written
                    self._look_first = LOOK_FIRST_BATCHES
                    result = self._commit_once(source, good, bad, positions, available_at,
                                               expect, also, look_first=True)
                if look_first:
                    self._look_first -= 1
                break
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or attempt == self.busy_retries:
                    raise StoreError(f"{self.log.path}: {exc}") from exc
                log.warning("offline log is busy, retrying commit (%s)", exc)
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
            except sqlite3.DatabaseError as exc:
                if is_damaged(exc):
                    raise StoreError(damaged_message(self.log.path, exc), damaged=True) from exc
                raise StoreError(f"{self.log.path}: {exc}") from exc
        result.seconds = time.perf_counter() - started
        return result

    def _commit_once(self, source: str, good: list[tuple[Event, str]],
                     bad: list[tuple[Record, str]], positions: Sequence[Position],
                     available_at: int | None,
                     expect: Mapping[str, int | None] | None = None,
                     also: Callable[[sqlite3.Connection], None] | None = None, *,
                     look_first: bool = True) -> BatchResult:
        conn = self.log.conn
        now = self.clock()
        ingest_ts = available_at if available_at is not None else now
        result = BatchResult(rejected=len(bad), rejects=[(r.position, why) for r, why in bad])
        conn.execute("BEGIN IMMEDIATE")
        try:
            if expect:
                self._check_positions(conn, source, expect)
            # The high-water mark, not max(seq) of the head: sealing empties the head.
            seq = int(conn.execute(HIGH_SEQ_SQL).fetchone()[0])
            first_seq = seq + 1
            fresh = drop_duplicates(conn, good, self._sealed_ids, head=look_first)
            rows = log_rows(fresh, first_seq, ingest_ts, source, self.versions)
            seq += len(rows)
            best, stats = newest_and_stats(rows)
            try:
                conn.executemany(INSERT_LOG, rows)
            except sqlite3.IntegrityError:
                if look_first:
                    raise
                raise _Repeated() from None  # rolled back below; then looked up
            # In key order: the store's B-tree is walked once instead of at random.
            upserts = [OnlineRow(view, entity, ts, s, ingest_ts, features)
                       for (view, entity), (ts, s, features) in sorted(best.items())]
            agg = None
            if self._agg_keep and rows:
                assert self.online is not None and self.online.agg_plan is not None
                plan = self.online.agg_plan
                if self.online.transactional:  # it copies the kept rows from the log table
                    agg = plan.batch_in_log(first_seq, seq, now, best, stats)
                else:
                    lows = plan.lows(now)
                    # (view, entity, event_timestamp, seq, ingest_ts, features) of the rows
                    # a window still holds as of now
                    agg_rows = [(r[1], r[2], r[3], r[0], r[4], r[8]) for r in rows
                                if r[3] > lows.get(r[1], NOT_KEPT)]
                    if agg_rows:
                        agg = plan.batch(agg_rows, now, best, filtered=True)
            if self.online is not None and self.online.transactional and upserts:
                if agg is None:
                    self.online.write_in_transaction(conn, upserts, seq)
                else:
                    self.online.write_in_transaction(conn, upserts, seq, agg)
            # per view, the events offered (stored + duplicates)
            offered: Mapping[str, int] = ({v: st[0] for v, st in stats.items()}
                                          if len(fresh) == len(good)
                                          else Counter(ev.view for ev, _ in good))
            for view, total in offered.items():
                n, first, latest = stats.get(view) or (0, None, None)
                conn.execute(UPSERT_STATS,
                             (view, n, first, latest, ingest_ts if n else None, total - n))
            if bad:
                limit = self.decoder.max_bytes
                conn.executemany(INSERT_DEAD, [dead_letter_row(source, r, why, now, limit)
                                               for r, why in bad])
            if positions:
                conn.executemany(UPSERT_POSITION, [(source, p.key, p.next_offset, p.detail, now)
                                                   for p in positions if p.next_offset >= 0])
                conn.executemany(DELETE_POSITION, [(source, p.key) for p in positions
                                                   if p.next_offset < 0])
            if also is not None:
                also(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        result.stored = len(rows)
        result.duplicates = len(good) - len(rows)
        result.high_seq = seq
        if self.online is not None and not self.online.transactional and upserts:
            # The log is committed; a crash here is healed by catch_up() on the next start.
            self._apply_online(upserts, seq, first_seq, agg)
        return result

    def _apply_online(self, upserts: list[OnlineRow], seq: int, first_seq: int,
                      agg: AggBatch | None = None) -> None:
        """Write a committed batch to a non-transactional store; if it does not answer,
        the batch stays in the log only (the truth) and the healer applies it later."""
        assert self.online is not None
        if time.monotonic() < self._online_retry_at:
            return
        try:
            if agg is None:
                self.online.apply(upserts, seq, low_seq=first_seq)
            else:
                self.online.apply(upserts, seq, low_seq=first_seq, agg=agg)
        except OnlineUnavailable as exc:
            first = self._online_backoff == 0
            self._online_backoff = min(max(ONLINE_RETRY_MIN, self._online_backoff * 2),
                                       ONLINE_RETRY_MAX)
            self._online_retry_at = time.monotonic() + self._online_backoff
            if first:
                log.warning("%s; batches are committed to the log and the online store will"
                            " be caught up when it answers", exc)
            return
        self._online_backoff = 0.0

    @staticmethod
    def _check_positions(conn: sqlite3.Connection, source: str,
                         expect: Mapping[str, int | None]) -> None:
        for key, want in expect.items():
            row = conn.execute("SELECT next_offset FROM positions WHERE source = ? AND key = ?",
                               (source, key)).fetchone()
            have = None if row is None else int(row[0])
            if have != want:
                raise PositionConflict(f"{source} {key}: stored position is {have}, expected {want}")
