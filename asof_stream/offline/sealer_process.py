"""The daemon's background sealer, in a child process (so sealing does not share the
daemon's GIL with the commit path).

The child is started with the ``spawn`` context (a fresh interpreter: an asyncio process
with threads is never forked). It opens its own :class:`OfflineLog` and runs the
:class:`~asof_stream.offline.seal.Sealer` loop (``run_once`` every ``interval``); an error
in a round is logged by the child ("sealing failed (rows stay in the head)") and the next
round tries again. The seal protocol survives SIGKILL at any step, so the child may be
killed at any moment; sealing beside the committer in another process is safe because a
segment is registered, and its head rows deleted, in one SQLite transaction, and the
commit's duplicate check runs inside its own write transaction, which reads the manifest
as committed (:class:`~asof_stream.offline.manifest.SealedIds`).

The child sends the event-id hashes of each segment it writes to the daemon over a pipe
(the daemon's :data:`~asof_stream.offline.manifest.ID_HASHES`), so the commit path does
not read a new segment's ids back from its file.

The daemon's side (:class:`SealerProcess`) starts, watches and stops the child from one
watcher thread. The child does not outlive the daemon: it asks Linux for SIGTERM when the
thread that started it exits (``PR_SET_PDEATHSIG``), and checks ``os.getppid()`` before
every round. If the child dies unexpectedly the daemon logs it and starts a new one after
a backoff (1 s, doubling to :data:`MAX_BACKOFF`); after :data:`MAX_QUICK_DEATHS` deaths in
a row, each within :data:`HEALTHY_AFTER` seconds of its start, it stops restarting and
warns that sealing is off until the daemon restarts (ingest goes on; rows stay in the head).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..definitions import Definitions

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
#: restart backoff: 1 s, doubling up to this
MAX_BACKOFF = 30.0
#: a child that lived this long was healthy: the next death starts the count again
HEALTHY_AFTER = 60.0
#: deaths in a row (each within HEALTHY_AFTER of its start) before sealing is given up
MAX_QUICK_DEATHS = 5
#: how long stop() waits for the child's round to end before SIGTERM, then SIGKILL
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class SealerSettings:
    """What the child needs (picklable)."""

    log_path: Path
    defs: Definitions
    seal_rows: int
    seal_age: int | None
    interval: float
    fanout: int
    log_level: int = logging.WARNING
    log_json: bool = False


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when its parent goes (Linux); exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(0)


class PipeStop:
    """The child's stop signal: the daemon closes (or writes to) its end of a pipe.

    Not a multiprocessing Event: a child SIGKILLed inside ``Event.wait`` leaves the
    Event's condition counting a sleeper that never wakes, and the daemon's ``set()``
    then waits for it forever. A pipe has no such state, and it also reads as set when
    the daemon dies (its end closes with it).
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._set = False

    def is_set(self) -> bool:
        return self._set or self.wait(0)

    def set(self) -> None:
        self._set = True

    def wait(self, timeout: float | None = None) -> bool:
        if not self._set and self._conn.poll(timeout):
            self._set = True  # data or EOF: stop
        return self._set


def child_main(settings: SealerSettings, stop_conn: Connection, hashes: Connection,
               parent_pid: int) -> None:
    """The sealer process: seal until the daemon says stop (or is gone)."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the daemon stops it via ``stop``
    from ..logging_setup import setup_logging
    from . import manifest
    from .seal import Sealer

    setup_logging(logging.getLevelName(settings.log_level), json_lines=settings.log_json)

    def send(path: Path, h1: np.ndarray) -> None:
        with contextlib.suppress(OSError):  # the daemon is gone: it reads the file instead
            hashes.send((str(path), h1))

    manifest.ID_HASHES.on_put = send
    manifest.ID_HASHES.budget = 0  # the child never checks ids: keep none
    sealer = Sealer(settings.log_path, settings.defs, seal_rows=settings.seal_rows,
                    seal_age=settings.seal_age, interval=settings.interval,
                    fanout=settings.fanout, stop_event=PipeStop(stop_conn),
                    keep_going=lambda: os.getppid() == parent_pid)
    sealer.run()


def _root_logging() -> tuple[int, bool]:
    """The daemon's log level, and whether it logs JSON lines (the child does the same)."""
    from ..logging_setup import JsonFormatter

    root = logging.getLogger()
    return root.getEffectiveLevel(), any(isinstance(h.formatter, JsonFormatter)
                                         for h in root.handlers)


