"""SQLite online store: one row per (view, entity), written in the log's transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..offline.sqlite import connect
from .aggread import ListRows, WindowRows
from .aggstate import NO_LOW, AggBatch, AggPlan, fingerprint
from .aggsummary import Summary
from .base import OnlineRow

#: The columns of a stored row: the latest row per key.
ROW_COLUMNS = """
    view TEXT NOT NULL,
    entity TEXT NOT NULL,
    event_timestamp INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ingest_ts INTEGER NOT NULL,
    features TEXT NOT NULL,"""
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {s}online (" + ROW_COLUMNS
    + "\n    PRIMARY KEY (view, entity)\n) WITHOUT ROWID;\n"
    "CREATE TABLE IF NOT EXISTS {s}online_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);\n"
    # The aggregations' raw rows, keyed by seq (unique in the one log this store serves):
    # a batch appends its rows at the table's end, and only the narrow index is written
    # all over (a table clustered by entity had every batch rewrite most of its pages).
    "CREATE TABLE IF NOT EXISTS {s}online_agg_rows (seq INTEGER PRIMARY KEY,"
    " view TEXT NOT NULL, entity TEXT NOT NULL, event_timestamp INTEGER NOT NULL,"
    " ingest_ts INTEGER NOT NULL, features TEXT NOT NULL);\n"
    "CREATE INDEX IF NOT EXISTS {s}online_agg_key ON online_agg_rows"
    " (view, entity, event_timestamp);\n"
    # Running summaries of the no-window aggregations (see .aggsummary): per (view,
    # entity) the folded rows, which online_agg_rows no longer holds.
    "CREATE TABLE IF NOT EXISTS {s}online_agg_summary (view TEXT NOT NULL,"
    " entity TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (view, entity)) WITHOUT ROWID;\n"
)
# Aggregation state (see .aggstate): raw rows of source views, idempotent by key.
INSERT_AGG = """
INSERT OR IGNORE INTO {s}online_agg_rows (view, entity, event_timestamp, seq, ingest_ts,
                                           features) VALUES (?, ?, ?, ?, ?, ?)
"""
# The same rows copied from the log's rows of a committed range, in the log's transaction.
COPY_AGG = """
INSERT OR IGNORE INTO {s}online_agg_rows (view, entity, event_timestamp, seq, ingest_ts,
                                           features)
SELECT view, entity, event_timestamp, seq, ingest_ts, features FROM main.log
WHERE seq BETWEEN ? AND ? AND +view = ? AND event_timestamp > ?
"""
FOLD_ROWS = ("SELECT event_timestamp, seq, features FROM {s}online_agg_rows WHERE view = ?"
             " AND entity = ? AND event_timestamp <= ?")
GET_SUMMARY = "SELECT state FROM {s}online_agg_summary WHERE view = ? AND entity = ?"
PUT_SUMMARY = ("INSERT INTO {s}online_agg_summary (view, entity, state) VALUES (?, ?, ?)"
               " ON CONFLICT (view, entity) DO UPDATE SET state = excluded.state")
EVICT_AGG = "DELETE FROM {s}online_agg_rows WHERE view = ? AND entity = ? AND event_timestamp <= ?"
_RANGE = " FROM online_agg_rows WHERE view = ? AND entity = ? AND event_timestamp > ?" \
         " AND event_timestamp <= ?"
AGG_ROWS = "SELECT event_timestamp, seq, features" + _RANGE + " ORDER BY event_timestamp, seq"
AGG_COUNT = "SELECT count(*), max(event_timestamp)" + _RANGE
AGG_NEWEST = "SELECT event_timestamp, features" + _RANGE \
    + " ORDER BY event_timestamp DESC, seq DESC"
# An entity's rows up to a time and its summary in one statement, so from one snapshot
# (a fold commits rows out and the summary in at once): the summary row sorts first
# (NULL event_timestamp).
AGG_WITH_SUMMARY = (
    "SELECT event_timestamp, seq, features FROM online_agg_rows WHERE view = ? AND"
    " entity = ? AND event_timestamp <= ? UNION ALL SELECT NULL, NULL, state FROM"
    " online_agg_summary WHERE view = ? AND entity = ? ORDER BY 1, 2")

# The monotonic rule, applied by SQLite itself: only a greater (event_timestamp, seq) wins.
UPSERT = """
INSERT INTO {s}online (view, entity, event_timestamp, seq, ingest_ts, features)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (view, entity) DO UPDATE SET
    event_timestamp = excluded.event_timestamp, seq = excluded.seq,
    ingest_ts = excluded.ingest_ts, features = excluded.features
