"""``asof-stream run``: the streaming-ingest daemon (contract sections 1, 7, 8).

Per source, one loop, top to bottom:

    read (bounded) -> batch (by count and by time, [ingest]) -> hand the batch to the
    commit thread (decode/validate + one SQLite transaction: log rows, online upserts,
    dead letters, positions) -> after the commit: Kafka offset commit (monitoring only)

While one batch commits in the worker thread the next one is being read, so at most
two batches (bounded by ``max_buffered``) are in memory. All commits go through one
thread, because every source shares the log's SQLite connection.

Exactly once: the positions a batch advances to are written in the batch's own
transaction, fenced by the positions it started from (:class:`PositionConflict`), and
every source resumes from SQLite. A SIGKILL at any moment loses only uncommitted work,
which is read again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import importlib.util
import inspect
import logging
import signal
import sqlite3
import time
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from . import metrics
from .commit import BatchResult, Decoded, PositionConflict, Record, StoreError
from .config import Config
from .definitions import FileSourceConfig, HttpSourceConfig, IngestConfig, KafkaSourceConfig
from .events import Event
from .log import Position
from .shard_commit import ShardedCommitter
from .shards import is_sharded, shard_dir
from .sources.base import Chunk, Source
from .sqlite_db import tune_writer
from .stores import Stores, open_stores

log = logging.getLogger(__name__)
T = TypeVar("T")

EXIT_OK = 0
EXIT_FATAL = 1


class DaemonError(Exception):
    """The daemon cannot start (a source it cannot serve) or hit a fatal fault."""


@dataclass(slots=True)
class Batch:
    """Records in hand, already decoded, with the positions they move from and to."""

    good: list[tuple[Event, str]] = field(default_factory=list)
    bad: list[tuple[Record, str]] = field(default_factory=list)
    count: int = 0
    starts: dict[str, int | None] = field(default_factory=dict)
    ends: dict[str, Position] = field(default_factory=dict)
    opened: float = 0.0

    def add(self, chunk: Chunk, decoded: tuple[list[tuple[Event, str]],
                                               list[tuple[Record, str]]]) -> None:
        if self.empty():
            self.opened = time.monotonic()
        self.good.extend(decoded[0])
        self.bad.extend(decoded[1])
        self.count += len(chunk.records)
        for key, start in chunk.starts.items():
            self.starts.setdefault(key, start)
        self.ends.update(chunk.ends)

    def __len__(self) -> int:
        return self.count

    def empty(self) -> bool:
        return not self.count and not self.ends


class BatchCommitter(Protocol):
    """What a runner needs to commit batches: :class:`Committer` (one log) or
    :class:`~asof_stream.shard_commit.ShardedCommitter` (a shard per partition)."""

    def decode(self, records: Sequence[Record]) -> Decoded: ...

    def positions(self, source: str, keys: Collection[str] | None = None) -> dict[str, Position]: ...

    def commit(self, source: str, records: Sequence[Record], positions: Sequence[Position] = (),
               *, decoded: Decoded | None = None,
               expect: dict[str, int | None] | None = None) -> BatchResult: ...


class SourceRunner:
    """Reads one source, batches, and commits through the shared commit thread."""

    def __init__(self, source: Source, committer: BatchCommitter, ingest: IngestConfig,
                 executor: concurrent.futures.ThreadPoolExecutor, stop: asyncio.Event,
                 until_caught_up: bool) -> None:
        self.source = source
        self.committer = committer
        self.ingest = ingest
        self.executor = executor
        self.stop = stop
        self.until_caught_up = until_caught_up
        self.batch = Batch()
        self.inflight: asyncio.Task[None] | None = None
        self.inflight_size = 0
        self.lock = asyncio.Lock()
        self.conflict = False
        self.totals = BatchResult()

    async def run(self) -> None:
        src = self.source
        started, _ = await self._unless_stopped(src.start(self._stored_positions,
                                                          self.flush_and_wait))
        if not started:
            return  # stopped while still connecting
        log.info("source %s started", src.name, extra={"source": src.name})
        size, timeout = self.ingest.batch_size, self.ingest.batch_timeout_ms / 1000
        try:
            while not self.stop.is_set():
                if self.conflict:
                    await self._rewind()
                room = min(size - len(self.batch),
                           self.ingest.max_buffered - len(self.batch) - self.inflight_size)
                if room <= 0:
                    await self.flush()  # backpressure: waits for the commit in flight
                    continue
                wait = timeout if self.batch.empty() else max(
                    0.0, self.batch.opened + timeout - time.monotonic())
                if self.until_caught_up:
                    wait = min(wait, 0.5)  # look at "caught up" often, whatever the batch timeout
                chunk = await self._read(room, wait)
                # Decode now, on the loop's thread, while the commit thread is inside SQLite
                # with the previous batch (sqlite3 releases the GIL while it works).
                self.batch.add(chunk, self.committer.decode(chunk.records))
                if len(self.batch) >= size or (not self.batch.empty() and time.monotonic()
                                               >= self.batch.opened + timeout):
                    await self.flush()
                if self.until_caught_up and not chunk.records:
                    await self.flush_and_wait()
                    if src.caught_up() and self.batch.empty() and not self.conflict:
                        log.info("source %s caught up", src.name, extra={"source": src.name})
                        return
        finally:
            # SIGTERM/SIGINT, caught up, or a fatal error elsewhere: commit what is in hand.
            await asyncio.shield(self.flush_and_wait())

    async def _read(self, room: int, wait: float) -> Chunk:
        _, chunk = await self._unless_stopped(self.source.read(room, wait))
        return Chunk() if chunk is None else chunk

    async def _unless_stopped(self, aw: Awaitable[T]) -> tuple[bool, T | None]:
        """Await ``aw`` unless a stop comes first (then cancel it): (finished, result).

        Safe for reads: sources change their state only after their awaits return.
        """
        task = asyncio.ensure_future(aw)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False, None
        return True, task.result()

    async def _stored_positions(self, keys: Collection[str] | None = None) -> dict[str, Position]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.committer.positions,
                                          self.source.name, keys)

    async def _rewind(self) -> None:
        await self.flush_and_wait()  # drain anything in flight (it fails the fence too)
        self.batch = Batch()
        self.conflict = False
        await self.source.rewind()

    async def flush(self) -> None:
        """Hand the batch in hand to the commit thread (after the previous one finished)."""
        async with self.lock:
            if self.inflight is not None:
                task, self.inflight = self.inflight, None
                await task  # a StoreError surfaces here and stops the daemon
            if self.batch.empty():
                return
            batch, self.batch = self.batch, Batch()
            if self.conflict:
                return  # read on top of a batch that lost the fence: drop it, rewind
            self.inflight_size = len(batch)
            self.inflight = asyncio.ensure_future(self._commit(batch))

    async def flush_and_wait(self) -> None:
        """Commit the batch in hand and wait for it (shutdown, revocation, caught up)."""
        await self.flush()
        async with self.lock:
            if self.inflight is not None:
                task, self.inflight = self.inflight, None
                await task

    async def _commit(self, batch: Batch) -> None:
        src = self.source
        loop = asyncio.get_running_loop()
        positions = list(batch.ends.values())
        started = time.perf_counter()
        try:
            result = await loop.run_in_executor(
                self.executor, lambda: self.committer.commit(src.name, (), positions,
                                                             expect=batch.starts,
                                                             decoded=(batch.good, batch.bad)))
        except PositionConflict as exc:
            log.warning("source %s: positions moved under us (%s); dropping %d records and"
                        " resuming from the stored positions", src.name, exc, len(batch),
                        extra={"source": src.name})
            self.conflict = True
            return
        finally:
            self.inflight_size = 0
        src.committed(batch.ends)
        self.totals.add(result)
        metrics.record_batch(src.name, len(batch), result.stored, result.duplicates,
                             result.rejected, result.seconds)
        log.info("batch committed", extra={
            "source": src.name, "records": len(batch), "stored": result.stored,
            "duplicates": result.duplicates, "dead_letters": result.rejected,
            "commit_ms": round(result.seconds * 1000, 2),
            "latency_ms": round((time.monotonic() - batch.opened) * 1000, 2),
            "wall_ms": round((time.perf_counter() - started) * 1000, 2),
            "high_seq": result.high_seq})
        for pos, why in result.rejects[:5]:
            log.warning("dead letter at %s: %s", pos, why, extra={"source": src.name})
        await src.after_commit(batch.ends)


def build_sources(config: Config, *, until_caught_up: bool) -> list[Source]:
    sources: list[Source] = []
    for name, cfg in config.defs.sources.items():
        if isinstance(cfg, KafkaSourceConfig):
            from .sources.kafka import KafkaSource

            sources.append(KafkaSource(name, cfg, max_poll_records=config.defs.ingest.batch_size))
        elif isinstance(cfg, FileSourceConfig):
            from .sources.file import FileSource

            sources.append(FileSource(name, cfg, config.root))
    return sources


def _wants_server(config: Config) -> bool:
    return config.defs.server.enabled or any(
        isinstance(s, HttpSourceConfig) for s in config.defs.sources.values())


def check_runnable(config: Config, *, until_caught_up: bool) -> None:
    """Fail before anything starts if the config needs what this build lacks."""
    if until_caught_up or not _wants_server(config):
        return
    if importlib.util.find_spec("asof_stream.server") is None:
        raise DaemonError("http sources and [server] need the feature server"
                          " (asof_stream.server), which this installation does not have")


async def _serve(config: Config, stop: asyncio.Event) -> None:
    from . import server  # type: ignore[attr-defined,unused-ignore]

    result: Any = server.serve(config, stop)
    if inspect.isawaitable(result):
        await result


async def run_daemon(config: Config, *, until_caught_up: bool = False,
                     stop: asyncio.Event | None = None, install_signals: bool = False) -> int:
    """Run every source of the config; returns the exit code (0, or 1 on a fatal fault).

    ``until_caught_up``: return once every source has nothing left to read.
    ``stop``: set it to stop (the batch in hand is committed first).
    """
    check_runnable(config, until_caught_up=until_caught_up)
    if not until_caught_up and not config.defs.sources and not config.defs.server.enabled:
        raise DaemonError(f"{config.path}: no [sources] to run")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, sig, stop)
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="asof-commit")
    sources = build_sources(config, until_caught_up=until_caught_up)
    stores, committers = await _open(config, sources, executor)
    runners = [SourceRunner(src, committers[i], config.defs.ingest, executor, stop, until_caught_up)
               for i, src in enumerate(sources)]
    try:
        tasks: dict[asyncio.Future[None], SourceRunner | None] = {
            asyncio.ensure_future(r.run()): r for r in runners}
        if _wants_server(config) and not until_caught_up:
            tasks[asyncio.ensure_future(_serve(config, stop))] = None
        log.info("daemon started", extra={"sources": [r.source.name for r in runners],
                                           "until_caught_up": until_caught_up})
        code = await _supervise(tasks, stop)
    finally:
        for r in runners:
            await r.source.close()
        await loop.run_in_executor(executor, stores.close)
        executor.shutdown(wait=True)
    stored = sum(r.totals.stored for r in runners)
    log.info("daemon stopped", extra={"exit_code": code, "stored": stored,
                                      "dead_letters": sum(r.totals.rejected for r in runners)})
    return code


def _busy(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class _Shards:
    """The sharded daemon's committers, closed together (stands where Stores would)."""

    def __init__(self, committers: list[ShardedCommitter]) -> None:
        self.committers = committers

    def close(self) -> None:
        for c in self.committers:
            c.close()


