"""read_committed: records of aborted transactions are never stored.

Tansu 0.6 cannot run a transaction (its InitProducerId fails for aiokafka, see
fixtures_kafka), so against Tansu the test proves what it can: the transactional
producer is refused exactly there, the source's fetches are read_committed, and plain
records still flow under read_committed. With ``ASOF_TEST_KAFKA`` (a real Kafka) the
full case runs: one aborted and one committed transaction, only the committed stored.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.consumer.fetcher import READ_COMMITTED, READ_UNCOMMITTED
from aiokafka.errors import KafkaError, UnknownError

from asof_stream.config import load_config
from asof_stream.daemon import run_daemon
from asof_stream.definitions import KafkaSourceConfig
from asof_stream.ingest.sources.kafka import KafkaSource
from asof_stream.offline.log import Position
from tests.daemon_checks import assert_exactly_once, kafka_source
from tests.fixtures_kafka import Broker, event, write_config


def source_toml(broker: Broker, topic: str, isolation: str | None = None) -> str:
    line = f'isolation_level = "{isolation}"\n' if isolation else ""
    return kafka_source(broker, topic, extra=line)


async def abort_then_commit(bootstrap: str, topic: str) -> str:
    """Abort a transaction holding events 0-9, commit one holding 10-19: "done", or "refused"
    when the broker cannot start a transactional producer (Tansu)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{topic}")
    try:
        await producer.start()
    except UnknownError:
        await producer.stop()
        return "refused"
    try:
        await producer.begin_transaction()
        for i in range(10):
            await producer.send(topic, event(i), partition=0)
        await producer.abort_transaction()
        async with producer.transaction():
            for i in range(10, 20):
                await producer.send(topic, event(i), partition=0)
    finally:
        await producer.stop()
    return "done"


async def fetch_isolation(cfg: KafkaSourceConfig) -> tuple[int, int]:
    """Start the source by hand, read what is there: (isolation level of its fetches, records)."""
    source = KafkaSource("events", cfg)

    async def positions(keys: object = None) -> dict[str, Position]:
        return {}

    async def flush() -> None:
        return None

    await source.start(positions, flush)
    try:
        n = 0
        for _ in range(20):
            n += len((await source.read(1000, 0.5)).records)
            if source.caught_up():
                break
        return source.consumer._fetcher._isolation_level, n
    finally:
        await source.close()


def test_only_committed_transactions_are_stored(kafka_broker: Broker, tmp_path: Path) -> None:
    topic = kafka_broker.create_topic(1)
    cfg = write_config(tmp_path, source_toml(kafka_broker, topic))
    config = load_config(cfg)
    src = config.defs.sources["events"]
    assert isinstance(src, KafkaSourceConfig) and src.isolation_level == "read_committed"
    try:
        outcome = asyncio.run(abort_then_commit(kafka_broker.bootstrap, topic))
    except KafkaError as exc:  # pragma: no cover - a broker neither Kafka nor Tansu
        raise AssertionError(f"the transactional producer failed: {exc!r}") from None
    if outcome == "refused":
        assert not os.environ.get("ASOF_TEST_KAFKA"), "a real Kafka must run transactions"
        # Tansu: no transaction can exist. Plain records must still flow under read_committed.
        kafka_broker.produce(topic, [event(i) for i in range(10, 20)], partitions=1)
        level, n = asyncio.run(fetch_isolation(src))
        assert (level, n) == (READ_COMMITTED, 10)
    assert asyncio.run(run_daemon(config, until_caught_up=True)) == 0
    assert_exactly_once(tmp_path, set(range(10, 20)))


def test_read_uncommitted_can_be_chosen(kafka_broker: Broker, tmp_path: Path) -> None:
    topic = kafka_broker.create_topic(1)
    kafka_broker.produce(topic, [event(i) for i in range(5)], partitions=1)
    cfg = write_config(tmp_path, source_toml(kafka_broker, topic, "read_uncommitted"))
    src = load_config(cfg).defs.sources["events"]
    assert isinstance(src, KafkaSourceConfig)
    assert asyncio.run(fetch_isolation(src)) == (READ_UNCOMMITTED, 5)
