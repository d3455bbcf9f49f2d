"""The settings sections of ``asof.toml``: stores, sources, ingest, log and server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field as PydField
from pydantic import ValidationInfo, field_validator, model_validator

from .definitions_base import _Model, duration_value
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


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _config_file(v: str, info: ValidationInfo, what: str) -> str:
    """A file named in the config: relative to the config file's folder, must exist."""
    root = (info.context or {}).get("root")
    p = Path(v).expanduser()
    if not p.is_absolute():
        p = (Path(root) if root is not None else Path.cwd()) / p
    if not p.is_file():
        raise ValueError(f"{what} {v!r}: no such file ({p})")
    return str(p)


class KafkaSourceConfig(_Source):
    """One Kafka source: brokers, topics, group, and how to read and decode its records.

    Secrets never live in the file: ``sasl_password_env`` names the environment variable
    that holds the SASL password. File paths (TLS, Avro schemas) are relative to the
    config file's folder and are checked at load.
    """

    kind: Literal["kafka"]
    bootstrap: str
    topics: tuple[str, ...]
    group: str = "asof-stream"
    #: read_committed: records of aborted (or still open) transactions are never stored
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password_env: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    value_format: Literal["json", "avro"] = "json"
    #: one Avro schema for every record (plain Avro binary, no framing)
    avro_schema: str | None = None
    #: Confluent wire format (magic byte 0, 4-byte schema id): schema id -> .avsc file
    avro_schemas: dict[int, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_literal_secret(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("sasl_password", "password", "sasl_plain_password"):
                if key in data:
                    # Never echo the value: it is a secret.
                    raise ValueError(f"{key}: a password may not be written in the config; put"
                                     " it in an environment variable and name that variable"
                                     " in sasl_password_env")
        return data

    @field_validator("topics", mode="before")
    @classmethod
    def _topics(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list | tuple) and not v:
            raise ValueError("at least one topic is needed")
        return v

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile", "avro_schema")
    @classmethod
    def _file(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else _config_file(v, info, str(info.field_name))

    @field_validator("avro_schemas")
    @classmethod
    def _files(cls, v: dict[int, str] | None, info: ValidationInfo) -> dict[int, str] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("give at least one schema id = file")
        out = {}
        for sid, path in v.items():
            if not 0 <= sid < 2**31:
                raise ValueError(f"schema id {sid} is not a 4-byte non-negative integer")
            out[sid] = _config_file(path, info, f"avro_schemas.{sid}")
        return out

    @field_validator("sasl_password_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            # An invalid name is probably a pasted password: do not show it.
            raise ValueError("must be the NAME of an environment variable (letters, digits, _),"
                             " not a password")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSourceConfig:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl:
            missing = [k for k in ("sasl_mechanism", "sasl_username", "sasl_password_env")
                       if getattr(self, k) is None]
            if missing:
                raise ValueError(f"security_protocol = {self.security_protocol!r} needs"
                                 f" {', '.join(missing)}")
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password_env:
            raise ValueError("sasl_* settings need security_protocol = 'SASL_PLAINTEXT' or"
                             " 'SASL_SSL'")
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        if not tls and (self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile):
            raise ValueError("ssl_* files need security_protocol = 'SSL' or 'SASL_SSL'")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (a client certificate"
                             " and its key)")
        if self.value_format == "avro":
            if (self.avro_schema is None) == (self.avro_schemas is None):
                raise ValueError("value_format = 'avro' needs exactly one of avro_schema (plain"
                                 " Avro) or avro_schemas (Confluent wire format, id = file)")
            from .avro import check_schema_files  # fastavro only when Avro is used

            check_schema_files(self.avro_schema, self.avro_schemas)
        elif self.avro_schema is not None or self.avro_schemas is not None:
            raise ValueError("avro_schema/avro_schemas need value_format = 'avro'")
        return self


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
        return duration_value(v, "1d", optional=False)


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