def _open_sharded(config: Config, sources: list[Source]) -> tuple[_Shards, list[BatchCommitter]]:
    """One sharded committer per source; its shards open as partitions are assigned."""
    committers = []
    for src in sources:
        c = ShardedCommitter(config, src.view)
        counts = getattr(src, "partition_counts", None)
        if counts is None:
            raise DaemonError(f"source {src.name}: shards = 'partition' needs Kafka sources")
        c.partition_counts = counts
        committers.append(c)
    log.info("sharded store", extra={"shards": str(shard_dir(config))})
    return _Shards(committers), list(committers)


async def _open(config: Config, sources: list[Source],
                executor: concurrent.futures.ThreadPoolExecutor,
                ) -> tuple[Stores | _Shards, list[BatchCommitter]]:
    """Open the stores and one committer per source, retrying while another process
    (a second daemon, a replay) holds the database lock."""
    if is_sharded(config):
        return _open_sharded(config, sources)
    loop = asyncio.get_running_loop()

    def open_all() -> tuple[Stores | _Shards, list[BatchCommitter]]:
        stores = open_stores(config)
        tune_writer(stores.log.conn)
        try:
            return stores, [stores.committer(src.view) for src in sources]
        except BaseException:
            stores.close()
            raise

    delay = 0.1
    for attempt in range(40):
        try:
            return await loop.run_in_executor(executor, open_all)
        except sqlite3.DatabaseError as exc:  # open_log re-raises as DatabaseError
            if not _busy(exc) or attempt == 39:
                raise
            log.warning("offline log is busy while opening (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


async def _supervise(tasks: dict[asyncio.Future[None], SourceRunner | None],
                     stop: asyncio.Event) -> int:
    """Wait for every task; the first failure stops the others (they commit what they hold)."""
    code = EXIT_OK
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            exc = t.exception()
            if exc is None:
                continue
            runner = tasks[t]
            name = runner.source.name if runner is not None else "server"
            if isinstance(exc, StoreError):
                log.error("fatal store error in %s: %s; committed data is intact", name, exc,
                          extra={"source": name})
            else:
                log.error("%s failed: %r", name, exc, exc_info=exc, extra={"source": name})
            code = EXIT_FATAL
            stop.set()
    return code


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    if stop.is_set():
        log.warning("%s again: still committing the batch in hand", sig.name)
        return
    log.warning("%s: finishing the batch in hand, then stopping", sig.name)
    stop.set()


#: Cyclic-GC thresholds for the daemon process. Every batch allocates tens of thousands
#: of short-lived acyclic objects (records, events, rows); with the default 700 the
#: collector ran so often it took 20-25% of the ingest rate (measured: 28k -> 35k
#: events/s). Cycles are still collected, just less often.
GC_THRESHOLDS = (50_000, 20, 50)


def tune_gc_for_ingest() -> None:
    """For a process that ingests (``run``, ``replay``): freeze the objects of start-up
    out of the collector and make collections rarer (:data:`GC_THRESHOLDS`)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_blocking(config: Config, *, until_caught_up: bool = False) -> int:
    """Run the daemon on uvloop when installed (else asyncio), with signal handling.

    This owns the process (``asof-stream run``), so it also tunes the garbage collector.
    """
    tune_gc_for_ingest()
    coro = run_daemon(config, until_caught_up=until_caught_up, install_signals=True)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
