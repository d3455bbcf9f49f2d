"""Invariant I3: SIGKILL the daemon at random moments while producers write; nothing is
lost, nothing doubled, and the online store equals the join at +infinity (I1).

Events carry no event_id, so a doubled record would be stored twice and show up here.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.daemon_checks import assert_exactly_once, kafka_project, logged_orders
from tests.fixtures_kafka import Broker, cli, event, run_cli, write_config

KILLS = 4


def kill_repeatedly(config: Path, rng: random.Random, log_file: Path,
                    keep_going: threading.Event | None = None) -> int:
    kills = 0
    while kills < KILLS or (keep_going is not None and keep_going.is_set()):
        proc = cli("--log-level", "INFO", "run", "--config", str(config), log_file=log_file)
        time.sleep(rng.uniform(0.6, 1.6))  # start-up takes ~0.5 s: kills land mid-stream
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    return kills


def crash_while(feed: Callable[[], None], feeding: threading.Event, config: Path,
                rng: random.Random, log_file: Path) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Run ``feed`` in a thread while killing the daemon (until ``feeding`` is clear), then
    one daemon run until caught up: (the number of kills, that last run)."""
    t = threading.Thread(target=feed)
    t.start()
    kills = kill_repeatedly(config, rng, log_file, feeding)
    t.join()
    return kills, run_cli("run", "--config", str(config), "--until-caught-up")


def test_kafka_source_survives_sigkill(kafka_broker: Broker, tmp_path: Path) -> None:
    seed = int(os.environ.get("ASOF_TEST_SEED", time.time()))
    rng = random.Random(seed)
    topic, config = kafka_project(kafka_broker, tmp_path, "crash", batch_size=300,
                                  batch_timeout_ms=50)
    n, step = 8000, 400
    producing = threading.Event()
    producing.set()

    def producer() -> None:
        for first in range(0, n, step):
            kafka_broker.produce(topic, [event(i) for i in range(first, first + step)])
            time.sleep(0.12)
        producing.clear()

    kills, done = crash_while(producer, producing, config, rng, tmp_path / "daemon.log")
    assert done.returncode == 0, done.stderr
    assert kills >= KILLS
    assert_exactly_once(tmp_path, set(range(n)), f"(seed {seed})")
    # One daemon at a time: the position fence must never have fired.
    assert "positions moved" not in (tmp_path / "daemon.log").read_text()
    status = run_cli("status", "--json", "--config", str(config))
    assert '"lag_total": 0' in status.stdout


def test_file_source_survives_sigkill_and_rotation(tmp_path: Path) -> None:
    seed = int(os.environ.get("ASOF_TEST_SEED", time.time()))
    rng = random.Random(seed)
    config = write_config(tmp_path, """
[sources.tail]
kind = "file"
path = "events/*.jsonl*"
poll_interval = 0.05
""", batch_size=300, batch_timeout_ms=50)
    events = tmp_path / "events"
    events.mkdir()
    n = 9000
    writing = threading.Event()
    writing.set()

    def writer() -> None:
        path = events / "app.jsonl"
        fh = path.open("ab")
        for i in range(n):
            line = event(i) + b"\n"
            if i % 97 == 0:  # a line written in two pieces: a partial last line for a while
                fh.write(line[:15])
                fh.flush()
                time.sleep(0.002)
                fh.write(line[15:])
            else:
                fh.write(line)
            if i % 50 == 0:
                fh.flush()
                time.sleep(0.02)
            if i and i % 3000 == 0:  # rotate: rename, then a new file at the same path
                fh.close()
                os.rename(path, events / f"app.jsonl.{i // 3000}")
                fh = path.open("ab")
        fh.close()
        writing.clear()

    kills, done = crash_while(writer, writing, config, rng, tmp_path / "daemon.log")
    assert done.returncode == 0, done.stderr
    assert kills >= KILLS
    assert sum(logged_orders(tmp_path).values()) == n, f"seed {seed}"
    assert_exactly_once(tmp_path, set(range(n)), f"(seed {seed})")
    assert "positions moved" not in (tmp_path / "daemon.log").read_text()
