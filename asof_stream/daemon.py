"""``asof-stream run``: the streaming-ingest daemon (docs/exactly-once.md, docs/events.md).

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
import logging
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .config import Config
from .definitions import HttpSourceConfig
from .ingest.commit import BatchResult, StoreError
from .ingest.runner import BatchCommitter, SourceRunner, tune_gc_for_ingest
from .ingest.sharded_commit import ShardedCommitter
from .ingest.sources import build_sources
from .ingest.sources.base import Source
from .offline.shards import is_sharded, shard_dir
from .offline.sqlite import tune_writer
from .online.heal import Healer, HealState, keep_healed
from .stores import Stores, open_stores

log = logging.getLogger(__name__)
T = TypeVar("T")

EXIT_OK = 0
EXIT_FATAL = 1


class DaemonError(Exception):
    """The daemon cannot start (a source it cannot serve) or hit a fatal fault."""


def _wants_server(config: Config) -> bool:
    return config.defs.server.enabled or any(
        isinstance(s, HttpSourceConfig) for s in config.defs.sources.values())


async def _serve(config: Config, stop: asyncio.Event) -> None:
    from .server import serve

    await serve(config, stop, heal=False)  # the daemon heals the online store itself


async def run_daemon(config: Config, *, until_caught_up: bool = False,
                     stop: asyncio.Event | None = None, install_signals: bool = False,
                     totals: BatchResult | None = None) -> int:
    """Run every source of the config; returns the exit code (0, or 1 on a fatal fault).

    ``until_caught_up``: return once every source has nothing left to read.
    ``stop``: set it to stop (the batch in hand is committed first).
    ``totals``: what every source committed is added to it (stored, duplicates, dead
    letters, seconds in commits), also when a fault stops the daemon.
    """
    if not until_caught_up and not config.defs.sources and not config.defs.server.enabled:
        raise DaemonError(f"{config.path}: no [sources] to run")
    if _wants_server(config) and not until_caught_up:
        from .server.http import check_open_push

        try:  # before anything starts: an open /push is refused up front
            check_open_push(config, config.defs.server.host)
        except ValueError as exc:
            raise DaemonError(str(exc)) from None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, sig, stop)
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="asof-commit")
    sources = build_sources(config, until_caught_up=until_caught_up)
    stores, committers = await _open(config, sources, executor)
    from .offline.sealer_process import start_sealer

    sealer = start_sealer(config)
    runners = [SourceRunner(src, committers[i], config.defs.ingest, executor, stop, until_caught_up)
               for i, src in enumerate(sources)]
    healing = _start_healer(stores, executor, stop)
    try:
        tasks: dict[asyncio.Future[None], SourceRunner | None] = {
            asyncio.ensure_future(r.run()): r for r in runners}
        if _wants_server(config) and not until_caught_up:
            tasks[asyncio.ensure_future(_serve(config, stop))] = None
        log.info("daemon started", extra={"sources": [r.source.name for r in runners],
                                           "until_caught_up": until_caught_up})
        code, damaged = await _supervise(tasks, stop)
    finally:
        if healing is not None:
            healing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await healing
        for r in runners:
            await r.source.close()
        if sealer is not None:
            await loop.run_in_executor(None, sealer.stop)
        await loop.run_in_executor(executor, stores.close)
        executor.shutdown(wait=True)
    stored = sum(r.totals.stored for r in runners)
    if totals is not None:
        for r in runners:
            totals.add(r.totals)
    log.info("daemon stopped", extra={"exit_code": code, "stored": stored,
                                      "dead_letters": sum(r.totals.rejected for r in runners)})
    if damaged is not None:  # the file is corrupt: say so, and nothing about intact data
        raise DaemonError(str(damaged))
    return code


def _start_healer(stores: Stores | _Shards, executor: concurrent.futures.ThreadPoolExecutor,
                  stop: asyncio.Event) -> asyncio.Future[None] | None:
    """Keep a Redis online store in line with the log (resets, outages) on the commit
    thread, between batches; the SQLite store is written in the log's transaction."""
    if not isinstance(stores, Stores) or stores.online.transactional:
        return None
    loop = asyncio.get_running_loop()
    healer = Healer(stores.log, stores.online)

    def run(fn: Callable[[], HealState]) -> Awaitable[HealState]:
        return loop.run_in_executor(executor, fn)

    return asyncio.ensure_future(keep_healed(healer, run, stop))


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
        stores = open_stores(config, check=True, online_may_fail=True)
        try:
            tune_writer(stores.log.conn)
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
                     stop: asyncio.Event) -> tuple[int, StoreError | None]:
    """Wait for every task; the first failure stops the others (they commit what they hold).

    Returns the exit code, and the error when the log file was found damaged (the caller
    reports that one line instead of claiming the committed data is intact).
    """
    code = EXIT_OK
    damaged: StoreError | None = None
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            exc = t.exception()
            if exc is None:
                continue
            runner = tasks[t]
            name = runner.source.name if runner is not None else "server"
            if isinstance(exc, StoreError) and exc.damaged:
                damaged = damaged or exc
                log.debug("%s stopped: %s", name, exc, extra={"source": name})
            elif isinstance(exc, StoreError):
                log.error("fatal store error in %s: %s; committed data is intact", name, exc,
                          extra={"source": name})
            else:
                log.error("%s failed: %r", name, exc, exc_info=exc, extra={"source": name})
            code = EXIT_FATAL
            stop.set()
    return code, damaged


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    if stop.is_set():
        log.warning("%s again: still committing the batch in hand", sig.name)
        return
    log.warning("%s: finishing the batch in hand, then stopping", sig.name)
    stop.set()


def run_blocking(config: Config, *, until_caught_up: bool = False,
                 totals: BatchResult | None = None) -> int:
    """Run the daemon on uvloop when installed (else asyncio), with signal handling.

    This owns the process (``asof-stream run``), so it also tunes the garbage collector.
    """
    tune_gc_for_ingest()
    coro = run_daemon(config, until_caught_up=until_caught_up, install_signals=True,
                      totals=totals)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
