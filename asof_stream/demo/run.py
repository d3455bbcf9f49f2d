"""``asof-stream demo``, the ingest half: a fresh example project, and the daemon tailing
its events file while a generator appends to it.

The generator writes the embedded churn-style stream (:mod:`asof_stream.demo_data`:
out of order, about 5% of events days late) in bursts, the way a producer would, plus a
few repeated events (same ``event_id``, skipped) and two malformed lines (dead
letters). The daemon is the real one (:func:`~asof_stream.daemon.run_daemon`, file
source, one transaction per batch); the demo waits until every line is accounted for
in the log, then stops it the way SIGTERM does.

The daemon's own dead-letter warnings are held back while it runs (they would land in
the middle of the demo's output, before it explains them); the demo reports the dead
letters itself, from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, load_config
from ..daemon import run_daemon
from ..offline.log import open_log
from .data import CONFIG_TOML, DemoData, generate, jsonl

MARKER = ".asof-demo"
BAD_LINES = ['{"view": "customer_stats", "customer_id": "c0001", "event_timestamp": "yesterday"}\n',
             "this line is not JSON\n"]


class DemoError(Exception):
    """The demo cannot run where it was asked to (a folder that is not a demo's)."""


@dataclass
class Ingested:
    """What the daemon made of the stream."""

    config: Config
    lines: int
    stored: int
    duplicates: int
    dead_letters: int
    seconds: float
    #: the daemon's dead-letter warnings, held back from the log output during the demo
    held_warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def held_dead_letter_warnings() -> Iterator[list[str]]:
    """Hold back the ingest runner's ``dead letter at ...`` warnings (other records pass);
    yields the list they are collected into."""
    runner_log = logging.getLogger("asof_stream.ingest.runner")
    held: list[str] = []

    def hold(record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("dead letter at "):
            held.append(record.getMessage())
            return False
        return True

    runner_log.addFilter(hold)
    try:
        yield held
    finally:
        runner_log.removeFilter(hold)


def prepare(folder: Path, customers: int, days: int) -> tuple[Config, DemoData]:
    """A fresh example project in ``folder`` (an earlier demo's is replaced)."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise DemoError(f"{folder} exists and is not an asof-stream demo folder;"
                            " pick another with --dir")
        shutil.rmtree(folder)
    (folder / "events").mkdir(parents=True)
    (folder / MARKER).write_text("made by asof-stream demo; safe to delete\n")
    (folder / "asof.toml").write_text(CONFIG_TOML, encoding="utf-8")
    data = generate(customers=customers, days=days)
    with (folder / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["customer_id", "event_timestamp", "churned"])
        w.writeheader()
        w.writerows(data.labels)
    return load_config(folder / "asof.toml"), data


def stream_lines(data: DemoData) -> list[str]:
    """The lines the producer writes: the events, a few repeats and two bad lines."""
    lines = list(jsonl(data.events))
    step = max(1, len(lines) // 4)
    for n, i in enumerate((step, 2 * step, 3 * step)):  # a producer retrying a send, 3 times
        lines.insert(i + n, lines[i // 2])
    lines.insert(len(lines) // 3, BAD_LINES[0])
    lines.insert(2 * len(lines) // 3, BAD_LINES[1])
    return lines


async def _produce(path: Path, lines: list[str], bursts: int, pause: float) -> None:
    size = max(1, len(lines) // bursts)
    with path.open("a", encoding="utf-8") as fh:
        for start in range(0, len(lines), size):
            fh.writelines(lines[start:start + size])
            fh.flush()
            await asyncio.sleep(pause)


def _accounted(config: Config) -> int:
    """Lines committed so far: log rows, skipped repeats and dead letters."""
    if not config.offline_path.exists():
        return 0
    with open_log(config.offline_path, readonly=True) as log:
        try:
            stats = log.view_stats()
            return sum(s["rows"] + s["duplicates"] for s in stats.values()) \
                + log.dead_letter_count()
        except sqlite3.OperationalError:  # the first commit has not created the tables yet
            return 0


async def ingest(config: Config, data: DemoData, *, bursts: int = 20, pause: float = 0.1,
                 timeout: float = 60.0,
                 progress: Callable[[int, int], None] | None = None) -> Ingested:
    """Run the daemon while the generator appends the stream; stop once all is in."""
    lines = stream_lines(data)
    started = time.perf_counter()
    stop = asyncio.Event()
    with held_dead_letter_warnings() as held:
        code = await _run(config, lines, stop, bursts, pause, timeout, progress)
    if code:
        raise DemoError(f"the daemon exited with code {code}")
    with open_log(config.offline_path, readonly=True) as log:
        stats = log.view_stats()
        dead = log.dead_letter_count()
    return Ingested(config, len(lines), sum(s["rows"] for s in stats.values()),
                    sum(s["duplicates"] for s in stats.values()), dead,
                    time.perf_counter() - started, held)


async def _run(config: Config, lines: list[str], stop: asyncio.Event, bursts: int, pause: float,
               timeout: float, progress: Callable[[int, int], None] | None) -> int:
    """The daemon and the producer; the daemon's exit code once every line is in."""
    daemon = asyncio.ensure_future(run_daemon(config, stop=stop))
    loop = asyncio.get_running_loop()
    try:
        await _produce(config.root / "events" / "stream.jsonl", lines, bursts, pause)
        deadline = time.monotonic() + timeout
        while True:
            if daemon.done():  # it should not stop by itself: surface why
                code = daemon.result()
                raise DemoError(f"the daemon stopped early with exit code {code}")
            done = await loop.run_in_executor(None, _accounted, config)
            if progress is not None:
                progress(done, len(lines))
            if done >= len(lines):
                break
            if time.monotonic() > deadline:
                raise DemoError(f"only {done} of {len(lines)} lines were committed"
                                f" after {timeout:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        code = await daemon
    return code


def first_customer(labels_path: Path) -> str:
    with labels_path.open(newline="", encoding="utf-8") as fh:
        return str(next(csv.DictReader(fh))["customer_id"])
