"""Opening the offline log and the online store of a config, healed and ready."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .config import Config
from .events import EventDecoder
from .ingest.commit import Committer
from .offline.log import OfflineLog, open_log
from .online import open_online
from .online.base import OnlineStore, OnlineUnavailable
from .online.materialize import catch_up

log = logging.getLogger(__name__)


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


def open_stores(config: Config, *, heal: bool = True, online_may_fail: bool = False) -> Stores:
    """Open both stores; with ``heal``, replay the log tail the online store missed.

    ``online_may_fail``: for long-running processes (the daemon, the server), which keep
    the store healed with :func:`~asof_stream.online.heal.keep_healed`: an online store
    that does not answer yet is logged, not raised.
    """
    offline = open_log(config.offline_path)
    try:
        online = open_online(config.online_url)
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
        except BaseException:
            online.close()
            offline.close()
            raise
    return Stores(config, offline, online)


def open_serving_stores(config: Config) -> Stores:
    """The stores the feature server reads: :func:`open_stores`, or over partition shards
    the shared online store beside a read-only union of the shards (each shard's daemon
    heals the online store; the server only reads)."""
    from .offline.shard_union import ShardUnion
    from .offline.shards import is_sharded

    if not is_sharded(config):
        return open_stores(config, online_may_fail=True)
    log = ShardUnion(config)
    try:
        return Stores(config, log, open_online(config.online_url))
    except BaseException:
        log.close()
        raise
