"""The online store: the latest row per (view, entity), kept by the monotonic rule.

:func:`open_online` picks the backend by URL; :mod:`.base` holds the interface and the
rule, :mod:`.sqlite` and :mod:`.redis` the backends, :mod:`.materialize` the rebuild
and catch-up from the log, :mod:`.lookup` the reads with statuses.
"""

from __future__ import annotations

from ..redaction import redact_url
from .base import OnlineRow, OnlineStore, OnlineUnavailable

__all__ = ["OnlineRow", "OnlineStore", "OnlineUnavailable", "open_online", "redact_url"]


def open_online(url: str, *, track: str = "", readonly: bool = False) -> OnlineStore:
    """Open an online store by URL: ``sqlite:///PATH`` or ``redis://HOST:PORT/DB``.

    ``track`` names the log whose seqs a shared (Redis) store counts as applied, when
    the log is split into shards; the SQLite store belongs to one log and has none.
    ``readonly``: a SQLite store is opened read-only (Redis is unaffected).
    """
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteOnlineStore

        return SqliteOnlineStore(url[len("sqlite:///"):], readonly=readonly)
    if url.startswith(("redis://", "rediss://")):
        from .redis import RedisOnlineStore

        return RedisOnlineStore(url, track=track)
    raise ValueError(f"unsupported online store URL {redact_url(url)}")
