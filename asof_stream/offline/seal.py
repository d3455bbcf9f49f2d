"""Sealing head rows into segments, and merging segments in tiers.

Each operation writes its new file first (temp name, fsync, rename, folder fsync), then
in ONE short SQLite transaction registers it and removes what it replaces (the head rows
it sealed, or the manifest rows of the merged segments). Files replaced by a merge are
unlinked after that commit. So at every instant, across any crash, each log row is in
exactly one registered place; a crash leaves at most an unregistered file, removed by
the next seal or compaction (both hold ``<log>.segments/.lock``, so they never remove a
file that another sealer is about to register).

Merging: a view's segments are grouped by level (a seal writes level 0); when a level
holds ``fanout`` segments or more, they are merged into one of the next level, so a view
has O(fanout * log N) segments.

``ASOF_STREAM_SEAL_CRASH=<step>[:<n>]`` makes the process SIGKILL itself at the n-th
time (default 1st) it reaches that step, and ``ASOF_STREAM_SEAL_SLOW=<seconds>`` sleeps
at every step (the crash tests use both); steps: ``segment-written``, ``segment-renamed``,
``registered`` (inside the transaction, before COMMIT), ``committed``, ``unlinked-one``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from ..definitions import Definitions
from ..timestamps import now_micros
from .log import BUMP_HIGH_SEQ, OfflineLog
from .manifest import Segment, build_bloom, list_segments, register
from .seal_read import head_segment_table as head_segment_table  # export.py's
from .seal_read import read_head_for_seal
from .segments import (
    SORT_KEYS,
    file_checksum,
    read_segment,
    write_segment,
)

log = logging.getLogger(__name__)

CRASH_ENV = "ASOF_STREAM_SEAL_CRASH"
HEAD_META_SQL = ("SELECT seq, event_id, source, position, def_version FROM log"
                 " WHERE view = ? AND seq <= ? ORDER BY entity, event_timestamp, seq")

_reached: dict[str, int] = {}


class StopEvent(Protocol):
    """A threading or a multiprocessing Event."""

    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


def step(name: str) -> None:
    """A named point of sealing/compaction (where the crash tests kill the process)."""
    want = os.environ.get(CRASH_ENV)
    if want:
        target, _, nth = want.partition(":")
        if target == name:
            _reached[name] = _reached.get(name, 0) + 1
            if _reached[name] == int(nth or 1):
                os.kill(os.getpid(), signal.SIGKILL)
    slow = os.environ.get("ASOF_STREAM_SEAL_SLOW")
    if slow:
        time.sleep(float(slow))


@dataclass
class SealStats:
    sealed_rows: int = 0
    segments_written: int = 0
    merged_segments: int = 0
    orphans_removed: int = 0
    seconds: float = 0.0
    views: dict[str, int] = field(default_factory=dict)


@contextmanager
def segments_lock(log_: OfflineLog) -> Iterator[None]:
    """One sealer/compactor per log at a time (across processes)."""
    log_.segments_dir.mkdir(parents=True, exist_ok=True)
    with open(log_.segments_dir / ".lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def remove_orphans(log_: OfflineLog) -> int:
    """Delete files under the segments folder that the manifest does not register."""
    known = {s.file for s in list_segments(log_.conn)}
    removed = 0
    root = log_.segments_dir
    if not root.exists():
        return 0
    for path in root.glob("*/*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in known:
            path.unlink()
            removed += 1
            log.info("removed unregistered segment file %s", path)
    return removed


def _new_name(view: str, level: int, lo: int, hi: int) -> str:
    return f"{view}/L{level}-{lo:012d}-{hi:012d}-{uuid.uuid4().hex[:8]}.parquet"


def _stats(table: pa.Table) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    def mm(name: str) -> tuple[int, int]:
        r = pc.min_max(table.column(name))
        return int(r["min"].as_py()), int(r["max"].as_py())
    return mm("seq"), mm("event_timestamp"), mm("ingest_ts")


def _ids(table: pa.Table) -> list[str]:
    return [i for i in table.column("event_id").to_pylist() if i is not None]


@contextmanager
def _registering(log_: OfflineLog, rel: str) -> Iterator[None]:
    """The one short transaction that registers the new file ``rel``: committed when the
    block returns; rolled back, and the file unlinked, when it raises."""
    conn = log_.conn
    conn.execute("BEGIN IMMEDIATE")
    locked = time.perf_counter()
    try:
        yield
        step("registered")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        (log_.segments_dir / rel).unlink(missing_ok=True)
        raise
    # How long commits were kept waiting (the write lock): scripts/bench_log.py --daemon
    # reads it from the sealer's log lines.
    log.info("segment registered", extra={"file": rel, "lock_ms": round(
        (time.perf_counter() - locked) * 1000, 1)})
    step("committed")


def seal_view(log_: OfflineLog, defs: Definitions, view: str, *, upto_seq: int | None = None,
              min_rows: int = 1) -> int:
    """Seal the head rows of ``view`` (up to ``upto_seq``) into one segment; returns rows.

    Call with :func:`segments_lock` held. Reads from a snapshot while commits go on.
    """
    conn = log_.conn
    _ = defs.views[view]  # an unknown view: a KeyError before anything is read
    conn.execute("BEGIN")
    try:
        bound = int(conn.execute("SELECT coalesce(max(seq), 0) FROM log WHERE view = ?",
                                 (view,)).fetchone()[0])
        if upto_seq is not None:
            bound = min(bound, upto_seq)
        table = read_head_for_seal(conn, defs, view, bound)
    finally:
        conn.execute("COMMIT")
    if not table.num_rows or table.num_rows < min_rows:
        return 0
    table = table.sort_by(SORT_KEYS)
    seqs, ets, its = _stats(table)
    rel = _new_name(view, 0, *seqs)
    size, checksum = write_segment(log_.segments_dir / rel, table, on_step=step)
    bloom = build_bloom(_ids(table), remember=log_.segments_dir / rel)
    with _registering(log_, rel):
        n = table.num_rows
        register(conn, view, rel, n, seqs, ets, its, size, checksum, 0, bloom, now_micros())
        conn.execute(BUMP_HIGH_SEQ)
        # Only this sealer deletes these rows (the lock); retention takes the same lock.
        # Deleting other rows than were read rolls the registration back.
        gone = conn.execute("DELETE FROM log WHERE view = ? AND seq <= ?", (view, bound)).rowcount
        if gone != n:
            raise RuntimeError(f"{log_.path}: head rows of {view} changed while sealing")
    return n


def merge_segments(log_: OfflineLog, segments: list[Segment], level: int,
                   *, verify: bool = True) -> Segment | None:
    """Merge ``segments`` (of one view) into one file at ``level``; lock held by the caller."""
    if len(segments) < 2:
        return None
    view = segments[0].view
    parts = [read_segment(log_.segments_dir / s.file, s.bytes,
                          checksum=s.checksum if verify else None) for s in segments]
    table = pa.concat_tables(parts).sort_by(SORT_KEYS)
    seqs, ets, its = _stats(table)
    rel = _new_name(view, level, *seqs)
    size, checksum = write_segment(log_.segments_dir / rel, table, on_step=step)
    bloom = build_bloom(_ids(table), remember=log_.segments_dir / rel)
    conn = log_.conn
    with _registering(log_, rel):
        ids = [s.id for s in segments]
        marks = ",".join("?" * len(ids))
        gone = conn.execute(f"DELETE FROM segments WHERE id IN ({marks})", ids).rowcount
        if gone != len(ids):
            raise RuntimeError(f"{log_.path}: segments of {view} changed while merging")
        sid = register(conn, view, rel, table.num_rows, seqs, ets, its, size, checksum, level,
                       bloom, now_micros())
    for s in segments:
        (log_.segments_dir / s.file).unlink(missing_ok=True)
        step("unlinked-one")
    return Segment(sid, view, rel, table.num_rows, *seqs, *ets, *its, size, checksum, level)


def compact_view(log_: OfflineLog, view: str, *, fanout: int = 4, verify: bool = True) -> int:
    """Merge full levels of a view until none has ``fanout`` segments; returns merges done."""
    merges = 0
    while True:
        by_level: dict[int, list[Segment]] = {}
        for s in list_segments(log_.conn, view):
            by_level.setdefault(s.level, []).append(s)
        full = [lv for lv, segs in sorted(by_level.items()) if len(segs) >= fanout]
        if not full:
            return merges
        lv = full[0]
        merge_segments(log_, by_level[lv][:fanout], lv + 1, verify=verify)
        merges += 1


def verify_segments(log_: OfflineLog) -> list[str]:
    """Problems with registered files (missing, wrong size, wrong checksum); empty when sound."""
    problems = []
    for s in list_segments(log_.conn):
        path = log_.segments_dir / s.file
        if not path.exists():
            problems.append(f"segment {path} is missing")
        elif path.stat().st_size != s.bytes:
            problems.append(f"segment {path} is {path.stat().st_size} bytes, registered {s.bytes}")
        elif file_checksum(path) != s.checksum:
            problems.append(f"segment {path} fails its sha256 checksum")
    return problems


def compact(log_: OfflineLog, defs: Definitions, *, seal: bool = True, min_rows: int = 1,
            fanout: int = 4, views: list[str] | None = None, verify: bool = True) -> SealStats:
    """Seal the head (rows of every view) and merge full levels: ``asof-stream compact``."""
    started = time.perf_counter()
    stats = SealStats()
    with segments_lock(log_):
        stats.orphans_removed = remove_orphans(log_)
        for view in views or list(defs.views):
            if seal:
                n = seal_view(log_, defs, view, min_rows=min_rows)
                if n:
                    stats.sealed_rows += n
                    stats.segments_written += 1
                    stats.views[view] = n
            stats.merged_segments += compact_view(log_, view, fanout=fanout, verify=verify)
    stats.seconds = time.perf_counter() - started
    return stats


class Sealer(threading.Thread):
    """A background sealer: its own connection, off the commit path. The daemon runs its
    loop (:meth:`run`, called directly) in a child process
    (:mod:`asof_stream.offline.sealer_process`); started as a thread it shares the caller's
    process (the in-process benchmark, tests).

    Every ``interval`` seconds, a view whose head holds ``seal_rows`` rows or more (0: off),
    or whose oldest head row was ingested ``seal_age`` microseconds ago or more (None: off),
    is sealed, then full levels are merged.
    """

    def __init__(self, log_path: Path, defs: Definitions, *, seal_rows: int, seal_age: int | None,
                 interval: float = 1.0, fanout: int = 4,
                 stop_event: StopEvent | None = None,
                 keep_going: Callable[[], bool] | None = None) -> None:
        super().__init__(name="asof-sealer", daemon=True)
        self.log_path = log_path
        self.defs = defs
        self.seal_rows = seal_rows
        self.seal_age = seal_age
        self.interval = interval
        self.fanout = fanout
        #: set to stop; a multiprocessing Event in the daemon's sealer process
        self.stop_event: StopEvent = stop_event or threading.Event()
        #: checked before every round: False ends the loop (the daemon has gone)
        self.keep_going = keep_going or (lambda: True)
        self.sealed = 0
        self.error: BaseException | None = None

    def due(self, log_: OfflineLog, view: str) -> bool:
        n, oldest = log_.conn.execute("SELECT count(*), min(ingest_ts) FROM log WHERE view = ?",
                                      (view,)).fetchone()
        if not n:
            return False
        if self.seal_rows and n >= self.seal_rows:
            return True
        return self.seal_age is not None and now_micros() - int(oldest) >= self.seal_age

    def run_once(self, log_: OfflineLog) -> int:
        sealed = 0
        with segments_lock(log_):
            remove_orphans(log_)
            for view in self.defs.views:
                if self.stop_event.is_set():
                    break
                if self.due(log_, view):
                    sealed += seal_view(log_, self.defs, view)
                    if self.stop_event.is_set():
                        break  # merges can wait for the next start; stopping cannot
                    compact_view(log_, view, fanout=self.fanout)
        self.sealed += sealed
        return sealed

    def run(self) -> None:
        try:
            with OfflineLog(self.log_path) as log_:
                while not self.stop_event.wait(self.interval) and self.keep_going():
                    try:
                        self.run_once(log_)
                    except Exception as exc:  # keep sealing later; the head keeps the rows
                        log.warning("sealing failed (rows stay in the head): %s", exc)
        except BaseException as exc:
            self.error = exc
            raise

    def stop(self) -> None:
        self.stop_event.set()
        self.join()
