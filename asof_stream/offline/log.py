"""The offline log: append-only SQLite history of every accepted event (docs/offline-log.md).

The same file holds the dead letters and the source positions, so one transaction
commits a batch's rows, its rejects and how far each source has been read (docs/exactly-once.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sqlite import DatabaseDamaged, connect, damaged_message, is_damaged

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    view TEXT NOT NULL,
    entity TEXT NOT NULL,
    event_timestamp INTEGER NOT NULL,
    ingest_ts INTEGER NOT NULL,
    source TEXT NOT NULL,
    position TEXT,
    event_id TEXT,
    features TEXT NOT NULL,
    def_version TEXT
);
CREATE INDEX IF NOT EXISTS log_asof ON log (view, entity, event_timestamp, seq, ingest_ts);
CREATE UNIQUE INDEX IF NOT EXISTS log_event_id ON log (view, event_id) WHERE event_id IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS log_append_only BEFORE UPDATE ON log
BEGIN SELECT RAISE(ABORT, 'the offline log is append-only'); END;

CREATE TABLE IF NOT EXISTS view_stats (
    view TEXT PRIMARY KEY,
    rows INTEGER NOT NULL,
    earliest_event_timestamp INTEGER,
    latest_event_timestamp INTEGER,
    latest_ingest_ts INTEGER,
    duplicates INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS positions (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    next_offset INTEGER NOT NULL,
    detail TEXT,
    updated_ts INTEGER NOT NULL,
    PRIMARY KEY (source, key)
);

CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    position TEXT,
    raw BLOB NOT NULL,
    reason TEXT NOT NULL,
    error_ts INTEGER NOT NULL,
    requeued_ts INTEGER
);
CREATE INDEX IF NOT EXISTS dead_letters_open ON dead_letters (requeued_ts, id);

CREATE TABLE IF NOT EXISTS log_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    view TEXT NOT NULL,
    file TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL,
    min_seq INTEGER NOT NULL,
    max_seq INTEGER NOT NULL,
    min_event_timestamp INTEGER NOT NULL,
    max_event_timestamp INTEGER NOT NULL,
    min_ingest_ts INTEGER NOT NULL,
    max_ingest_ts INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    level INTEGER NOT NULL,
    bloom BLOB,
    created_ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_view ON segments (view, level);

CREATE TABLE IF NOT EXISTS retention_runs (
    id INTEGER PRIMARY KEY,
    run_ts INTEGER NOT NULL,
    cutoff INTEGER NOT NULL,
    view TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    min_seq INTEGER,
    max_seq INTEGER,
    keep_latest INTEGER NOT NULL
);
"""

