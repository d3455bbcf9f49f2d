"""``replay --kafka TOPIC --from-offset N [--to-offset M]``: backfill a Kafka offset range.

The read path is the daemon's: a :class:`~asof_stream.ingest.sources.kafka.KafkaSource`
in range mode, with the connection, security, isolation and value format of the
config's Kafka source that lists the topic (else the first Kafka source; ``--bootstrap``
replaces its brokers). Every partition is assigned by hand (no consumer group) and read from
``N`` (or from its start, if that is later) up to ``M`` exclusive, or up to the high
watermark seen when the replay reached it. Batches go through the daemon's commit path
with their positions under the source ``replay-kafka:TOPIC`` (key ``topic/partition``),
fenced like the daemon's, so two replays of the same range cannot both store it.
Re-running a replay of the same range stores nothing twice: it resumes from the
stored positions when they are inside the range.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from aiokafka.errors import KafkaError

from ..config import Config
from ..definitions import KafkaSourceConfig
from ..offline.log import Position
from ..stores import open_stores
from .commit import BatchResult
from .sources.kafka import KafkaSource, OffsetRange

CONNECT_TIMEOUT = 30.0


def replay_kafka(config: Config, topic: str, from_offset: int, to_offset: int | None = None, *,
                 view: str | None = None, available_at: int | None = None,
                 bootstrap: str | None = None, batch_size: int = 5000) -> BatchResult:
    """Replay one topic's offset range; returns the totals."""
    if from_offset < 0:
        raise ValueError("--from-offset must be >= 0")
    if to_offset is not None and to_offset < from_offset:
        raise ValueError("--to-offset must be >= --from-offset")
    name, cfg = replay_source_config(config, topic, bootstrap)
    offsets = OffsetRange(from_offset, to_offset)
    return asyncio.run(_replay(config, name, cfg, offsets, view, available_at, batch_size))


def replay_source_config(config: Config, topic: str,
                         bootstrap: str | None) -> tuple[str, KafkaSourceConfig]:
    """The settings to read ``topic`` with: the config's source for it, narrowed to the topic."""
    kafka = {n: s for n, s in config.defs.sources.items() if isinstance(s, KafkaSourceConfig)}
    chosen = next(((n, s) for n, s in kafka.items() if topic in s.topics), None)
    if chosen is None and kafka:
        chosen = next(iter(kafka.items()))
    if chosen is None:
        if bootstrap is None:
            raise ValueError("no Kafka source in the config to take brokers from; pass --bootstrap")
        return "replay", KafkaSourceConfig(kind="kafka", bootstrap=bootstrap, topics=(topic,),
                                           group="")
    name, cfg = chosen
    update: dict[str, object] = {"topics": (topic,), "group": ""}
    if bootstrap is not None:
        update["bootstrap"] = bootstrap
    return name, cfg.model_copy(update=update)


async def _replay(config: Config, source_name: str, cfg: KafkaSourceConfig,
                  offsets: OffsetRange, view: str | None, available_at: int | None,
                  batch_size: int) -> BatchResult:
    source = KafkaSource(source_name, cfg, client_id="asof-stream-replay",
                         max_poll_records=batch_size, offsets=offsets)
    topic = cfg.topics[0]
    name = f"replay-kafka:{topic}"
    total = BatchResult()
    stores = open_stores(config)
    try:
        async def stored(keys: Collection[str] | None = None) -> dict[str, Position]:
            return stores.log.positions(name).get(name, {})

        async def no_flush() -> None:  # no group: partitions are never revoked
            return None

        try:
            await asyncio.wait_for(source.start(stored, no_flush), CONNECT_TIMEOUT)
        except (KafkaError, TimeoutError) as exc:
            raise OSError(f"cannot reach Kafka at {source.cfg.bootstrap}: {exc or 'timed out'}"
                          ) from None
        committer = stores.committer(view)
        while not source.finished():
            chunk = await source.read(batch_size, 0.5)
            if not chunk.records:
                continue
            result = committer.commit(name, chunk.records, list(chunk.ends.values()),
                                      available_at=available_at, expect=chunk.starts)
            total.add(result)
            total.rejects.extend(result.rejects[: max(0, 20 - len(total.rejects))])
    finally:
        stores.close()
        await source.close()
    return total
