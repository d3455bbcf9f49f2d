"""Opening the offline log and the online store of a config, healed and ready."""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .events import EventDecoder
from .ingest.commit import Committer
from .offline.log import OfflineLog, open_log
from .offline.shard_union import ShardUnion
from .offline.shards import is_sharded
from .offline.sqlite import DatabaseDamaged, damaged_message, is_damaged, quick_check
from .online import open_online
from .online.aggstate import AggPlan
from .online.base import OnlineStore, OnlineUnavailable
from .online.materialize import catch_up

log = logging.getLogger(__name__)


class ShardedWriteError(ValueError):
    """A write asked of partition shards outside their daemons."""


@dataclass
class Stores:
    """The log and online store of one config; close when done."""

    config: Config
    log: OfflineLog
    online: OnlineStore
    #: True over partition shards: the log is a read-only union, written only by the
    #: shards' daemons (each from its Kafka partition).
    sharded: bool = False

    def committer(self, view: str | None = None) -> Committer:
        if self.sharded:
            raise ShardedWriteError(
                f"{self.config.path}: store.shards = 'partition': each shard takes its events"
                " from its Kafka partition; produce them to Kafka, keyed by entity")
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
                readonly: bool = False, online_may_fail: bool = False) -> Stores:
    """Open both stores; with ``heal``, replay the log tail the online store missed.

    This is where one log and partition shards part ways for every reader: over shards
    it is the shared online store beside a read-only union of the shards (each shard's
    daemon heals the online store, so there is nothing to heal here).

    ``check``: first run ``PRAGMA quick_check`` on the log (a damaged file raises
    :class:`~asof_stream.offline.sqlite.DatabaseDamaged` before anything is written).
    ``readonly``: open both read-only (they must exist; there is no healing).
    ``online_may_fail``: for long-running processes (the daemon, the server), which keep
    the store healed with :func:`~asof_stream.online.heal.keep_healed`: an online store
    that does not answer yet is logged, not raised.
    """
    if is_sharded(config):
        union = ShardUnion(config)
        try:
            online = open_online(config.online_url)
            online.agg_plan = AggPlan.from_defs(config.defs, folding=online.folds_aggregations)
            return Stores(config, union, online, sharded=True)
        except BaseException:
            union.close()
            raise
    if readonly and heal:
        raise ValueError("read-only stores cannot be healed")
    offline = open_log(config.offline_path, readonly=readonly)
    try:
        if check:
            quick_check(offline.conn, offline.path)
        online = open_online(config.online_url, readonly=readonly)
        online.agg_plan = AggPlan.from_defs(config.defs, folding=online.folds_aggregations)
    except BaseException:
        offline.close()
        raise
    if heal:
        try:
            catch_up(offline, online)
        except OnlineUnavailable as exc:
            if not online_may_fail:
                online.close()
                offline.close()
                raise
            log.warning("%s; starting anyway: the log keeps committing and the online store"
                        " is caught up when it answers", exc)
        except sqlite3.DatabaseError as exc:
            offline.close()
            online.close()
            if is_damaged(exc):  # name the damaged file: the log, or else the online store
                with open_log(config.offline_path, readonly=True) as check_log:
                    quick_check(check_log.conn, check_log.path)
                raise DatabaseDamaged(damaged_message(config.online_url, exc)) from None
            raise
        except BaseException:
            online.close()
            offline.close()
            raise
    return Stores(config, offline, online)


def open_reading_stores(config: Config, *, check: bool = False) -> Stores:
    """The stores for a command that only reads: read-only once they exist (so a
    read-only project can be read), created as :func:`open_stores` does before that."""
    online = config.online_url
    exists = config.offline_path.exists() and (
        not online.startswith("sqlite:///") or Path(online[len("sqlite:///"):]).exists())
    return open_stores(config, heal=False, check=check, readonly=exists)
