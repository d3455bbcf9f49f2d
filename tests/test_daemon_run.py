"""`asof-stream run` as a process: SIGTERM commits the batch in hand and exits 0; a
full disk stops it non-zero with committed data intact; a bad config stops it before
anything is written."""

from __future__ import annotations

import asyncio
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.daemon_checks import assert_exactly_once, kafka_source, logged_orders, positions, reaped
from tests.fixtures_kafka import (
    Broker,
    _create_topic,
    _free_port,
    cli,
    event,
    run_cli,
    tansu_binary,
    wait_for_broker,
    write_config,
)


def kafka(broker: Broker, topic: str) -> str:
    return kafka_source(broker, topic)


def test_sigterm_commits_the_batch_in_hand_and_exits_0(kafka_broker: Broker,
                                                        tmp_path: Path) -> None:
    topic = kafka_broker.create_topic(3, "term")
    # Batches that never fill and time out only after a minute: whatever the daemon holds
    # at SIGTERM is the batch in hand, and it must be committed, not dropped.
    config = write_config(tmp_path, kafka(kafka_broker, topic), batch_size=1_000_000,
                          batch_timeout_ms=60_000)
    daemon = cli("--log-level", "INFO", "run", "--config", str(config),
                 log_file=tmp_path / "daemon.log")
    sent = 0
    stop = threading.Event()

    def producer() -> None:
        nonlocal sent
        while not stop.is_set():
            kafka_broker.produce(topic, [event(i) for i in range(sent, sent + 99)])
            sent += 99  # a multiple of 3: event i stays at offset i // 3 of partition i % 3
            time.sleep(0.05)

    t = threading.Thread(target=producer)
    t.start()
    try:
        time.sleep(3.0)
        assert logged_orders(tmp_path) == {}  # nothing committed yet: all of it is in hand
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        stop.set()
        t.join()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    got = logged_orders(tmp_path)
    assert got, "the batch in hand was not committed"
    assert sum(got.values()) == sum(positions(tmp_path, "events").values())
    # Round-robin production: event i sits at offset i // 3 of partition i % 3.
    stored = positions(tmp_path, "events")
    expected = {i for i in range(sent) if i // 3 < stored.get(f"{topic}/{i % 3}", 0)}
    assert_exactly_once(tmp_path, expected)
    done = run_cli("run", "--config", str(config), "--until-caught-up")
    assert done.returncode == 0, done.stderr
    assert_exactly_once(tmp_path, set(range(sent)))


def _limit_file_size() -> None:
    # Python ignores SIGXFSZ, so writes past the limit fail with EFBIG: a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))


def test_a_full_disk_stops_the_daemon_non_zero_with_committed_data_intact(tmp_path: Path) -> None:
    config = write_config(tmp_path, """
[sources.tail]
kind = "file"
path = "events/*.jsonl"
""", batch_size=200, batch_timeout_ms=20)
    (tmp_path / "events").mkdir()
    with (tmp_path / "events" / "big.jsonl").open("wb") as fh:
        for i in range(40_000):
            fh.write(event(i, tier="t" * 150) + b"\n")
    proc = subprocess.run([sys.executable, "-m", "asof_stream", "run", "--config", str(config),
                           "--until-caught-up"], capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_file_size)
    assert proc.returncode != 0
    assert "full" in proc.stderr.lower() or "fatal" in proc.stderr.lower(), proc.stderr
    conn = sqlite3.connect(tmp_path / "data" / "offline.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    stored = positions(tmp_path, "tail")
    got = logged_orders(tmp_path)
    assert 0 < sum(got.values()) < 40_000
    # The committed position is exactly the end of the committed lines.
    (offset,) = stored.values()
    assert offset == sum(len(event(i, tier="t" * 150)) + 1 for i in range(len(got)))
    assert_exactly_once(tmp_path, set(range(len(got))))
    # With room again, the daemon resumes from there and stores the rest exactly once.
    done = run_cli("run", "--config", str(config), "--until-caught-up")
    assert done.returncode == 0, done.stderr
    assert_exactly_once(tmp_path, set(range(40_000)))


def test_a_bad_config_stops_before_anything_is_written(tmp_path: Path) -> None:
    config = write_config(tmp_path, """
[sources.tail]
kind = "file"
path = "events/*.jsonl"
poll_interval = -1
""")
    proc = run_cli("run", "--config", str(config))
    assert proc.returncode == 1
    assert str(config.name) in proc.stderr and "sources.tail.poll_interval" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_broker_down_at_start_and_mid_run(tmp_path: Path) -> None:
    """No broker yet: the daemon retries with backoff; the broker dies: it keeps running,
    and SIGTERM still exits 0 with everything committed kept. (A private broker, since
    this test kills it; Tansu keeps topics in memory, so it is not restarted with data.)"""
    port = _free_port()
    bootstrap = f"127.0.0.1:{port}"
    url = f"tcp://{bootstrap}"
    config = write_config(tmp_path, kafka(Broker(bootstrap), "late-topic"), batch_size=100,
                          batch_timeout_ms=50)
    daemon = cli("--log-level", "INFO", "run", "--config", str(config),
                 log_file=tmp_path / "daemon.log")
    broker = None
    try:
        time.sleep(2.0)
        assert daemon.poll() is None
        broker = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", url,
                                   "--advertised-listener-url", url],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_broker(bootstrap, time.monotonic() + 30, broker)
        asyncio.run(_create_topic(bootstrap, "late-topic", 3))
        Broker(bootstrap).produce("late-topic", [event(i) for i in range(600)])
        deadline = time.monotonic() + 60
        while sum(logged_orders(tmp_path).values()) < 600 and time.monotonic() < deadline:
            assert daemon.poll() is None
            time.sleep(0.2)
        assert_exactly_once(tmp_path, set(range(600)))
        broker.kill()
        broker.wait()
        time.sleep(2.0)
        assert daemon.poll() is None  # still running, retrying
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(40) == 0
    finally:
        for p in (daemon, broker):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert_exactly_once(tmp_path, set(range(600)))
    assert "cannot reach" in (tmp_path / "daemon.log").read_text()


def test_sigterm_while_the_broker_is_unreachable_exits_0(tmp_path: Path) -> None:
    config = write_config(tmp_path, kafka(Broker(f"127.0.0.1:{_free_port()}"), "nowhere"))
    daemon = cli("run", "--config", str(config))
    with reaped(daemon):
        time.sleep(1.5)
        assert daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
