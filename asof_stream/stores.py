"""Opening the offline log and the online store of a config, healed and ready."""

from __future__ import annotations

from dataclasses import dataclass

from .commit import Committer
from .config import Config
from .events import EventDecoder
from .log import OfflineLog, open_log
from .online import OnlineStore, catch_up, open_online


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


def open_stores(config: Config, *, heal: bool = True) -> Stores:
    """Open both stores; with ``heal``, replay the log tail the online store missed."""
    log = open_log(config.offline_path)
    try:
        online = open_online(config.online_url)
    except BaseException:
        log.close()
        raise
    if heal:
        catch_up(log, online)
    return Stores(config, log, online)
