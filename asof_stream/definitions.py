"""Definitions: entities, feature views, feature services, sources and stores.

The TOML file (``asof.toml``) and the Python API build the same pydantic models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic import Field as PydField

from .timestamps import parse_duration

FeatureType = Literal["int64", "float64", "string", "bool"]
KeyType = Literal["string", "int64"]
RESERVED = frozenset({"view", "event_timestamp", "event_id"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
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

    ``seal_rows``: seal a view once its head holds this many rows (0: never by count).
    ``seal_age``: or once its oldest head row was ingested this long ago (e.g. "1h"; unset:
    never by age). Both unset: the daemon never seals; ``asof-stream compact`` still does.
    ``merge_fanout``: merge a level's segments once it has this many.
    """

    seal_rows: int = PydField(default=0, ge=0)
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


class Definitions(_Model):
    """Everything one ``asof.toml`` declares, cross-checked."""

    store: StoreConfig = StoreConfig()
    entities: dict[str, Entity] = {}
    views: dict[str, FeatureView] = {}
    services: dict[str, FeatureService] = {}
    sources: dict[str, SourceConfig] = {}
    ingest: IngestConfig = IngestConfig()
    log: LogConfig = LogConfig()
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


def split_refs(values: str | Iterable[str]) -> list[str]:
    """Feature references as given on a command line or in a request: ``"a,b"`` or
    ``["a,b", "c"]`` -> ``["a", "b", "c"]`` (blanks dropped; none at all is an error)."""
    items = [values] if isinstance(values, str) else list(values)
    refs = [r.strip() for v in items for r in v.split(",") if r.strip()]
    if not refs:
        raise ValueError("no feature references given")
    return refs


def feature_name(view: str, feature: str, full: bool) -> str:
    return f"{view}__{feature}" if full else feature


def output_names(features: Sequence[tuple[str, str]], full: bool) -> list[str]:
    """Output column names; a collision without full names is an error that says so."""
    names = [feature_name(v, f, full) for v, f in features]
    seen: dict[str, tuple[str, str]] = {}
    for name, pair in zip(names, features, strict=True):
        if name in seen:
            raise ValueError(
                f"feature name {name!r} is in both {seen[name][0]} and {pair[0]};"
                " use --full-feature-names (full_feature_names=True) to get view__feature")
        seen[name] = pair
    return names
