"""Two daemons in one consumer group split the partitions; stopping one moves its
partitions to the other with nothing lost or doubled (SQLite positions, not Kafka's,
decide where the new owner starts; the old owner commits its batch in hand first)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.daemon_checks import assert_exactly_once, logged_orders, positions
from tests.fixtures_kafka import Broker, cli, event, write_config


def latest_assignment(log_file: Path) -> set[str] | None:
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


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


async def group_offsets(bootstrap: str, group: str, topic: str) -> dict[str, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        out = {}
        for p in range(3):
            off = await consumer.committed(TopicPartition(topic, p))
            if off is not None:
                out[f"{topic}/{p}"] = off
        return out
    finally:
        await consumer.stop()


def test_two_daemons_split_partitions_and_hand_over(kafka_broker: Broker, tmp_path: Path) -> None:
    topic = kafka_broker.create_topic(3, "group")
    group = f"g-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path, f"""
[sources.events]
kind = "kafka"
bootstrap = "{kafka_broker.bootstrap}"
topics = ["{topic}"]
group = "{group}"
""", batch_size=200, batch_timeout_ms=50)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    daemons = [cli("--log-level", "INFO", "--log-json", "run", "--config", str(config),
                   log_file=f) for f in logs]
    sent = [0]
    producing = threading.Event()
    producing.set()

    def producer() -> None:
        while producing.is_set():
            kafka_broker.produce(topic, [event(i) for i in range(sent[0], sent[0] + 60)])
            sent[0] += 60
            time.sleep(0.1)

    t = threading.Thread(target=producer)
    t.start()
    try:
        try:
            _hand_over(topic, logs, daemons, tmp_path)
        finally:
            producing.clear()
            t.join()
        total = sent[0]
        wait_for("every event to land", lambda: sum(logged_orders(tmp_path).values()) >= total, 60)
        time.sleep(0.5)
        daemons[1].send_signal(signal.SIGTERM)
        assert daemons[1].wait(30) == 0
    finally:
        kill_all(daemons)
    assert_exactly_once(tmp_path, set(range(total)))
    stored = positions(tmp_path, "events")
    assert sum(stored.values()) == total
    # Kafka's committed offsets mirror the SQLite positions (for lag monitoring only).
    assert asyncio.run(group_offsets(kafka_broker.bootstrap, group, topic)) == stored


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


def _hand_over(topic: str, logs: list[Path], daemons: list[subprocess.Popen[bytes]],
               tmp_path: Path) -> None:
    wait_for("both daemons to own partitions", split_between(logs, 3))
    wait_for("both daemons to commit", lambda: len(positions(tmp_path, "events")) == 3)
    time.sleep(1.0)
    daemons[0].send_signal(signal.SIGTERM)  # stop one mid-stream
    assert daemons[0].wait(30) == 0
    wait_for("the survivor to own every partition",
             lambda: latest_assignment(logs[1]) == {f"{topic}/{p}" for p in range(3)})
    time.sleep(1.0)
