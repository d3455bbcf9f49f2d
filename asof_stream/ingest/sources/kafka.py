"""Kafka source: an aiokafka consumer whose true positions live in SQLite.

* Position key ``topic/partition``, value the next offset to read; the position
  ``detail`` holds the partition's high watermark as last seen by a fetch, so
  ``status`` can show lag without contacting the broker.
* On start and on every assignment the consumer seeks to the positions stored in
  SQLite (no stored position: the beginning of the partition). Kafka's own committed
  offsets are written after each SQLite commit, for lag monitoring only, and never read.
* On revocation the daemon commits the batch in hand before the partitions are given
  up, so the next owner starts exactly where this one stopped.
* ``group = ""`` assigns every partition of the topics by hand (no group membership):
  one daemon per topic, no rebalance pauses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from ...definitions import KafkaSourceConfig
from ...metrics import KAFKA_LAG
from ...offline.log import Position
from .base import Chunk, FlushHook, PositionReader, Record, detail_highwater, hw_detail

log = logging.getLogger(__name__)

#: aiokafka's getmany/commit can block far beyond their own timeouts (rebalances,
#: broker restarts): every call is wrapped so the loop stays responsive.
CALL_GRACE = 5.0
COMMIT_TIMEOUT = 5.0


def tp_key(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"


def parse_key(key: str) -> TopicPartition:
    topic, _, part = key.rpartition("/")
    return TopicPartition(topic, int(part))


class _Listener(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.source._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.source._on_assigned(set(assigned))


class KafkaSource:
    """Reads one Kafka source of the config (one or many topics)."""

    def __init__(self, name: str, cfg: KafkaSourceConfig, *, client_id: str = "asof-stream",
                 max_poll_records: int = 5000) -> None:
        self.name = name
        self.view = cfg.view
        self.cfg = cfg
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap,
            group_id=cfg.group or None,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_poll_records,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            retry_backoff_ms=200,
        )
        self._positions: PositionReader | None = None
        self._flush: FlushHook | None = None
        #: per owned partition: the position the next chunk starts from (None: never stored)
        self._at: dict[TopicPartition, int | None] = {}
        self._assigned_once = False
        self.fatal: BaseException | None = None
        self._backoff = 0.0

    # -- lifecycle ---------------------------------------------------------------

    async def start(self, positions: PositionReader, flush: FlushHook) -> None:
        self._positions = positions
        self._flush = flush
        delay = 0.5
        while True:
            try:
                await self.consumer.start()
                break
            except KafkaError as exc:
                log.warning("kafka source %s: cannot reach %s (%s); retrying in %.1fs",
                            self.name, self.cfg.bootstrap, exc, delay,
                            extra={"source": self.name})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if self.cfg.group:
            self.consumer.subscribe(list(self.cfg.topics), listener=_Listener(self))
        else:
            tps = await self._all_partitions()
            self.consumer.assign(tps)
            await self._on_assigned(set(tps))

    async def _all_partitions(self) -> list[TopicPartition]:
        delay = 0.5
        while True:
            tps: list[TopicPartition] = []
            missing = []
            for topic in self.cfg.topics:
                parts = self.consumer.partitions_for_topic(topic)
                if not parts:
                    try:
                        await asyncio.wait_for(self.consumer._client.force_metadata_update(),
                                               CALL_GRACE)
                    except (KafkaError, TimeoutError):
                        pass
                    parts = self.consumer.partitions_for_topic(topic)
                if not parts:
                    missing.append(topic)
                else:
                    tps.extend(TopicPartition(topic, p) for p in sorted(parts))
            if not missing:
                return tps
            log.warning("kafka source %s: topic(s) %s not found yet; retrying in %.1fs",
                        self.name, missing, delay, extra={"source": self.name})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.consumer.stop(), 10.0)
        except (KafkaError, TimeoutError, asyncio.CancelledError) as exc:
            # With the broker down, aiokafka's stop() surfaces its own cancelled fetch task.
            log.warning("kafka source %s: unclean stop (%s)", self.name, exc)

    # -- rebalances -------------------------------------------------------------

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        log.info("kafka source %s: partitions revoked %s", self.name,
                 sorted(tp_key(t) for t in revoked), extra={"source": self.name})
        if self._flush is not None:
            try:
                await self._flush()  # commit (or drop) the batch in hand, wait for in-flight
            except BaseException as exc:  # the listener's errors are swallowed by aiokafka
                self.fatal = exc
        for tp in revoked:
            self._at.pop(tp, None)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            assert self._positions is not None
            stored = await self._positions({tp_key(t) for t in assigned})
            self._at = {}
            for tp in assigned:
                pos = stored.get(tp_key(tp))
                if pos is None:
                    await self.consumer.seek_to_beginning(tp)
                    self._at[tp] = None
                else:
                    self.consumer.seek(tp, pos.next_offset)
                    self._at[tp] = pos.next_offset
            self._assigned_once = True
            log.info("kafka source %s: assigned %s", self.name,
                     {tp_key(t): self._at[t] for t in sorted(assigned)},
                     extra={"source": self.name, "partitions": sorted(tp_key(t) for t in assigned)})
        except BaseException as exc:
            # Never read a partition that was not positioned from SQLite.
            self.fatal = exc
            self.consumer.pause(*assigned)

    async def rewind(self) -> None:
        await self._on_assigned(set(self.consumer.assignment()))

    # -- reading ----------------------------------------------------------------

    async def read(self, max_records: int, timeout: float) -> Chunk:
        if self.fatal is not None:
            raise self.fatal
        chunk = Chunk()
        try:
            data = await asyncio.wait_for(
                self.consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records),
                timeout + CALL_GRACE)
            self._backoff = 0.0
        except TimeoutError:
            return chunk
        except KafkaError as exc:
            self._backoff = min(max(self._backoff * 2, 0.2), 10.0)
            log.warning("kafka source %s: fetch failed (%s); retrying in %.1fs", self.name, exc,
                        self._backoff, extra={"source": self.name})
            await asyncio.sleep(self._backoff)
            return chunk
        for tp, messages in data.items():
            if tp not in self._at or not messages:
                continue  # fetched before a revocation: not ours any more
            at = self._at[tp]
            if at is not None and messages[0].offset < at:
                # Never hand out a record below the position (a stale fetch): it would repeat.
                messages = [m for m in messages if m.offset >= at]
                if not messages:
                    continue
            key = tp_key(tp)
            records = chunk.records
            base = f"{key}@"
            for m in messages:
                value = m.value
                records.append(Record(value if value is not None else b"", base + str(m.offset)))
            chunk.starts[key] = at
            nxt = messages[-1].offset + 1
            self._at[tp] = nxt
            chunk.ends[key] = Position(key, nxt, hw_detail(self.consumer.highwater(tp)))
        return chunk

    def committed(self, ends: dict[str, Position]) -> None:
        for key, pos in ends.items():
            hw = detail_highwater(pos.detail)
            if hw is not None:
                tp = parse_key(key)
                KAFKA_LAG.labels(self.name, tp.topic, str(tp.partition)).set(
                    max(0, hw - pos.next_offset))

    async def after_commit(self, ends: dict[str, Position]) -> None:
        """Mirror the SQLite positions into Kafka's committed offsets (monitoring only)."""
        if not self.cfg.group:
            return
        owned = self.consumer.assignment()
        offsets = {tp: OffsetAndMetadata(p.next_offset, "")
                   for tp, p in ((parse_key(k), p) for k, p in ends.items()) if tp in owned}
        if not offsets:
            return
        try:
            await asyncio.wait_for(self.consumer.commit(offsets), COMMIT_TIMEOUT)
        except (KafkaError, TimeoutError) as exc:
            log.info("kafka source %s: offset commit for monitoring failed (%s)", self.name,
                     exc, extra={"source": self.name})

    def partition_counts(self) -> dict[str, int]:
        """Partitions per topic of this source, as the consumer's metadata knows them."""
        return {t: len(self.consumer.partitions_for_topic(t) or ()) for t in self.cfg.topics}

    def caught_up(self) -> bool:
        if not self._assigned_once:
            return False
        for tp in self.consumer.assignment():
            hw = self.consumer.highwater(tp)
            at = self._at.get(tp)
            if hw is None:
                return False  # no fetch answered yet
            if hw > 0 and (at is None or at < hw):
                return False
        return True

    def lag(self) -> dict[str, int]:
        out = {}
        for tp, at in self._at.items():
            hw = self.consumer.highwater(tp)
            if hw is not None:
                out[tp_key(tp)] = max(0, hw - (at or 0))
        return out
