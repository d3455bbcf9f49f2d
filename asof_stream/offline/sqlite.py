"""Opening SQLite databases the same way everywhere (WAL, busy timeout, autocommit)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def connect(path: str | Path, *, readonly: bool = False, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection in autocommit mode; transactions are opened explicitly with BEGIN.

    WAL lets readers (status, the feature server, training sets) run while the daemon
    writes. ``synchronous=NORMAL`` survives a killed process; ``FULL`` also survives
    power loss at the price of an fsync per commit.
    """
    if readonly:
        conn = connect_readonly(path)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA cache_size = -65536")
    return conn


def wal_bytes(path: str | Path) -> int:
    """The size of a database's write-ahead log (0 when there is none)."""
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``), also where this process cannot write.

    A WAL database opened read-only still needs its ``-shm`` file; SQLite creates it
    when the folder is writable, or uses one that is there. When neither holds (a
    read-only mount, a folder of another user, no ``-shm`` left behind), the file is
    opened ``immutable=1`` instead, which takes no locks and ignores any WAL, and so is
    safe only when nothing can change the file while it is read. We use it only when
    the folder is not writable by this process (so this process's kind of writer, the
    daemon, cannot be running there as this user) and the WAL holds nothing (every
    commit is in the main file, so there is nothing it could miss). If the WAL holds
    commits, the error says so instead of reading without them. Caveat: a daemon of
    *another* user with write access that starts while an immutable reader runs is
    not seen by that reader; give readers write access to the folder if that can happen.
    """
    p = Path(path).resolve()
    uri = p.as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opening is lazy
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if "unable to open" not in str(exc) or not p.is_file():
            raise
        if os.access(p.parent, os.W_OK):
            raise sqlite3.OperationalError(f"{p}: cannot open read-only: {exc}") from None
    pending = wal_bytes(p)
    if pending:
        raise sqlite3.OperationalError(
            f"{p}: cannot open read-only: its write-ahead log {p}-wal holds {pending} bytes"
            f" of commits not yet in the main file, and the folder {p.parent} is not writable"
            f" (SQLite needs to create {p.name}-shm there to read them); make the folder"
            " writable once for any asof-stream command, or copy the folder somewhere"
            " writable") from None
    conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None,
                           check_same_thread=False)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


#: For a writer of big batches: a batch dirties thousands of index pages, and
#: checkpointing the WAL every ~80 MB instead of every 4 MB (the default 1000 pages)
#: copies each hot page back once per checkpoint rather than once per commit.
WAL_AUTOCHECKPOINT_PAGES = 20000


def tune_writer(conn: sqlite3.Connection) -> None:
    """Settings for the daemon's log connections (readers are unaffected)."""
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")


class DatabaseDamaged(sqlite3.DatabaseError):
    """The database file is corrupt; the message names the file and what to do."""


#: SQLite's primary result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB
_DAMAGED_CODES = (11, 26)


def is_damaged(exc: BaseException) -> bool:
    """An error that means the file itself is damaged (not busy, full or read-only)."""
    if isinstance(exc, DatabaseDamaged):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _DAMAGED_CODES:
        return True
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def damaged_message(path: str | Path, detail: object) -> str:
    """One line: which file is damaged, how, and what to do about it."""
    return (f"{path} is damaged ({detail}): stop every process using it, then restore it"
            f" from a backup, or salvage the readable rows with: sqlite3 {path} \".recover\""
            f" | sqlite3 {path}.recovered (and move that into place)")


def quick_check(conn: sqlite3.Connection, path: str | Path) -> None:
    """``PRAGMA quick_check``: raises :class:`DatabaseDamaged` naming the file when it
    finds a problem. It reads every page once (no index cross-checks): about 0.5 s for a
    1M-row, 115 MB log from the page cache, so it runs where that is paid once: when
    the daemon starts and in ``status``."""
    try:
        rows = conn.execute("PRAGMA quick_check(100)").fetchall()
    except sqlite3.DatabaseError as exc:
        if is_damaged(exc):
            raise DatabaseDamaged(damaged_message(path, exc)) from None
        raise
    problems = [line for r in rows if r[0] != "ok" for line in str(r[0]).splitlines()
                if line.strip() and not line.startswith("***")]
    if problems:
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise DatabaseDamaged(damaged_message(path, f"quick_check: {problems[0]}{more}"))


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """A lock held by another connection: worth retrying."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text
