"""Definitions: entities, feature views, feature services, sources and stores.

The TOML file (``asof.toml``) and the Python API build the same pydantic models.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator
from pydantic import Field as PydField

from .timestamps import parse_duration

FeatureType = Literal["int64", "float64", "string", "bool"]
KeyType = Literal["string", "int64"]
RESERVED = frozenset({"view", "event_timestamp", "event_id"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{what} name {name!r} must be letters, digits and _ (not first a digit)")
    return name


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Field(_Model):
    """One feature column of a view."""

    name: str
    dtype: FeatureType
    required: bool = False
    allow_nan: bool = False
    description: str = ""

    _v = field_validator("name")(lambda v: _check_name(v, "feature"))


class Entity(_Model):
    """What features describe; identified by one or more typed join keys."""

    name: str
    join_keys: dict[str, KeyType]
    description: str = ""

    @field_validator("join_keys", mode="before")
    @classmethod
    def _keys(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):  # Feast style: join_keys=["customer_id"]
            v = {k: "string" for k in v}
        if isinstance(v, dict):
            if not v:
                raise ValueError("an entity needs at least one join key")
            for k in v:
                _check_name(k, "join key")
                if k in RESERVED:
                    raise ValueError(f"join key {k!r} is a reserved event field")
        return v


class FeatureView(_Model):
    """A named group of features about one entity, with an optional ttl."""

    name: str
    entity: str
    features: tuple[Field, ...]
    ttl: int | None = None  # microseconds
    extra: Literal["forbid", "ignore"] = "forbid"
    description: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()
    freshness: int | None = None  # microseconds

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, v: Any) -> Any:
        if isinstance(v, dict):  # TOML form: { name = "float64" } or { name = { dtype = ... } }
            out = []
            for name, spec in v.items():
                if isinstance(spec, str):
                    out.append({"name": name, "dtype": spec})
                elif isinstance(spec, dict):
                    spec = dict(spec)
                    if "type" in spec:
                        spec["dtype"] = spec.pop("type")
                    out.append({"name": name, **spec})
                else:
                    out.append({"name": name, "dtype": spec})
            return out
        return v

    @field_validator("ttl", "freshness", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_duration(v)
        if isinstance(v, timedelta):
            return v // timedelta(microseconds=1)
        if v is None:
            return v
        raise ValueError(f"expected a duration like '14d' (s, m, h, d), got {v!r}")

    @model_validator(mode="after")
    def _unique(self) -> FeatureView:
        _check_name(self.name, "view")
        names = [f.name for f in self.features]
        if not names:
            raise ValueError("a view needs at least one feature")
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate feature names {sorted(dup)}")
        bad = RESERVED.intersection(names)
        if bad:
            raise ValueError(f"feature names {sorted(bad)} are reserved event fields")
        if self.ttl is not None and self.ttl <= 0:
            raise ValueError("ttl must be positive")
        return self

    def feature(self, name: str) -> Field:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


class FeatureService(_Model):
    """A named list of feature references used together by one model."""

    name: str
    features: tuple[str, ...]


class StoreConfig(_Model):
    offline: str = "data/offline.sqlite"
    online: str = "sqlite:///data/online.sqlite"
    shards: Literal["none", "partition"] = "none"

    @field_validator("online")
    @classmethod
    def _online(cls, v: str) -> str:
        if not (v.startswith("sqlite:///") or v.startswith("redis://") or v.startswith("rediss://")):
            raise ValueError("online must be 'sqlite:///PATH' or 'redis://HOST:PORT/DB'")
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
        if v is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", v):
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


class ServerConfig(_Model):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = PydField(default=6566, ge=0, le=65535)
    push_token: str | None = None
    max_body_bytes: int = PydField(default=8 << 20, gt=0)


class Definitions(_Model):
    """Everything one ``asof.toml`` declares, cross-checked."""

    store: StoreConfig = StoreConfig()
    entities: dict[str, Entity] = {}
    views: dict[str, FeatureView] = {}
    services: dict[str, FeatureService] = {}
    sources: dict[str, SourceConfig] = {}
    ingest: IngestConfig = IngestConfig()
    server: ServerConfig = ServerConfig()

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        # TOML tables are keyed by name; the models carry their name too.
        if isinstance(data, dict):
            data = dict(data)
            for section in ("entities", "views", "services"):
                table = data.get(section)
                if isinstance(table, dict):
                    data[section] = {
                        k: ({"name": k, **v} if isinstance(v, dict) else v) for k, v in table.items()
                    }
        return data

    @model_validator(mode="after")
    def _references(self) -> Definitions:
        for name, view in self.views.items():
            if view.name != name:
                raise ValueError(f"views.{name}: name {view.name!r} differs from its table")
            if view.entity not in self.entities:
                raise ValueError(
                    f"views.{name}.entity: unknown entity {view.entity!r}"
                    f" (known: {', '.join(sorted(self.entities)) or 'none'})"
                )
            clash = set(self.entities[view.entity].join_keys) & set(view.feature_names)
            if clash:
                raise ValueError(f"views.{name}.features: {sorted(clash)} are also join keys")
        for name, service in self.services.items():
            for ref in service.features:
                try:
                    self.resolve_ref(ref)
                except ValueError as exc:
                    raise ValueError(f"services.{name}.features: {exc}") from None
        if self.store.shards == "partition":
            if not self.store.online.startswith(("redis://", "rediss://")):
                raise ValueError("store.online: shards = 'partition' needs a Redis online store"
                                 " (redis://...), shared by every shard's daemon")
            for name, source in self.sources.items():
                if source.kind != "kafka":
                    raise ValueError(f"sources.{name}.kind: shards = 'partition' shards by Kafka"
                                     f" partition; a {source.kind!r} source has none (produce to"
                                     " Kafka instead)")
        for name, source in self.sources.items():
            if source.view is not None and source.view not in self.views:
                raise ValueError(
                    f"sources.{name}.view: unknown view {source.view!r}"
                    f" (known: {', '.join(sorted(self.views)) or 'none'})"
                )
        return self

    def entity_of(self, view: str) -> Entity:
        return self.entities[self.views[view].entity]

    def resolve_ref(self, ref: str) -> list[tuple[str, str]]:
        """One feature reference (``view:feature``, ``view``, ``@service``) as (view, feature) pairs."""
        ref = ref.strip()
        if ref.startswith("@"):
            service = self.services.get(ref[1:])
            if service is None:
                raise ValueError(
                    f"unknown feature service {ref!r}; known services: "
                    + (", ".join("@" + s for s in sorted(self.services)) or "none")
                )
            out: list[tuple[str, str]] = []
            for sub in service.features:
                out.extend(self.resolve_ref(sub))
            return out
        view_name, _, feature = ref.partition(":")
        view = self.views.get(view_name)
        if view is None:
            raise ValueError(
                f"unknown view in feature reference {ref!r}; known views: "
                + (", ".join(sorted(self.views)) or "none")
            )
        if not feature:
            return [(view_name, f) for f in view.feature_names]
        if feature not in view.feature_names:
            raise ValueError(
                f"unknown feature {ref!r}; features of {view_name}: "
                + ", ".join(f"{view_name}:{f}" for f in view.feature_names)
            )
        return [(view_name, feature)]

    def resolve_refs(self, refs: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
        """Several references, duplicates dropped, order kept."""
        seen: dict[tuple[str, str], None] = {}
        for ref in refs:
            for pair in self.resolve_ref(ref):
                seen.setdefault(pair, None)
        if not seen:
            raise ValueError("no features requested")
        return list(seen)