WHERE (excluded.event_timestamp, excluded.seq) > (event_timestamp, seq)
"""
SET_APPLIED = """
INSERT INTO {s}online_meta (key, value) VALUES ('applied_seq', ?)
ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)
"""
ATTACHED = "asof_online"
#: The page cache of the attached store, in KiB when negative (as connect() sets main's)
CACHE_SIZE = -65536


def _drop_clustered_state(conn: sqlite3.Connection) -> None:
    """A store written when the aggregation rows were a table clustered by (view,
    entity, event_timestamp, seq): its state is dropped with the plan's fingerprint, so
    opening the stores rebuilds it from the log in the new table."""
    found = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table'"
                         " AND name = 'online_agg_rows'").fetchone()
    if found is None or "WITHOUT ROWID" not in found[0].upper():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DROP TABLE online_agg_rows")
        conn.execute("DROP TABLE IF EXISTS online_agg_summary")
        conn.execute("DELETE FROM online_meta WHERE key = 'agg_plan'")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SqliteRows:
    """One entity's aggregation rows up to ``hi``, read by index range on demand."""

    __slots__ = ("_conn", "_view", "_entity", "_hi")

    def __init__(self, conn: sqlite3.Connection, view: str, entity: str, hi: int) -> None:
        self._conn, self._view, self._entity, self._hi = conn, view, entity, hi

    def _args(self, lo: int | None) -> tuple[str, str, int, int]:
        return (self._view, self._entity, NO_LOW if lo is None else lo, self._hi)

    def count(self, lo: int | None) -> tuple[int, int | None]:
        n, newest = self._conn.execute(AGG_COUNT, self._args(lo)).fetchone()
        return int(n), newest

    def newest(self, lo: int | None) -> Iterator[tuple[int, str]]:
        cur = self._conn.execute(AGG_NEWEST, self._args(lo))
        try:
            yield from cur
        finally:
            cur.close()  # a walk that stops early must not keep the statement open

    def rows(self, lo: int | None) -> list[tuple[int, int, str]]:
        return self._conn.execute(AGG_ROWS, self._args(lo)).fetchall()


