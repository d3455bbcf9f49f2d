"""Opening SQLite databases the same way everywhere (WAL, busy timeout, autocommit)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: str | Path, *, readonly: bool = False, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection in autocommit mode; transactions are opened explicitly with BEGIN.

    WAL lets readers (status, the feature server, training sets) run while the daemon
    writes. ``synchronous=NORMAL`` survives a killed process; ``FULL`` also survives
    power loss at the price of an fsync per commit.
    """
    if readonly:
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA cache_size = -65536")
    return conn


#: For a writer of big batches: a batch dirties thousands of index pages, and
#: checkpointing the WAL every ~80 MB instead of every 4 MB (the default 1000 pages)
#: copies each hot page back once per checkpoint rather than once per commit.
WAL_AUTOCHECKPOINT_PAGES = 20000


def tune_writer(conn: sqlite3.Connection) -> None:
    """Settings for the daemon's log connections (readers are unaffected)."""
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """A lock held by another connection: worth retrying."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text
