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

Over partition shards the replayed events are routed to the shards of their entities
(:mod:`.routed_commit`), whatever partition of the replayed topic they were read from,
each shard keeping the replay's positions for itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

from aiokafka.errors import KafkaError

from ..config import Config
from ..definitions import KafkaSourceConfig
from ..offline.log import Position
from ..offline.sealer_process import SealerOnDemand
from ..offline.shards import ShardError, is_sharded, partition_count
from ..stores import open_stores
from .commit import BatchResult
from .sources.base import Chunk, PositionReader
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
    if is_sharded(config):
        return await _replay_routed(config, source, name, view, available_at, batch_size)
    stores = open_stores(config)
    sealing = SealerOnDemand(config)
    try:
        async def stored(keys: Collection[str] | None = None) -> dict[str, Position]:
            return stores.log.positions(name).get(name, {})

        await _start(source, stored)
        committer = stores.committer(view)

        def commit(chunk: Chunk) -> BatchResult:
            result = committer.commit(name, chunk.records, list(chunk.ends.values()),
                                      available_at=available_at, expect=chunk.starts)
            sealing.note(result.stored)
            return result

        total = await _drain(source, batch_size, commit)
        sealing.finish()
    finally:
        sealing.stop()
        stores.close()
        await source.close()
    return total


async def _drain(source: KafkaSource, batch_size: int,
                 commit: Callable[[Chunk], BatchResult]) -> BatchResult:
    """Read the source to its end (the range asked for), one commit per chunk; the totals."""
    total = BatchResult()
    while not source.finished():
        chunk = await source.read(batch_size, 0.5)
        if not chunk.records:
            continue
        result = commit(chunk)
        total.add(result)
        total.rejects.extend(result.rejects[: max(0, 20 - len(total.rejects))])
    return total


async def _start(source: KafkaSource, stored: PositionReader) -> None:
    async def no_flush() -> None:  # no group: partitions are never revoked
        return None

    try:
        await asyncio.wait_for(source.start(stored, no_flush), CONNECT_TIMEOUT)
    except (KafkaError, TimeoutError) as exc:
        raise OSError(f"cannot reach Kafka at {source.cfg.bootstrap}: {exc or 'timed out'}"
                      ) from None


async def _live_partitions(config: Config, source: KafkaSource) -> int | None:
    """The partition count of the config's Kafka topics (they must agree), as the
    replay's broker knows them; None if the config has none there."""
    await source.consumer.topics()  # fetch the metadata of every topic
    counts = {t: len(source.consumer.partitions_for_topic(t) or ())
              for s in config.defs.sources.values() if isinstance(s, KafkaSourceConfig)
              for t in s.topics}
    found = {n for n in counts.values() if n}
    if len(found) > 1:
        raise ShardError("shards = 'partition' needs every topic to have the same partition"
                         f" count; found {dict(sorted(counts.items()))}")
    return next(iter(found), None)


async def _replay_routed(config: Config, source: KafkaSource, name: str, view: str | None,
                         available_at: int | None, batch_size: int) -> BatchResult:
    """The replay over partition shards: each event to the shard of its entity."""
    from .routed_commit import RoutedCommitter, kafka_key_offset, shard_partitions

    rc: RoutedCommitter | None = None

    async def stored(keys: Collection[str] | None = None) -> dict[str, Position]:
        nonlocal rc
        if rc is None:  # the consumer is up: with no shard yet, ask how the topics are split
            known = partition_count(config)
            if known is None:
                known = await _live_partitions(config, source)
            rc = RoutedCommitter(config, view, shard_partitions(config, known), kafka_key_offset)
            rc.start(name)
        return {k: Position(k, n) for k, n in rc.resume(keys).items()}

    try:
        await _start(source, stored)
        assert rc is not None, "the source asked for no positions"
        routed = rc
        total = await _drain(source, batch_size, lambda chunk: routed.commit(
            name, chunk.records, list(chunk.ends.values()), available_at=available_at,
            fence=True))
    finally:
        if rc is not None:
            rc.close()
        await source.close()
    return total
