"""Opening the offline log and the online store of a config, healed and ready."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .events import EventDecoder
from .ingest.commit import Committer
from .offline.log import OfflineLog, open_log
from .offline.sqlite import DatabaseDamaged, damaged_message, is_damaged, quick_check
from .online import open_online
from .online.base import OnlineStore
from .online.materialize import catch_up


@dataclass
class Stores:
    """The log and online store of one config; close when done."""

    config: Config
    log: OfflineLog
    online: OnlineStore

    def committer(self, view: str | None = None) -> Committer:
        decoder = EventDecoder(self.config.defs, view=view,
                               max_bytes=self.config.defs.ingest.max_event_bytes)
        return Committer(self.log, self.online, decoder)

    def close(self) -> None:
        self.online.close()
        self.log.close()

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def can_write(config: Config) -> bool:
    """Whether this process may write the log: its folder (for the WAL files) and the
    file itself, where they exist; a missing folder counts as writable."""
    path = config.offline_path
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if folder is None or not os.access(folder, os.W_OK):
        return False
    return not path.exists() or os.access(path, os.W_OK)


def open_stores(config: Config, *, heal: bool = True, check: bool = False,
                readonly: bool = False) -> Stores:
    """Open both stores; with ``heal``, replay the log tail the online store missed.

    ``check``: first run ``PRAGMA quick_check`` on the log (a damaged file raises
    :class:`~asof_stream.offline.sqlite.DatabaseDamaged` before anything is written).
    ``readonly``: open both read-only (they must exist; there is no healing).
    """
    if readonly and heal:
        raise ValueError("read-only stores cannot be healed")
    log = open_log(config.offline_path, readonly=readonly)
    try:
        if check:
            quick_check(log.conn, log.path)
        online = open_online(config.online_url, readonly=readonly)
    except BaseException:
        log.close()
        raise
    if heal:
        try:
            catch_up(log, online)
        except sqlite3.DatabaseError as exc:
            log.close()
            online.close()
            if is_damaged(exc):  # name the damaged file: the log, or else the online store
                with open_log(config.offline_path, readonly=True) as check_log:
                    quick_check(check_log.conn, check_log.path)
                raise DatabaseDamaged(damaged_message(config.online_url, exc)) from None
            raise
    return Stores(config, log, online)


def open_reading_stores(config: Config, *, check: bool = False) -> Stores:
    """The stores for a command that only reads: read-only once they exist (so a
    read-only project can be read), created as :func:`open_stores` does before that."""
    online = config.online_url
    exists = config.offline_path.exists() and (
        not online.startswith("sqlite:///") or Path(online[len("sqlite:///"):]).exists())
    return open_stores(config, heal=False, check=check, readonly=exists)


def open_serving_stores(config: Config) -> Stores:
    """The stores the feature server reads: :func:`open_stores`, or over partition shards
    the shared online store beside a read-only union of the shards (each shard's daemon
    heals the online store; the server only reads)."""
    from .offline.shard_union import ShardUnion
    from .offline.shards import is_sharded

    if not is_sharded(config):
        return open_stores(config)
    log = ShardUnion(config)
    try:
        return Stores(config, log, open_online(config.online_url))
    except BaseException:
        log.close()
        raise
