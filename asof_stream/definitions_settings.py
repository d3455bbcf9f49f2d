"""The settings sections of ``asof.toml``: stores, sources, ingest, log and server."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field as PydField
from pydantic import field_validator

from .definitions_base import _Model
from .timestamps import parse_duration


class StoreConfig(_Model):
    offline: str = "data/offline.sqlite"
    online: str = "sqlite:///data/online.sqlite"
    shards: Literal["none", "partition"] = "none"

    @field_validator("online")
    @classmethod
    def _online(cls, v: str) -> str:
        if not (v.startswith("sqlite:///") or v.startswith("redis://") or v.startswith("rediss://")):
            raise ValueError("online must be 'sqlite:///PATH' or 'redis://HOST:PORT/DB'")
        if v.startswith(("redis://", "rediss://")):
            from .online.redis_url import split_url

            split_url(v)  # the prefix URL parameter: a clear error now, not at first use
        return v


class _Source(_Model):
    view: str | None = None


class KafkaSourceConfig(_Source):
    kind: Literal["kafka"]
    bootstrap: str
    topics: tuple[str, ...]
    group: str = "asof-stream"

    @field_validator("topics", mode="before")
    @classmethod
    def _topics(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list | tuple) and not v:
            raise ValueError("at least one topic is needed")
        return v


class FileSourceConfig(_Source):
    kind: Literal["file"]
    path: str
    poll_interval: float = PydField(default=0.2, gt=0)
    #: seconds a rotated-away (renamed or copied-then-truncated) file is still watched for
    #: late appends once it is drained; it is closed after this long without growth
    rotated_idle_s: float = PydField(default=30.0, ge=0)


class HttpSourceConfig(_Source):
    kind: Literal["http"]


SourceConfig = Annotated[
    KafkaSourceConfig | FileSourceConfig | HttpSourceConfig, PydField(discriminator="kind")
]


class IngestConfig(_Model):
    batch_size: int = PydField(default=20000, gt=0)
    batch_timeout_ms: int = PydField(default=200, gt=0)
    max_event_bytes: int = PydField(default=1 << 20, gt=0)
    max_buffered: int = PydField(default=60000, gt=0)
    #: how far past now an event_timestamp may be (microseconds; TOML: a duration such
    #: as "1d"); later events are dead letters, they would otherwise shadow every later
    #: value of their entity online until that date
    max_future: int = 86_400_000_000

    @field_validator("max_future", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_duration(v)
        if isinstance(v, timedelta):
            return v // timedelta(microseconds=1)
        raise ValueError(f"expected a duration like '1d' (s, m, h, d), got {v!r}")


class LogConfig(_Model):
    """``[log]``: when the daemon seals head rows into Parquet segments (docs/offline-log.md).

    ``seal_rows``: seal a view once its head holds this many rows (0: never by count;
    default 100,000, so the head the join decodes beside the segments stays small).
    ``seal_age``: or once its oldest head row was ingested this long ago (e.g. "1h"; unset:
    never by age). ``seal_rows = 0`` and no age: the daemon never seals;
    ``asof-stream compact`` still does. Partition shards are never sealed by the daemon.
    ``merge_fanout``: merge a level's segments once it has this many.
    """

    seal_rows: int = PydField(default=100_000, ge=0)
    seal_age: int | None = None  # microseconds
    seal_interval: float = PydField(default=5.0, gt=0)
    merge_fanout: int = PydField(default=4, ge=2)

    @field_validator("seal_age", mode="before")
    @classmethod
    def _age(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_duration(v)
        if v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0):
            return v
        raise ValueError(f"expected a duration like '1h' (s, m, h, d), got {v!r}")

    @property
    def sealing(self) -> bool:
        return self.seal_rows > 0 or self.seal_age is not None


class ServerConfig(_Model):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = PydField(default=6566, ge=0, le=65535)
    push_token: str | None = None
    #: Listening beyond loopback with no push token is refused unless this says so.
    allow_open_push: bool = False
    max_body_bytes: int = PydField(default=8 << 20, gt=0)
    #: Entity rows one /get-online-features request may ask for (over it: 413).
    max_entities: int = PydField(default=10_000, gt=0)
    #: Seconds a client has to send a request's headers, and then its body.
    request_timeout_s: float = PydField(default=30.0, gt=0)
    #: ``/health`` answers 503 while the online store is more log seqs than this behind
    #: the log (after a Redis reset or outage, until it is healed).
    max_online_lag: int = PydField(default=10_000, ge=0)
