"""Shared by the daemon tests: assertions (exactly once, I3; online = join at +inf, I1)
and the setup of daemons over a Kafka topic (a project reading it, a consumer group of
daemon processes that have split its partitions)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests.fixtures_kafka import Broker, cli, write_config


def logged_orders(folder: Path) -> Counter[int]:
    """How many times each event (by its unique ``orders_7d``) is in the offline log."""
    if not (folder / "data" / "offline.sqlite").exists():
        return Counter()
    conn = sqlite3.connect(folder / "data" / "offline.sqlite")
    try:
        return Counter(json.loads(f)["orders_7d"] for (f,) in conn.execute("SELECT features FROM log"))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the daemon has created the file, not its tables yet
            return Counter()
        raise
    finally:
        conn.close()


def assert_exactly_once(folder: Path, expected: set[int], note: str = "") -> None:
    counts = logged_orders(folder)
    doubled = sorted(k for k, n in counts.items() if n > 1)
    missing = sorted(expected - set(counts))
    extra = sorted(set(counts) - expected)
    assert not doubled, f"{len(doubled)} events stored twice, e.g. {doubled[:10]} {note}"
    assert not missing, f"{len(missing)} events lost, e.g. {missing[:10]} {note}"
    assert not extra, f"unexpected events {extra[:10]} {note}"
    assert_online_is_join_at_infinity(folder)


def assert_online_is_join_at_infinity(folder: Path) -> None:
    """I1: per (view, entity) the online row is the log row with the greatest (ts, seq)."""
    conn = sqlite3.connect(folder / "data" / "offline.sqlite")
    try:
        oracle: dict[tuple[str, str], tuple[int, int, str]] = {}
        for view, entity, ts, seq, features in conn.execute(
                "SELECT view, entity, event_timestamp, seq, features FROM log"):
            cur = oracle.get((view, entity))
            if cur is None or (ts, seq) > cur[:2]:
                oracle[(view, entity)] = (ts, seq, features)
    finally:
        conn.close()
    online = sqlite3.connect(folder / "data" / "online.sqlite")
    try:
        stored = {(v, e): (ts, seq, f) for v, e, ts, seq, f in online.execute(
            "SELECT view, entity, event_timestamp, seq, features FROM online")}
    finally:
        online.close()
    assert stored == oracle


def positions(folder: Path, source: str) -> dict[str, int]:
    if not (folder / "data" / "offline.sqlite").exists():
        return {}
    conn = sqlite3.connect(folder / "data" / "offline.sqlite")
    try:
        return {k: n for k, n in conn.execute(
            "SELECT key, next_offset FROM positions WHERE source = ?", (source,))}
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # created, not yet set up by the daemon
            return {}
        raise
    finally:
        conn.close()


def kafka_source(broker: Broker | str, topic: str, group: str = "", extra: str = "") -> str:
    """The TOML of one Kafka source ``events`` reading ``topic`` from ``broker`` (a broker or
    its bootstrap address; ``group`` "": none), then the ``extra`` lines of that source."""
    bootstrap = broker if isinstance(broker, str) else broker.bootstrap
    return f"""
[sources.events]
kind = "kafka"
bootstrap = "{bootstrap}"
topics = ["{topic}"]
group = "{group}"
{extra}"""


def new_group() -> str:
    """A consumer group name no other test uses."""
    return f"g-{uuid.uuid4().hex[:8]}"


def kafka_project(broker: Broker, folder: Path, prefix: str = "t", *, partitions: int = 3,
                  group: str = "", **settings: Any) -> tuple[str, Path]:
    """A new topic and a project in ``folder`` whose one source reads it; returns the
    topic and the config path (``settings``: :func:`~tests.fixtures_kafka.write_config`'s)."""
    topic = broker.create_topic(partitions, prefix)
    return topic, write_config(folder, kafka_source(broker, topic, group), **settings)


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def latest_assignment(log_file: Path) -> set[str] | None:
    """The partitions a daemon (by its JSON log) said it owns last (None: not yet)."""
    found = None
    if not log_file.exists():
        return None
    for line in log_file.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "partitions" in rec:
            found = set(rec["partitions"])
    return found


def split_between(logs: list[Path], partitions: int) -> Callable[[], bool]:
    """True once two daemons (by their logs) own disjoint, non-empty sets of all partitions."""
    def split() -> bool:
        a, b = latest_assignment(logs[0]), latest_assignment(logs[1])
        return bool(a) and bool(b) and a is not None and b is not None and not (a & b) \
            and len(a | b) == partitions

    return split


def kill_all(daemons: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL whatever a test left running."""
    for d in daemons:
        if d.poll() is None:
            d.kill()
            d.wait()


P = TypeVar("P", bound="subprocess.Popen[Any]")


@contextmanager
def reaped(proc: P) -> Iterator[P]:
    """``proc`` for the block; SIGKILLed at its end if still running (a test that failed
    before stopping it)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextmanager
def daemon_group(config: Path, logs: list[Path],
                 partitions: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two ``run`` daemons of ``config`` (JSON logs at INFO into ``logs``), yielded once
    they have split the topic's ``partitions`` between them; SIGKILLed at exit if still
    running."""
    daemons = [cli("--log-level", "INFO", "--log-json", "run", "--config", str(config),
                   log_file=f) for f in logs]
    try:
        wait_for("both daemons to own partitions", split_between(logs, partitions))
        yield daemons
    finally:
        kill_all(daemons)