class SqliteOnlineStore:
    """The default online store, a SQLite file beside the log."""

    transactional = True
    folds_aggregations = True
    agg_plan: AggPlan | None = None

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        if readonly and not self.path.exists():
            raise FileNotFoundError(f"online store {self.path} does not exist yet")
        self.conn = connect(self.path, readonly=readonly)
        if not readonly:
            _drop_clustered_state(self.conn)
            self.conn.executescript(SCHEMA.format(s=""))
        self._get_one = "SELECT entity, event_timestamp, seq, ingest_ts, features FROM online" \
                        " WHERE view = ? AND entity = ?"

    def attach_to(self, conn: sqlite3.Connection) -> None:
        names = {row[1] for row in conn.execute("PRAGMA database_list")}
        if ATTACHED not in names:
            conn.execute(f"ATTACH DATABASE ? AS {ATTACHED}", (str(self.path),))
            # The log connection's page cache (offline.sqlite.connect) is main's only; the
            # aggregation state is a B-tree a batch writes all over, which a default 2 MB
            # cache spills to the WAL mid-transaction and reads back.
            conn.execute(f"PRAGMA {ATTACHED}.cache_size = {CACHE_SIZE}")

    def _write(self, conn: sqlite3.Connection, schema: str, rows: list[OnlineRow],
               high_seq: int, agg: AggBatch | None = None) -> None:
        conn.executemany(UPSERT.format(s=schema), rows)  # OnlineRow: the upsert's order
        if agg is not None:
            if agg.log_range is not None:  # only in the log's transaction: main is the log
                first, last = agg.log_range
                for view, low in agg.lows.items():
                    conn.execute(COPY_AGG.format(s=schema), (first, last, view, low))
            conn.executemany(INSERT_AGG.format(s=schema), agg.rows)
            if agg.summaries:
                conn.executemany(PUT_SUMMARY.format(s=schema), agg.summaries)
            plan = self.agg_plan
            if plan is not None and plan.fold:
                self._fold(conn, schema, plan, [e for e in agg.evict if e[0] in plan.fold])
            conn.executemany(EVICT_AGG.format(s=schema), agg.evict)
        conn.execute(SET_APPLIED.format(s=schema), (high_seq,))

    @staticmethod
    def _fold(conn: sqlite3.Connection, schema: str, plan: AggPlan,
              due: list[tuple[str, str, int]]) -> None:
        """Fold the rows of folding views at or below each cutoff into the entity's
        summary (the caller then deletes them), in the same transaction."""
        for view, entity, cutoff in due:
            rows = conn.execute(FOLD_ROWS.format(s=schema), (view, entity, cutoff)).fetchall()
            if not rows:
                continue
            found = conn.execute(GET_SUMMARY.format(s=schema), (view, entity)).fetchone()
            summary = Summary() if found is None else Summary.loads(found[0])
            plan.folder(view).fold(summary, rows)
            conn.execute(PUT_SUMMARY.format(s=schema), (view, entity, summary.dumps()))

    def write_in_transaction(self, conn: sqlite3.Connection, rows: list[OnlineRow],
                             high_seq: int, agg: AggBatch | None = None) -> None:
        self._write(conn, ATTACHED + ".", rows, high_seq, agg)

    def apply(self, rows: list[OnlineRow], high_seq: int, low_seq: int | None = None,
              agg: AggBatch | None = None) -> None:
        # Written in the log's transaction, the SQLite store never has gaps: low_seq is unused.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self._write(self.conn, "", rows, high_seq, agg)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def applied_seq(self) -> int:
        row = self.conn.execute(
            "SELECT value FROM online_meta WHERE key = 'applied_seq'").fetchone()
        return int(row[0]) if row else 0

    def get(self, view: str, entities: list[str]) -> list[OnlineRow | None]:
        if len(entities) == 1:
            r = self.conn.execute(self._get_one, (view, entities[0])).fetchone()
            return [OnlineRow(view, *r) if r else None]
        found: dict[str, OnlineRow] = {}
        uniq = list(dict.fromkeys(entities))
        for i in range(0, len(uniq), 500):
            part = uniq[i:i + 500]
            marks = ",".join("?" * len(part))
            for r in self.conn.execute(
                    "SELECT entity, event_timestamp, seq, ingest_ts, features FROM online"
                    f" WHERE view = ? AND entity IN ({marks})", (view, *part)):
                found[r[0]] = OnlineRow(view, *r)
        return [found.get(e) for e in entities]

    def count(self, view: str) -> int:
        return int(self.conn.execute("SELECT count(*) FROM online WHERE view = ?",
                                     (view,)).fetchone()[0])

    def entries(self, view: str | None = None) -> Iterable[OnlineRow]:
        sql = "SELECT view, entity, event_timestamp, seq, ingest_ts, features FROM online"
        cur = self.conn.execute(sql + " WHERE view = ?", (view,)) if view else self.conn.execute(sql)
        for r in cur:
            yield OnlineRow(*r)

    def agg_rows(self, view: str, entities: list[str], lo: int | None,
                 hi: int) -> list[list[tuple[int, int, str]]]:
        """Per entity, the stored rows of ``view`` with ``lo < event_timestamp <= hi``
        (``lo`` None: no lower edge), in (event_timestamp, seq) order."""
        low = NO_LOW if lo is None else lo
        ex = self.conn.execute
        return [ex(AGG_ROWS, (view, e, low, hi)).fetchall() for e in entities]

    def agg_windows(self, view: str, entities: list[str], lo: int | None,
                    hi: int) -> list[WindowRows]:
        """Per entity, its rows of ``view`` up to ``hi`` as :class:`~.aggread.WindowRows`
        that query the table for each shape a feature needs (a count, the newest rows,
        a range), so a read fetches only the rows it uses; ``lo`` is not needed."""
        return [SqliteRows(self.conn, view, e, hi) for e in entities]

    def agg_summaries(self, view: str, entities: list[str]) -> list[Summary | None]:
        """Per entity, the running summary of its folded rows of ``view`` (None: none)."""
        sql = GET_SUMMARY.format(s="")
        out = []
        for e in entities:
            found = self.conn.execute(sql, (view, e)).fetchone()
            out.append(None if found is None else Summary.loads(found[0]))
        return out

    def agg_state(self, view: str, entities: list[str], lo: int | None, hi: int,
                  summaries: bool) -> list[tuple[WindowRows, Summary | None]]:
        """Per entity, :meth:`agg_windows` and (``summaries``) :meth:`agg_summaries`.
        With summaries, an entity's rows up to ``hi`` and its summary are read by one
        statement, so from one snapshot: a fold committed by another process is seen
        whole or not at all (the rows are then all fetched, which a read of a no-window
        feature needs anyway; a folding view keeps few)."""
        if not summaries:
            return [(w, None) for w in self.agg_windows(view, entities, lo, hi)]
        ex = self.conn.execute
        out: list[tuple[WindowRows, Summary | None]] = []
        for e in entities:
            got = ex(AGG_WITH_SUMMARY, (view, e, hi, view, e)).fetchall()
            summary = None
            if got and got[0][0] is None:
                summary = Summary.loads(got[0][2])
                got = got[1:]
            out.append((ListRows(got), summary))
        return out

    def agg_fingerprint(self) -> int:
        """The :func:`~.aggstate.fingerprint` of the plan the state was rebuilt for."""
        row = self.conn.execute(
            "SELECT value FROM online_meta WHERE key = 'agg_plan'").fetchone()
        return int(row[0]) if row else 0

    def agg_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM online_agg_rows").fetchone()[0])

    def replace_all(self, rows: Iterable[OnlineRow], high_seq: int,
                    agg: AggBatch | None = None) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("DELETE FROM online")
            self.conn.execute("DELETE FROM online_meta")
            self.conn.execute("DELETE FROM online_agg_rows")
            self.conn.execute("DELETE FROM online_agg_summary")
            self._write(self.conn, "", list(rows), high_seq, agg)
            self.conn.execute("INSERT INTO online_meta (key, value) VALUES ('agg_plan', ?)",
                              (fingerprint(self.agg_plan),))
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
