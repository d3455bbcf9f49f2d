"""One source's loop: read (bounded), batch by count and time, commit on the commit thread.

While one batch commits in the worker thread the next one is being read, so at most
two batches (bounded by ``max_buffered``) are in memory. All commits go through one
thread, because every source shares the log's SQLite connection. The positions a
batch advances to are written in its own transaction, fenced by the positions it
started from (:class:`~asof_stream.ingest.commit.PositionConflict`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from .. import metrics
from ..definitions import IngestConfig
from ..events import Event
from ..offline.log import Position
from .commit import BatchResult, Decoded, PositionConflict
from .sources.base import Chunk, Record, Source

log = logging.getLogger(__name__)
T = TypeVar("T")


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