def table_ddl(tables: Sequence[str], *schemas: str) -> list[str]:
    """The ``CREATE TABLE`` statements of ``tables``, in that order, as the scripts
    ``schemas`` (default: :data:`SCHEMA`) create them."""
    scratch = sqlite3.connect(":memory:")
    try:
        for script in schemas or (SCHEMA,):
            scratch.executescript(script)
        ddl = dict(scratch.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    finally:
        scratch.close()
    return [ddl[t] for t in tables]


#: The seq high-water mark in ``log_meta``: sealing and retention delete head rows, and a
#: head emptied that way must not hand out a seq again.
HIGH_SEQ_SQL = (
    "SELECT max(coalesce((SELECT max(seq) FROM log), 0),"
    " coalesce((SELECT value FROM log_meta WHERE key = 'high_seq'), 0))"
)
BUMP_HIGH_SEQ = (
    "INSERT INTO log_meta (key, value) VALUES ('high_seq', (SELECT coalesce(max(seq), 0) FROM log))"
    " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)"
)


@dataclass(frozen=True, slots=True)
class LogRow:
    """One row of the offline log."""

    seq: int
    view: str
    entity: str
    event_ts: int
    ingest_ts: int
    features: str  # JSON object text


#: ``Position.next_offset`` that removes the stored key when committed
RETIRED = -1


@dataclass(frozen=True, slots=True)
class Position:
    """How far a source has been read: the next offset to read at ``key``.

    A ``next_offset`` of :data:`RETIRED` in a commit deletes the key (a position moved
    to another key, in the same transaction).
    """

    key: str
    next_offset: int
    detail: str | None = None


class OfflineLog:
    """A connection to the offline log database (created on first open)."""

    _tiers: bool | None = None  # has the manifest tables (see has_tiers)

    def __init__(self, path: str | Path, *, readonly: bool = False,
                 conn: sqlite3.Connection | None = None) -> None:
        """Open the file at ``path``; or, given ``conn``, wrap that open connection as the
        log named ``path`` (it is used as it is: no schema is created)."""
        self.path = Path(path)
        if conn is not None:
            self.conn = conn
            return
        if readonly and not self.path.exists():
            raise FileNotFoundError(f"offline log {self.path} does not exist yet")
        self.conn = connect(self.path, readonly=readonly)
        if not readonly:
            self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> OfflineLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def segments_dir(self) -> Path:
        """Where the sealed Parquet segments live: ``<log>.segments/<view>/``."""
        return self.path.with_name(self.path.name + ".segments")

    def has_tiers(self) -> bool:
        """True when the file has the manifest tables (an old log opened read-only may not)."""
        if self._tiers is None:
            self._tiers = self.conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                " AND name IN ('segments', 'log_meta')").fetchone()[0] == 2
        return self._tiers

    def max_seq(self) -> int:
        """The greatest seq ever assigned (head rows, or the high-water mark once sealed)."""
        if not self.has_tiers():
            return int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM log").fetchone()[0])
        return int(self.conn.execute(HIGH_SEQ_SQL).fetchone()[0])

    def sealed_rows(self, view: str | None = None) -> int:
        """Rows in the sealed tier (of one view, or all)."""
        if not self.has_tiers():
            return 0
        sql = "SELECT coalesce(sum(rows), 0) FROM segments"
        params: tuple[Any, ...] = ()
        if view is not None:
            sql += " WHERE view = ?"
            params = (view,)
        return int(self.conn.execute(sql, params).fetchone()[0])

    def sealed_max_seq(self) -> int:
        """The greatest seq in the sealed tier (0 when nothing is sealed)."""
        if not self.has_tiers():
            return 0
        return int(self.conn.execute("SELECT coalesce(max(max_seq), 0) FROM segments").fetchone()[0])

    def rows_after(self, seq: int, chunk: int = 10000) -> Iterator[list[LogRow]]:
        """Head rows with ``seq`` greater than the given one, in seq order, in chunks
        (sealed rows are read through offline/scan.py)."""
        while True:
            cur = self.conn.execute(
                "SELECT seq, view, entity, event_timestamp, ingest_ts, features FROM log"
                " WHERE seq > ? ORDER BY seq LIMIT ?", (seq, chunk))
            rows = [LogRow(*r) for r in cur]
            if not rows:
                return
            yield rows
            seq = rows[-1].seq

    def latest_rows(self, view: str | None = None) -> Iterator[LogRow]:
        """Per (view, entity), the head row with the greatest (event_timestamp, seq) (over
        both tiers: :func:`asof_stream.offline.scan.latest_records`)."""
        where = "WHERE view = ?" if view else ""
        params: tuple[Any, ...] = (view,) if view else ()
        cur = self.conn.execute(
            "SELECT seq, view, entity, event_timestamp, ingest_ts, features FROM ("
            " SELECT *, row_number() OVER (PARTITION BY view, entity"
            "   ORDER BY event_timestamp DESC, seq DESC) AS rn"
            f" FROM log {where}) WHERE rn = 1", params)
        for r in cur:
            yield LogRow(*r)

    def positions(self, source: str | None = None) -> dict[str, dict[str, Position]]:
        sql = "SELECT source, key, next_offset, detail FROM positions"
        params: tuple[Any, ...] = ()
        if source is not None:
            sql += " WHERE source = ?"
            params = (source,)
        out: dict[str, dict[str, Position]] = {}
        for src, key, off, detail in self.conn.execute(sql, params):
            out.setdefault(src, {})[key] = Position(key, off, detail)
        return out

    def view_stats(self) -> dict[str, dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT view, rows, earliest_event_timestamp, latest_event_timestamp, latest_ingest_ts,"
            " duplicates FROM view_stats")
        return {v: {"rows": r, "earliest_event_timestamp": first, "latest_event_timestamp": e,
                    "latest_ingest_ts": i, "duplicates": d}
                for v, r, first, e, i, d in cur}

    def dead_letter_count(self, *, open_only: bool = False) -> int:
        sql = "SELECT count(*) FROM dead_letters"
        if open_only:
            sql += " WHERE requeued_ts IS NULL"
        return int(self.conn.execute(sql).fetchone()[0])


def open_log(path: str | Path, *, readonly: bool = False) -> OfflineLog:
    """Open (and create, unless read-only) the offline log."""
    try:
        return OfflineLog(path, readonly=readonly)
    except sqlite3.DatabaseError as exc:
        if is_damaged(exc):
            raise DatabaseDamaged(damaged_message(path, exc)) from None
        text = str(exc)
        raise sqlite3.DatabaseError(text if str(Path(path).resolve()) in text
                                    else f"{path}: {text}") from None
