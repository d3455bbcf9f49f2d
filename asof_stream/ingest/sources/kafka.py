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
* ``isolation_level = "read_committed"`` (the default): records of aborted transactions,
  and of transactions still open, are never handed out.
* With an :class:`OffsetRange` (``replay --kafka``) the source reads every partition by
  hand from ``first`` (or the stored position, when it is inside the range) and each
  partition is finished at ``last`` or at the high watermark it reached.
* ``value_format = "avro"``: values are decoded here into the JSON the event decoder
  takes; a value that does not decode is handed out with its raw bytes and the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import OffsetAndMetadata

from ...config import ConfigError
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


@dataclass(frozen=True)
class OffsetRange:
    """Read offsets ``first`` up to ``last`` (exclusive; None: the high watermark)."""

    first: int
    last: int | None = None


def client_options(name: str, cfg: KafkaSourceConfig) -> dict[str, Any]:
    """aiokafka connection settings of a source (security); the password from the environment.

    Raises :class:`ConfigError` naming the variable (never a value) when it is not set.
    """
    opts: dict[str, Any] = {"bootstrap_servers": cfg.bootstrap,
                            "security_protocol": cfg.security_protocol}
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = create_ssl_context(cafile=cfg.ssl_cafile,
                                                 certfile=cfg.ssl_certfile,
                                                 keyfile=cfg.ssl_keyfile)
    if cfg.security_protocol.startswith("SASL_"):
        var = cfg.sasl_password_env
        assert var is not None and cfg.sasl_mechanism is not None
        password = os.environ.get(var)
        if not password:
            raise ConfigError(f"sources.{name}.sasl_password_env: environment variable {var}"
                              " is not set (it must hold the SASL password)")
        opts.update(sasl_mechanism=cfg.sasl_mechanism, sasl_plain_username=cfg.sasl_username,
                    sasl_plain_password=password)
    return opts


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
                 max_poll_records: int = 5000, offsets: OffsetRange | None = None) -> None:
        self.name = name
        self.view = cfg.view
        self.cfg = cfg
        self.offsets = offsets
        self._avro = None
        if cfg.value_format == "avro":
            from ...avro import AvroValues

            self._avro = AvroValues(cfg.avro_schema, cfg.avro_schemas)
        self.consumer = AIOKafkaConsumer(
            **client_options(name, cfg),
            group_id=(cfg.group or None) if offsets is None else None,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=cfg.isolation_level,
            max_poll_records=max_poll_records,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            retry_backoff_ms=200,
        )
        self._positions: PositionReader | None = None
        self._flush: FlushHook | None = None
        #: per owned partition: the position the next chunk starts from (None: never stored)
        self._at: dict[TopicPartition, int | None] = {}
        #: range mode: where reading starts when that differs from the stored position
        self._floor: dict[TopicPartition, int] = {}
        self._finished: set[TopicPartition] = set()
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
            except (AuthenticationFailedError, SaslAuthenticationFailed,
                    UnsupportedSaslMechanismError) as exc:
                raise self._refused(exc) from None
            except (KeyError, ValueError) as exc:
                if not self.cfg.security_protocol.startswith("SASL_"):
                    raise
                # aiokafka's SCRAM client fails so when the server's final message is an error.
                raise self._refused(exc) from None
            except KafkaError as exc:
                log.warning("kafka source %s: cannot reach %s (%s); retrying in %.1fs",
                            self.name, self.cfg.bootstrap, exc, delay,
                            extra={"source": self.name})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if self.cfg.group and self.offsets is None:
            self.consumer.subscribe(list(self.cfg.topics), listener=_Listener(self))
        else:
            tps = await self._all_partitions()
            self.consumer.assign(tps)
            await self._on_assigned(set(tps))

    def _refused(self, exc: BaseException) -> ConfigError:
        cfg = self.cfg
        return ConfigError(f"kafka source {self.name}: {cfg.sasl_mechanism} login as"
                           f" {cfg.sasl_username!r} at {cfg.bootstrap} was refused"
                           f" ({type(exc).__name__}); check the user and the password in the"
                           f" environment variable {cfg.sasl_password_env}")

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
            if self.offsets is not None:
                raise ValueError(f"Kafka topic(s) {', '.join(missing)} not found at"
                                 f" {self.cfg.bootstrap}")
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
            self._floor = {}
            self._finished = set()
            for tp in assigned:
                pos = stored.get(tp_key(tp))
                if self.offsets is not None:
                    # The fence is the stored position; reading starts at the range's first
                    # offset unless the stored position is already inside the range.
                    have = None if pos is None else pos.next_offset
                    start = have if have is not None and self.offsets.first <= have \
                        else self.offsets.first
                    self.consumer.seek(tp, start)
                    self._at[tp] = have
                    self._floor[tp] = start
                elif pos is None:
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
            floor = self._floor.get(tp, at)
            if floor is not None and messages[0].offset < floor:
                # Never hand out a record below the position (a stale fetch): it would repeat.
                messages = [m for m in messages if m.offset >= floor]
            last = self.offsets.last if self.offsets is not None else None
            if last is not None and messages and messages[-1].offset >= last:
                messages = [m for m in messages if m.offset < last]
            if not messages:
                continue
            key = tp_key(tp)
            records = chunk.records
            base = f"{key}@"
            avro = self._avro
            for m in messages:
                value = m.value
                if avro is None:
                    records.append(Record(value if value is not None else b"",
                                          base + str(m.offset)))
                else:
                    records.append(self._avro_record(value, base + str(m.offset)))
            chunk.starts[key] = at
            nxt = messages[-1].offset + 1
            self._at[tp] = nxt
            self._floor.pop(tp, None)
            chunk.ends[key] = Position(key, nxt, hw_detail(self.consumer.highwater(tp)))
        return chunk

    def _avro_record(self, value: bytes | None, position: str) -> Record:
        from ...avro import AvroError

        assert self._avro is not None
        if not value:
            return Record(b"", position, "empty value (a tombstone?), not an Avro record")
        try:
            return Record(self._avro.to_json(value), position)
        except AvroError as exc:
            return Record(value, position, str(exc))

    def finished(self) -> bool:
        """Range mode: every partition reached ``last`` or its high watermark (then paused)."""
        assert self.offsets is not None
        last = self.offsets.last
        for tp in self.consumer.assignment():
            if tp in self._finished:
                continue
            at = self._floor.get(tp, self._at.get(tp))
            hw = self.consumer.highwater(tp)
            if at is not None and ((last is not None and at >= last)
                                   or (hw is not None and at >= hw)):
                self._finished.add(tp)
                self.consumer.pause(tp)
        return self._assigned_once and self._finished >= self.consumer.assignment()

    def committed(self, ends: dict[str, Position]) -> None:
        for key, pos in ends.items():
            hw = detail_highwater(pos.detail)
            if hw is not None:
                tp = parse_key(key)
                KAFKA_LAG.labels(self.name, tp.topic, str(tp.partition)).set(
                    max(0, hw - pos.next_offset))

    async def after_commit(self, ends: dict[str, Position]) -> None:
        """Mirror the SQLite positions into Kafka's committed offsets (monitoring only)."""
        if not self.cfg.group or self.offsets is not None:
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
