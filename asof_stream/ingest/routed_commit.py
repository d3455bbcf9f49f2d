"""Replays over partition shards: route each event to its shard, commit per shard.

A replay (``replay FILE``, ``replay --kafka``) reads from somewhere that is not one of
the shards' partitions, so it cannot commit the way the daemon does (a partition's
batch to that partition's shard, where an event on another partition than its key
routes to is a misrouted dead letter). :class:`RoutedCommitter` routes each event as a
keyed producer would: to shard ``murmur2(entity key) % partitions``
(:class:`~asof_stream.offline.shards.Router`), for the partition count the shards were
made for. Records that are not events have no entity to route by; their dead letters
go to the first shard (``p0000``).

Exactly once, per shard: every batch is committed to every shard, each in its own
transaction holding that shard's events of the batch and the replay's positions. So
each shard knows how far the replay reached *for it*. A replay resumes from the
earliest of the shards' positions, and each shard skips the records before its own:
a crash between two shards' commits of one batch stores nothing twice and loses
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from ..config import Config
from ..events import EventDecoder
from ..offline.log import Position
from ..offline.shards import Router, ShardError, partition_count, shard_dir
from ..stores import Stores
from .commit import BatchResult, Committer, decode_records
from .sharded_commit import open_shard
from .sources.base import Record

#: a record position -> (its position key, its offset under that key)
KeyOffset = Callable[[str], tuple[str, int]]

#: the shard that holds a replay's dead letters (they have no entity to route by)
LETTER_SHARD = 0


def file_key_offset(position: str) -> tuple[str, int]:
    """``name:offset`` of a replayed file's line: key ``file``."""
    return "file", int(position.rpartition(":")[2])


def kafka_key_offset(position: str) -> tuple[str, int]:
    """``topic/3@17``: key ``topic/3``, offset 17."""
    key, _, offset = position.rpartition("@")
    return key, int(offset)


def shard_partitions(config: Config, fallback: int | None = None) -> int:
    """The partition count to route by: the one the shards were made for, else
    ``fallback`` (what Kafka says of the config's topics)."""
    n = partition_count(config)
    if n is None:
        n = fallback
    if n is None:
        raise ShardError(f"{shard_dir(config)}: no shard says its partition count yet; run the"
                         " daemon once (it creates the shards) or replay --kafka from a topic"
                         " of the config")
    return n


class RoutedCommitter:
    """Every shard of a config open for writing, and commits routed among them."""

    def __init__(self, config: Config, view: str | None, partitions: int,
                 key_offset: KeyOffset) -> None:
        self.route = Router(partitions)
        self.key_offset = key_offset
        self.decoder = EventDecoder(config.defs, view=view,
                                    max_bytes=config.defs.ingest.max_event_bytes)
        self.shards: dict[int, Stores] = {}
        self.committers: dict[int, Committer] = {}
        #: per shard: the offset under each key before which it already has the replay
        self.skip: dict[int, dict[str, int]] = {}
        #: per shard: the stored next_offset of each key (the fence of its next commit)
        self.stored: dict[int, dict[str, int | None]] = {}
        try:
            for p in range(partitions):
                stores = self.shards[p] = open_shard(config, p, partitions)
                self.committers[p] = stores.committer(view)
        except BaseException:
            self.close()
            raise

    def positions(self, source: str) -> dict[int, dict[str, Position]]:
        """Each shard's stored positions of ``source``."""
        return {p: s.log.positions(source).get(source, {}) for p, s in self.shards.items()}

    def start(self, source: str, skip: dict[int, dict[str, int]] | None = None) -> None:
        """Read the shards' positions; ``skip``: where each shard resumes (default: its
        stored positions)."""
        stored = self.positions(source)
        self.stored = {p: {k: pos.next_offset for k, pos in keys.items()}
                       for p, keys in stored.items()}
        self.skip = skip if skip is not None else {
            p: {k: pos.next_offset for k, pos in keys.items()} for p, keys in stored.items()}

    def resume(self, keys: Collection[str] | None = None) -> dict[str, int]:
        """Where the replay resumes under each key: the earliest shard's (a key some
        shard has not stored is left out: read it from the start)."""
        every = set.intersection(*(set(s) for s in self.skip.values())) if self.skip else set()
        return {k: min(s[k] for s in self.skip.values()) for k in sorted(every)
                if keys is None or k in keys}

    def commit(self, source: str, records: Sequence[Record], positions: Sequence[Position],
               *, available_at: int | None = None, fence: bool = False) -> BatchResult:
        """Commit a batch: to each shard its events and (``LETTER_SHARD``) dead letters
        it does not have yet, with the positions it has not passed; ``fence``: each shard's commit
        expects its stored positions (another replay in between loses)."""
        good, bad = decode_records(self.decoder, records)
        total = BatchResult()
        for p, committer in self.committers.items():
            skip = self.skip.get(p, {})

            def new(position: str, skip: dict[str, int] = skip) -> bool:
                key, offset = self.key_offset(position)
                return offset >= skip.get(key, 0)

            g = [(ev, pos) for ev, pos in good if self.route(ev.entity) == p and new(pos)]
            b = [(rec, why) for rec, why in bad if p == LETTER_SHARD and new(rec.position)]
            # a shard's position only moves forward: one already past this batch keeps its own
            ahead = [pos for pos in positions if pos.next_offset > skip.get(pos.key, -1)]
            if not (g or b or ahead):
                continue
            stored = self.stored.setdefault(p, {})
            expect = {pos.key: stored.get(pos.key) for pos in ahead} if fence else None
            result = committer.commit(source, (), ahead, decoded=(g, b),
                                      available_at=available_at, expect=expect)
            for pos in ahead:
                stored[pos.key] = pos.next_offset
            total.add(result)
            total.rejects.extend(result.rejects)
        return total

    def close(self) -> None:
        for stores in self.shards.values():
            stores.close()
        self.shards.clear()
        self.committers.clear()
