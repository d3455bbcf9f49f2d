"""Twin projects for commands over partition shards: the same events in shard logs
(written through the daemon's :class:`ShardedCommitter`, routed by murmur2 as a keyed
producer would) and in one flat log, so a test can compare a command's result on both."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from asof_stream.config import Config, load_config
from asof_stream.ingest.sharded_commit import ShardedCommitter
from asof_stream.ingest.sources.base import Record
from asof_stream.offline.log import Position
from asof_stream.offline.shards import Router
from asof_stream.stores import open_stores

VIEWS = """
[entities.customer]
join_keys = { customer_id = "string" }

[views.customer_stats]
entity = "customer"
features = { spend_7d = "float64", orders_7d = "int64", tier = "string" }
"""

SHARDED = """
[store]
offline = "data/offline.sqlite"
online = "%s"
shards = "partition"
""" + VIEWS

FLAT = """
[store]
offline = "data/offline.sqlite"
online = "sqlite:///data/online.sqlite"
""" + VIEWS

TOPIC = "t"
SOURCE = "k"


def twin_projects(root: Path, redis_url: str, extra: str = "") -> tuple[Config, Config]:
    """A sharded project (online store: ``redis_url``) and a flat one, same definitions."""
    out = []
    for name, text in (("sharded", SHARDED % redis_url), ("flat", FLAT)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "asof.toml").write_text(text + extra, encoding="utf-8")
        out.append(load_config(folder / "asof.toml"))
    return out[0], out[1]


def routed(events: list[bytes], partitions: int, start: Counter[int] | None = None,
           ) -> tuple[list[Record], list[Position]]:
    """Each event on the partition of its customer_id, at the next offset there."""
    route = Router(partitions)
    offsets: Counter[int] = Counter(start or {})
    records = []
    for raw in events:
        p = route(str(json.loads(raw)["customer_id"]))
        records.append(Record(raw, f"{TOPIC}/{p}@{offsets[p]}"))
        offsets[p] += 1
    return records, [Position(f"{TOPIC}/{p}", n) for p, n in sorted(offsets.items())]


def commit_both(sharded: Config, flat: Config, events: list[bytes], partitions: int = 3) -> None:
    """Commit ``events`` to the shards (by partition) and to the flat log (one batch)."""
    records, positions = routed(events, partitions)
    committer = ShardedCommitter(sharded, None)
    committer.partition_counts = lambda: {TOPIC: partitions}
    try:
        committer.positions(SOURCE, [f"{TOPIC}/{p}" for p in range(partitions)])
        result = committer.commit(SOURCE, records, positions)
        assert not any("misrouted" in why for _, why in result.rejects)
    finally:
        committer.close()
    with open_stores(flat) as stores:
        stores.committer().commit(SOURCE, records, positions)
