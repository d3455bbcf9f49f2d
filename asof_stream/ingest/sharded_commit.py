"""The daemon's write path over partition shards: the shards it owns, and a committer
that splits each batch by partition, one transaction per shard (docs/scaling.md).

A batch's records, dead letters and positions are grouped by Kafka partition and each
group is committed to its own shard with :class:`~asof_stream.commit.Committer`, fenced
by that partition's positions exactly as in the unsharded daemon. The fence is per
shard, so a batch that loses the fence on one shard after another committed is still
exactly once: the daemon rewinds every partition to its stored position, which for the
committed shard is already past the batch.

Shards are opened when their partitions are assigned (healing the Redis online store
from the shard's log tail) and closed when a later assignment no longer holds them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

from ..config import Config
from ..events import EventDecoder
from ..offline.log import Position, open_log
from ..offline.shards import (
    Router,
    ShardError,
    existing_shards,
    partition_of,
    record_meta,
    shard_name,
    shard_path,
)
from ..offline.sqlite import tune_writer
from ..online import open_online
from ..online.aggstate import AggBatch, AggPlan, build_state, fingerprint
from ..online.base import OnlineRow, from_log_row
from ..online.materialize import catch_up
from ..stores import Stores
from ..timestamps import now_micros
from .commit import BatchResult, Committer, Decoded, PositionConflict, decode_records
from .sources.base import Record

log = logging.getLogger(__name__)


def open_shard(config: Config, partition: int, partitions: int) -> Stores:
    """One shard's log with the shared online store (its own applied track), healed."""
    path = shard_path(config, partition)
    path.parent.mkdir(parents=True, exist_ok=True)
    log_ = open_log(path)
    try:
        tune_writer(log_.conn)
        record_meta(log_.conn, path, partition, partitions)
        log_.conn.commit()
        online = open_online(config.online_url, track=":" + shard_name(partition))
    except BaseException:
        log_.close()
        raise
    try:
        plan = AggPlan.from_defs(config.defs, folding=online.folds_aggregations)
        online.agg_plan = plan
        if online.agg_fingerprint() != fingerprint(plan):
            # The shared state was kept for other definitions (or none yet): rebuilt from
            # every shard's log, not from this one's alone.
            materialize_shards(config)
        healed = catch_up(log_, online)
    except BaseException:
        online.close()
        log_.close()
        raise
    if healed:
        log.info("shard %s: replayed %d log rows into the online store", shard_name(partition),
                 healed)
    return Stores(config, log_, online)


