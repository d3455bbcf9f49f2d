"""Two daemons in one consumer group split the partitions; stopping one moves its
partitions to the other with nothing lost or doubled (SQLite positions, not Kafka's,
decide where the new owner starts; the old owner commits its batch in hand first)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.daemon_checks import (
    assert_exactly_once,
    daemon_group,
    kafka_project,
    latest_assignment,
    logged_orders,
    new_group,
    positions,
    wait_for,
)
from tests.fixtures_kafka import Broker, event


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
    group = new_group()
    topic, config = kafka_project(kafka_broker, tmp_path, "group", group=group, batch_size=200,
                                  batch_timeout_ms=50)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    sent = [0]
    producing = threading.Event()
    producing.set()

    def producer() -> None:
        while producing.is_set():
            kafka_broker.produce(topic, [event(i) for i in range(sent[0], sent[0] + 60)])
            sent[0] += 60
            time.sleep(0.1)

    with daemon_group(config, logs, 3) as daemons:
        t = threading.Thread(target=producer)
        t.start()
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
    assert_exactly_once(tmp_path, set(range(total)))
    stored = positions(tmp_path, "events")
    assert sum(stored.values()) == total
    # Kafka's committed offsets mirror the SQLite positions (for lag monitoring only).
    assert asyncio.run(group_offsets(kafka_broker.bootstrap, group, topic)) == stored


def _hand_over(topic: str, logs: list[Path], daemons: list[subprocess.Popen[bytes]],
               tmp_path: Path) -> None:
    wait_for("both daemons to commit", lambda: len(positions(tmp_path, "events")) == 3)
    time.sleep(1.0)
    daemons[0].send_signal(signal.SIGTERM)  # stop one mid-stream
    assert daemons[0].wait(30) == 0
    wait_for("the survivor to own every partition",
             lambda: latest_assignment(logs[1]) == {f"{topic}/{p}" for p in range(3)})
    time.sleep(1.0)
