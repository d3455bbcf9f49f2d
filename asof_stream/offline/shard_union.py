"""Reading partition shards as one log, for the readers that only look (the feature
server's health, metrics and page, ``features``, ``freshness``).

An in-memory SQLite connection attaches every shard read-only and defines temporary
views named like the log's own tables, so code written against
:class:`~asof_stream.log.OfflineLog` reads the union unchanged: ``log`` and
``positions`` are the shards' rows together, ``view_stats`` adds them up per view,
``dead_letters`` numbers each shard's letters apart (``id * 10000 + partition``, so
"newest first" stays newest first within a shard) and ``definition_versions`` keeps the
earliest sighting. Nothing can be written through it.

SQLite attaches at most 10 databases in the usual builds, so this reads up to 10 shards
and says so beyond that.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..config import Config
from ..versions import SCHEMA as VERSIONS_SCHEMA
from .log import SCHEMA, OfflineLog, open_log, table_ddl
from .shards import existing_shards, is_sharded, shard_dir

#: Tables every shard has once its first batch is committed.
_TABLES = ("log", "positions", "dead_letters", "view_stats", "definition_versions")


class ShardUnion(OfflineLog):
    """The shards of a config as one read-only :class:`OfflineLog`."""

    def __init__(self, config: Config) -> None:
        shards = existing_shards(config)
        super().__init__(shard_dir(config), conn=sqlite3.connect(
            ":memory:", uri=True, isolation_level=None, check_same_thread=False))
        try:
            limit = self.conn.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED)
            if len(shards) > limit:
                raise sqlite3.OperationalError(
                    f"{self.path}: {len(shards)} shards, but this SQLite attaches at most"
                    f" {limit} databases at once")
            names: list[tuple[int, str]] = []
            for p, path in shards.items():
                name = f"s{p}"
                self.conn.execute(f"ATTACH DATABASE ? AS {name}", (_ro_uri(path),))
                tables = {r[0] for r in self.conn.execute(
                    f"SELECT name FROM {name}.sqlite_master WHERE type = 'table'")}
                if set(_TABLES) <= tables:
                    names.append((p, name))
            self._views(names)
        except BaseException:
            self.conn.close()
            raise

    def _views(self, names: list[tuple[int, str]]) -> None:
        def union(select: str) -> str:
            if not names:
                return select.format(s="main", p=0) + " WHERE 0"
            return " UNION ALL ".join(select.format(s=s, p=p) for p, s in names)

        c = self.conn
        if not names:  # no shard has data yet: the log's own tables, empty
            for ddl in table_ddl(_TABLES, SCHEMA, VERSIONS_SCHEMA):
                c.execute(ddl)
            return
        c.execute("CREATE TEMP VIEW log AS " + union("SELECT * FROM {s}.log"))
        c.execute("CREATE TEMP VIEW positions AS " + union("SELECT * FROM {s}.positions"))
        c.execute("CREATE TEMP VIEW dead_letters AS " + union(
            "SELECT id * 10000 + {p} AS id, source, position, raw, reason, error_ts,"
            " requeued_ts FROM {s}.dead_letters"))
        c.execute("CREATE TEMP VIEW view_stats AS SELECT view, sum(rows) AS rows,"
                  " min(earliest_event_timestamp) AS earliest_event_timestamp,"
                  " max(latest_event_timestamp) AS latest_event_timestamp,"
                  " max(latest_ingest_ts) AS latest_ingest_ts, sum(duplicates) AS duplicates"
                  " FROM (" + union("SELECT * FROM {s}.view_stats") + ") GROUP BY view")
        c.execute("CREATE TEMP VIEW definition_versions AS SELECT view, version, definition,"
                  " min(first_seen_ts) AS first_seen_ts FROM ("
                  + union("SELECT * FROM {s}.definition_versions") + ") GROUP BY view, version")

    def max_seq(self) -> int:
        """The highest seq of any shard (each shard counts its own)."""
        return super().max_seq()


def _ro_uri(path: Path) -> str:
    return path.resolve().as_uri() + "?mode=ro"


def open_reader(config: Config) -> OfflineLog | None:
    """The log to read: the one file, or the union of the shards; None before any data."""
    if is_sharded(config):
        return ShardUnion(config)
    if not config.offline_path.exists():
        return None
    return open_log(config.offline_path, readonly=True)