class ShardedCommitter:
    """What :class:`~asof_stream.ingest.runner.SourceRunner` needs of a committer, over shards."""

    def __init__(self, config: Config, view: str | None) -> None:
        self.config = config
        self.view = view
        self.decoder = EventDecoder(config.defs, view=view,
                                    max_bytes=config.defs.ingest.max_event_bytes)
        self.shards: dict[int, Stores] = {}
        self.committers: dict[int, Committer] = {}
        self.router: Router | None = None
        #: set by the daemon: the partition count of each topic of the source
        self.partition_counts: Callable[[], dict[str, int]] = dict

    def decode(self, records: Sequence[Record]) -> Decoded:
        """Decode and validate; an event on another partition than its key routes to is
        a dead letter (training-set routing would never find it)."""
        good, bad = decode_records(self.decoder, records)
        route = self.router
        if route is None or not good:
            return good, bad
        kept = [(ev, pos) for ev, pos in good if route(ev.entity) == partition_of(pos)]
        if len(kept) < len(good):
            raw = {r.position: r.raw for r in records}
            for ev, pos in good:
                want = route(ev.entity)
                if want != partition_of(pos):
                    bad.append((Record(raw[pos], pos),
                                misrouted(ev.view, ev.entity, want, partition_of(pos))))
        return kept, bad

    def positions(self, source: str, keys: Collection[str] | None = None) -> dict[str, Position]:
        """Take the shards of these position keys (an assignment), release the others,
        and return their stored positions."""
        if keys is not None:
            self._own({partition_of(k) for k in keys})
        out: dict[str, Position] = {}
        for stores in self.shards.values():
            out.update(stores.log.positions(source).get(source, {}))
        return out

    def _own(self, partitions: set[int]) -> None:
        for p in sorted(set(self.shards) - partitions):
            self.shards.pop(p).close()
            self.committers.pop(p, None)
            log.info("shard %s closed (partition revoked)", shard_name(p))
        if not partitions:
            return
        count = self._partition_count()
        for p in sorted(partitions - set(self.shards)):
            if p >= count:
                raise ShardError(f"partition {p} is beyond the partition count {count}")
            stores = open_shard(self.config, p, count)
            self.shards[p] = stores
            self.committers[p] = stores.committer(self.view)
            log.info("shard %s opened", shard_name(p))

    def _partition_count(self) -> int:
        counts = self.partition_counts()
        if len(set(counts.values())) != 1:
            raise ShardError("shards = 'partition' needs every topic of a source to have the same"
                             f" partition count (an entity's partition must not depend on its"
                             f" topic); found {dict(sorted(counts.items()))}")
        n = next(iter(counts.values()))
        if self.router is None or self.router.partitions != n:
            self.router = Router(n)
        return n

    def commit(self, source: str, records: Sequence[Record], positions: Sequence[Position] = (),
               *, decoded: Decoded | None = None,
               expect: dict[str, int | None] | None = None) -> BatchResult:
        """Commit each partition's part of the batch to its shard; the results added up."""
        good, bad = decoded if decoded is not None else self.decode(records)
        parts: dict[int, tuple[Decoded, list[Position], dict[str, int | None]]] = {}

        def part(p: int) -> tuple[Decoded, list[Position], dict[str, int | None]]:
            got = parts.get(p)
            if got is None:
                got = parts[p] = (([], []), [], {})
            return got

        for ev, pos in good:
            part(partition_of(pos))[0][0].append((ev, pos))
        for rec, why in bad:
            part(partition_of(rec.position))[0][1].append((rec, why))
        for position in positions:
            part(partition_of(position.key))[1].append(position)
        for key, start in (expect or {}).items():
            part(partition_of(key))[2][key] = start
        total = BatchResult()
        for p in sorted(parts):
            committer = self.committers.get(p)
            if committer is None:  # not ours (any more): drop the batch and rewind
                raise PositionConflict(f"partition {p} is not assigned to this daemon")
            (g, b), pos_p, expect_p = parts[p]
            result = committer.commit(source, (), pos_p, decoded=(g, b), expect=expect_p)
            total.add(result)
            total.rejects.extend(result.rejects)
        return total

    def close(self) -> None:
        for stores in self.shards.values():
            stores.close()
        self.shards.clear()
        self.committers.clear()


def misrouted(view: str, entity: str, want: int, got: int) -> str:
    return (f"misrouted: view {view} entity key {entity!r} belongs in partition {want}"
            f" (murmur2 of the key), but arrived on partition {got}; with shards = 'partition'"
            " producers must key each message by its entity key")


def materialize_shards(config: Config, view: str | None = None) -> int:
    """Rebuild the shared online store from every shard's log (I2 over shards)."""
    from ..online.redis import RedisOnlineStore

    logs = {shard_name(p): open_log(path) for p, path in existing_shards(config).items()}
    try:
        rows: list[OnlineRow] = []
        marks: dict[str, int] = {}
        per_shard: dict[str, list[OnlineRow]] = {}
        plan = AggPlan.from_defs(config.defs, folding=True)  # rows and summaries
        agg = None if plan is None or view is not None else AggBatch([])
        now = now_micros()
        for name, log_ in logs.items():
            log_.conn.execute("BEGIN")  # one snapshot for the rows, the state and the mark
            try:
                marks[":" + name] = log_.max_seq()
                per_shard[name] = [from_log_row(r) for r in log_.latest_rows(view)]
                if agg is not None and plan is not None:  # this shard's entities' state
                    part = build_state(log_, plan, marks[":" + name], now)
                    agg.rows.extend(part.rows)
                    agg.summaries.extend(part.summaries)
                    agg.summary_tracks.extend([":" + name] * len(part.summaries))
            finally:
                log_.conn.execute("COMMIT")
            rows.extend(per_shard[name])
        tracks = {name: open_online(config.online_url, track=":" + name) for name in logs}
        for online in tracks.values():
            online.agg_plan = plan
        try:
            if view is None:
                shared = next(iter(tracks.values()), None) or open_online(config.online_url)
                assert isinstance(shared, RedisOnlineStore)
                shared.agg_plan = plan
                shared.replace_all(rows, 0, agg=agg, tracks=marks)
                for name, online in tracks.items():  # batches committed during the rebuild
                    catch_up(logs[name], online)
            else:
                for name, online in tracks.items():
                    online.apply(per_shard[name], online.applied_seq())
        finally:
            for online in tracks.values():
                online.close()
        return len(rows)
    finally:
        for log_ in logs.values():
            log_.close()
