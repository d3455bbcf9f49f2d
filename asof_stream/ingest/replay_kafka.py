"""``replay --kafka TOPIC --from-offset N [--to-offset M]``: backfill a Kafka offset range.

Every partition of the topic is assigned by hand (no consumer group) and read from
``N`` (or from its start, if that is later) up to ``M`` exclusive, or up to the high
watermark seen when the replay reached it. Batches go through the daemon's commit path
with their positions under the source ``replay-kafka:TOPIC`` (key ``topic/partition``),
fenced like the daemon's, so two replays of the same range cannot both store it.
Re-running a replay of the same range stores nothing twice: it resumes from the
stored positions when they are inside the range.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ..config import Config
from ..definitions import KafkaSourceConfig
from ..offline.log import Position
from ..stores import open_stores
from .commit import BatchResult
from .sources.base import Record, hw_detail
from .sources.kafka import CALL_GRACE, tp_key

log = logging.getLogger(__name__)


def replay_kafka(config: Config, topic: str, from_offset: int, to_offset: int | None = None, *,
                 view: str | None = None, available_at: int | None = None,
                 bootstrap: str | None = None, batch_size: int = 5000) -> BatchResult:
    """Replay one topic's offset range; returns the totals."""
    if from_offset < 0:
        raise ValueError("--from-offset must be >= 0")
    if to_offset is not None and to_offset < from_offset:
        raise ValueError("--to-offset must be >= --from-offset")
    servers = bootstrap or _config_bootstrap(config, topic)
    return asyncio.run(_replay(config, topic, from_offset, to_offset, view, available_at,
                               servers, batch_size))


def _config_bootstrap(config: Config, topic: str) -> str:
    kafka = [s for s in config.defs.sources.values() if isinstance(s, KafkaSourceConfig)]
    for s in kafka:
        if topic in s.topics:
            return s.bootstrap
    if kafka:
        return kafka[0].bootstrap
    raise ValueError("no Kafka source in the config to take brokers from; pass --bootstrap")


async def _replay(config: Config, topic: str, first: int, last: int | None, view: str | None,
                  available_at: int | None, servers: str, batch_size: int) -> BatchResult:
    source = f"replay-kafka:{topic}"
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_poll_records=batch_size)
    try:
        await asyncio.wait_for(consumer.start(), 30)
    except (KafkaError, TimeoutError) as exc:
        raise OSError(f"cannot reach Kafka at {servers}: {exc}") from None
    total = BatchResult()
    stores = open_stores(config)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await asyncio.wait_for(consumer._client.force_metadata_update(), CALL_GRACE)
            parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise ValueError(f"Kafka topic {topic!r} not found at {servers}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        stored = stores.log.positions(source).get(source, {})
        at: dict[TopicPartition, int | None] = {}
        for tp in tps:
            pos = stored.get(tp_key(tp))
            at[tp] = pos.next_offset if pos is not None else None
            start = first if pos is None or not (first <= pos.next_offset) else pos.next_offset
            consumer.seek(tp, start)
        committer = stores.committer(view)
        done: set[TopicPartition] = set()
        while len(done) < len(tps):
            data = await asyncio.wait_for(
                consumer.getmany(*[t for t in tps if t not in done], timeout_ms=500,
                                 max_records=batch_size), 500 / 1000 + CALL_GRACE)
            records: list[Record] = []
            starts: dict[str, int | None] = {}
            ends: list[Position] = []
            for tp, messages in data.items():
                if tp in done:
                    continue
                if last is not None:
                    messages = [m for m in messages if m.offset < last]
                if messages:
                    key = tp_key(tp)
                    records.extend(Record(m.value if m.value is not None else b"",
                                          f"{key}@{m.offset}") for m in messages)
                    starts[key] = at[tp]
                    at[tp] = messages[-1].offset + 1
                    ends.append(Position(key, messages[-1].offset + 1,
                                         hw_detail(consumer.highwater(tp))))
            if records:
                result = committer.commit(source, records, ends, available_at=available_at,
                                          expect=starts)
                total.add(result)
                total.rejects.extend(result.rejects[: max(0, 20 - len(total.rejects))])
            for tp in tps:
                if tp in done:
                    continue
                position = await consumer.position(tp)
                hw = consumer.highwater(tp)
                if last is not None and position >= last:
                    done.add(tp)
                elif hw is not None and position >= hw:
                    done.add(tp)  # reached the end of what the partition holds now
    finally:
        stores.close()
        await consumer.stop()
    return total
