"""Partition shards: one SQLite log per Kafka partition (docs/scaling.md).

With ``[store] shards = "partition"`` the offline path names a folder of shards instead
of one file: ``data/offline.sqlite`` becomes ``data/offline.shards/p0000.sqlite``,
``p0001.sqlite``, ... Partition ``N`` of every topic of the config lands in shard ``N``,
with its log rows, dead letters and positions in the same file, so a partition that
moves to another daemon (over shared storage) resumes exactly where its last owner
committed.

Routing: producers key each message by the entity key of its view (the join key's
value as text; several join keys: the compact JSON array asof-stream writes, see
:func:`~asof_stream.events.entity_key`), and Kafka's default partitioner puts it in
partition ``murmur2(key) % partitions`` (:func:`partition_for`, Java-compatible). So
an entity's whole history is in one shard, and a training set routes each label row to
the shard of its entity and joins there. An event that arrives on another partition
than its key routes to would be invisible to that routing: it becomes a dead letter
that says so (nothing is lost).

Each shard records the partition count it was created for (``shard_meta``); a topic
repartitioned later would move keys between shards, so a daemon that sees another
count refuses to start.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from ..config import Config

SHARD_FILE = re.compile(r"p(\d{4,})\.sqlite")

META_SCHEMA = """
CREATE TABLE IF NOT EXISTS shard_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class ShardError(ValueError):
    """Shards that cannot be used as they are (partition counts that disagree, say)."""


def is_sharded(config: Config) -> bool:
    return config.defs.store.shards == "partition"


def shard_dir(config: Config) -> Path:
    """The folder of the shards: the offline path with ``.shards`` for its extension."""
    return config.resolve(config.defs.store.offline).with_suffix(".shards")


def shard_name(partition: int) -> str:
    return f"p{partition:04d}"


def shard_path(config: Config, partition: int) -> Path:
    return shard_dir(config) / f"{shard_name(partition)}.sqlite"


def existing_shards(config: Config) -> dict[int, Path]:
    """The shard files there are now, by partition."""
    folder = shard_dir(config)
    if not folder.is_dir():
        return {}
    out = {}
    for p in folder.iterdir():
        m = SHARD_FILE.fullmatch(p.name)
        if m:
            out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def partition_of(position: str) -> int:
    """The partition of a Kafka position key or record position (``topic/3``, ``topic/3@17``)."""
    return int(position.partition("@")[0].rpartition("/")[2])


def partition_for(entity: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner picks for this entity key."""
    from aiokafka.partitioner import murmur2  # aiokafka's import is heavy; callers cache

    return (murmur2(entity.encode("utf-8")) & 0x7FFFFFFF) % partitions


class Router:
    """:func:`partition_for` with a cache: entity keys repeat across events and labels."""

    def __init__(self, partitions: int, cache_size: int = 200_000) -> None:
        if partitions <= 0:
            raise ShardError(f"a partition count must be positive, got {partitions}")
        self.partitions = partitions
        self._cache: dict[str, int] = {}
        self._cache_size = cache_size

    def __call__(self, entity: str) -> int:
        p = self._cache.get(entity)
        if p is None:
            p = partition_for(entity, self.partitions)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[entity] = p
        return p


def record_meta(conn: sqlite3.Connection, path: Path, partition: int, partitions: int) -> None:
    """Write (first time) or check which partition, of how many, this shard holds."""
    conn.executescript(META_SCHEMA)
    for key, value in (("partition", partition), ("partitions", partitions)):
        row = conn.execute("SELECT value FROM shard_meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO shard_meta (key, value) VALUES (?, ?)", (key, value))
        elif int(row[0]) != value:
            raise ShardError(f"{path}: shard was made for {key} {row[0]}, not {value}"
                             " (a repartitioned topic moves keys between shards; rebuild the"
                             " shards from a replay into a fresh folder)")


def read_meta(conn: sqlite3.Connection) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in conn.execute("SELECT key, value FROM shard_meta")}
    except sqlite3.OperationalError:  # a shard no batch was committed to yet
        return {}


def partition_count(config: Config) -> int | None:
    """The partition count the shards were made for (None: no shard has said yet)."""
    counts: dict[int, list[str]] = {}
    for path in existing_shards(config).values():
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = read_meta(conn)
        finally:
            conn.close()
        if "partitions" in meta:
            counts.setdefault(meta["partitions"], []).append(path.name)
    if len(counts) > 1:
        raise ShardError(f"{shard_dir(config)}: shards disagree on the partition count: "
                         + "; ".join(f"{n} in {', '.join(names)}" for n, names in counts.items()))
    return next(iter(counts), None)