class SealerProcess:
    """The daemon's side: start the sealer child, restart it when it dies, stop it."""

    def __init__(self, log_path: Path, defs: Definitions, *, seal_rows: int,
                 seal_age: int | None, interval: float = 1.0, fanout: int = 4) -> None:
        level, json_lines = _root_logging()
        self.settings = SealerSettings(log_path, defs, seal_rows, seal_age, interval, fanout,
                                       level, json_lines)
        self._ctx = multiprocessing.get_context("spawn")
        self._stop_send: Connection | None = None  # closed: the child stops
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._lock = threading.Lock()
        self._watcher = threading.Thread(target=self._watch, name="asof-sealer-watch",
                                         daemon=True)
        self.process: BaseProcess | None = None
        #: children started (1 + restarts), and whether sealing was given up
        self.starts = 0
        self.gave_up = False

    def start(self) -> None:
        self._watcher.start()
        self._started.wait()

    def _spawn(self) -> tuple[BaseProcess, Connection]:
        # Started from the watcher thread, which lives as long as the child should:
        # PR_SET_PDEATHSIG fires when the thread that started the child exits.
        recv, send = self._ctx.Pipe(duplex=False)
        stop_recv, stop_send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=child_main, name="asof-sealer",
                                 args=(self.settings, stop_recv, send, os.getpid()), daemon=True)
        with self._lock:
            if self._stopping.is_set():
                stop_send.close()  # the child stops at once
            else:
                self._stop_send = stop_send
            proc.start()
            self.process = proc
        send.close()
        stop_recv.close()
        self.starts += 1
        log.info("sealer process started", extra={"pid": proc.pid})
        return proc, recv

    def _watch(self) -> None:
        try:
            self._supervise()
        except Exception as exc:  # e.g. the child cannot be started: ingest goes on
            self.gave_up = True
            log.error("the sealer process failed (%r); sealing is off until the daemon"
                      " restarts (ingest goes on, rows stay in the head)", exc)
        finally:
            self._started.set()

    def _supervise(self) -> None:
        from .manifest import ID_HASHES

        quick_deaths, backoff = 0, 1.0
        proc, recv = self._spawn()
        self._started.set()
        born = time.monotonic()
        waiting: list[Any] = [proc.sentinel, recv]
        while True:
            ready = multiprocessing.connection.wait(waiting, timeout=1.0)
            if recv in ready:  # hashes first: all of them are read before a death is seen
                try:
                    path, h1 = recv.recv()
                    ID_HASHES.put(Path(path), h1)
                except (EOFError, OSError):
                    waiting.remove(recv)  # the child has gone: its sentinel says so next
                continue
            if proc.sentinel not in ready:
                continue
            proc.join()
            recv.close()
            with self._lock:
                self._signal_stop()
            if self._stopping.is_set():
                return
            quick_deaths = quick_deaths + 1 if time.monotonic() - born < HEALTHY_AFTER else 1
            backoff = backoff if quick_deaths > 1 else 1.0
            if quick_deaths >= MAX_QUICK_DEATHS:
                self.gave_up = True
                log.error("the sealer process died %d times in a row (exit code %s); sealing"
                          " is off until the daemon restarts (ingest goes on, rows stay in"
                          " the head)", quick_deaths, proc.exitcode)
                return
            log.warning("the sealer process died (exit code %s); restarting it in %.0f s",
                        proc.exitcode, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_BACKOFF)
            proc, recv = self._spawn()
            born = time.monotonic()
            waiting = [proc.sentinel, recv]

    def _signal_stop(self) -> None:
        """Close the stop pipe of the current child."""
        conn, self._stop_send = self._stop_send, None
        if conn is not None:
            conn.close()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the child (its round in hand finishes, up to ``timeout``), then the watcher."""
        with self._lock:
            self._stopping.set()
            self._signal_stop()
        proc = self.process
        if proc is not None:
            proc.join(timeout)
            if proc.is_alive():
                log.warning("the sealer process did not stop in %.0f s; terminating it",
                            timeout)
                proc.terminate()  # safe at any step of a seal
                proc.join(2.0)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
        self._watcher.join()


def start_sealer(config: Config) -> SealerProcess | None:
    """The background sealer of ``config``'s log (a child process with its own connection),
    started, when ``[log]`` asks for one; None when sealing is off or the log is split into
    partition shards (shards are never sealed). Its faults are logged and never stop ingest."""
    cfg = config.defs.log
    if not cfg.sealing or config.defs.store.shards != "none":
        return None
    sealer = SealerProcess(config.offline_path, config.defs, seal_rows=cfg.seal_rows,
                           seal_age=cfg.seal_age, interval=cfg.seal_interval,
                           fanout=cfg.merge_fanout)
    sealer.start()
    return sealer


class SealerOnDemand:
    """A backfill's sealer (``replay``): started once the backfill has stored
    ``seal_rows`` rows, so a small replay spawns no process and a large one keeps the head
    as small as the daemon does. :meth:`finish` ends it and seals what is still due, so a
    finished backfill leaves every view's head below ``seal_rows`` whatever the child's
    timing; :meth:`stop` only ends it (its round in hand finishes)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        cfg = config.defs.log
        self.threshold = cfg.seal_rows if cfg.seal_rows > 0 else None
        self.stored = 0
        self.sealer: SealerProcess | None = None

    def note(self, stored: int) -> None:
        """Count rows the backfill stored; start the sealer at the threshold."""
        self.stored += stored
        if self.sealer is None and self.threshold is not None and self.stored >= self.threshold:
            self.sealer = start_sealer(self.config)
            self.threshold = None  # started (or sealing is off): never again

    def finish(self) -> None:
        """The backfill is done: stop the child, then one round here (what is still due)."""
        if self.sealer is None:
            return
        self.stop()
        from .log import OfflineLog
        from .seal import Sealer

        cfg = self.config.defs.log
        with OfflineLog(self.config.offline_path) as log_:
            Sealer(self.config.offline_path, self.config.defs, seal_rows=cfg.seal_rows,
                   seal_age=cfg.seal_age, fanout=cfg.merge_fanout).run_once(log_)

    def stop(self) -> None:
        if self.sealer is not None:
            self.sealer.stop()
            self.sealer = None
