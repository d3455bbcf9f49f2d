"""Definitions: entities, feature views, feature services, sources and stores.

The TOML file (``asof.toml``) and the Python API build the same pydantic models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import PrivateAttr, field_validator, model_validator

from .definitions_base import _NAME, RESERVED, FeatureType, KeyType, _check_name, _Model, duration_value  # noqa: F401
from .definitions_computed import (  # noqa: F401
    AggFeature,
    Aggregation,
    Transform,
    agg_dtype,
    check_source_column,
)
from .definitions_settings import (  # noqa: F401
    FileSourceConfig,
    HttpSourceConfig,
    IngestConfig,
    KafkaSourceConfig,
    LogConfig,
    ServerConfig,
    SourceConfig,
    StoreConfig,
)


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
        return duration_value(v, "14d")

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


class Definitions(_Model):
    """Everything one ``asof.toml`` declares, cross-checked."""

    store: StoreConfig = StoreConfig()
    entities: dict[str, Entity] = {}
    views: dict[str, FeatureView] = {}
    services: dict[str, FeatureService] = {}
    aggregations: dict[str, Aggregation] = {}
    transforms: dict[str, Transform] = {}
    sources: dict[str, SourceConfig] = {}
    ingest: IngestConfig = IngestConfig()
    log: LogConfig = LogConfig()
    server: ServerConfig = ServerConfig()
    _root: Path | None = PrivateAttr(default=None)

    @property
    def root(self) -> Path | None:
        """The folder of the asof.toml these came from: transform modules live there
        (None for definitions built in Python: modules then import from sys.path)."""
        return self._root

    def with_root(self, root: Path | None) -> Definitions:
        """A copy whose transform modules are found in ``root``."""
        copy = self.model_copy()
        copy._root = root
        return copy

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        # TOML tables are keyed by name; the models carry their name too.
        if isinstance(data, dict):
            data = dict(data)
            for section in ("entities", "views", "services", "aggregations", "transforms"):
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
        self._check_computed()
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

    def _check_computed(self) -> None:
        """Aggregations read an existing view; transforms read existing features; one
        name space for views, aggregations and transforms (references name them)."""
        seen = {n: "views" for n in self.views}
        for section, table in (("aggregations", self.aggregations), ("transforms", self.transforms)):
            for name in table:
                if name in seen:
                    raise ValueError(f"{section}.{name}: the name is taken by {seen[name]}.{name}")
                seen[name] = section
        for name, agg in self.aggregations.items():
            source = self.views.get(agg.source)
            if source is None:
                raise ValueError(f"aggregations.{name}.source: unknown view {agg.source!r}"
                                 f" (known: {', '.join(sorted(self.views)) or 'none'})")
            dtypes = {f.name: f.dtype for f in source.features}
            for f in agg.features:
                check_source_column(f, dtypes.get(f.of or ""), f"aggregations.{name}.features.{f.name}")
        for name, tr in self.transforms.items():
            for ref in tr.inputs:
                try:
                    pairs = self.resolve_ref(ref)
                except ValueError as exc:
                    raise ValueError(f"transforms.{name}.inputs: {exc}") from None
                if any(v in self.transforms for v, _ in pairs):
                    raise ValueError(f"transforms.{name}.inputs: {ref!r} is a transform's output;"
                                     " a transform reads views and aggregations only")
            names = [f for v, f in self.resolve_refs(list(tr.inputs))] if tr.inputs else []
            clash = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(tr.request)))
            if clash:
                raise ValueError(f"transforms.{name}.inputs: {clash} named twice (inputs and"
                                 " request values are passed by feature name)")

    def kind(self, name: str) -> str:
        """``view``, ``aggregation`` or ``transform``: what a reference's first part names."""
        if name in self.views:
            return "view"
        if name in self.aggregations:
            return "aggregation"
        if name in self.transforms:
            return "transform"
        raise KeyError(name)

    def feature_names_of(self, name: str) -> list[str]:
        """The features a view, an aggregation or a transform gives."""
        kind = self.kind(name)
        if kind == "view":
            return self.views[name].feature_names
        if kind == "aggregation":
            return self.aggregations[name].feature_names
        return self.transforms[name].feature_names

    def dtype_of(self, name: str, feature: str) -> str:
        """The type of one feature of a view, an aggregation or a transform."""
        kind = self.kind(name)
        if kind == "view":
            return self.views[name].feature(feature).dtype
        if kind == "aggregation":
            agg = self.aggregations[name]
            f = agg.feature(feature)
            src = self.views[agg.source]
            return agg_dtype(f.fn, src.feature(f.of).dtype if f.of else None)
        return self.transforms[name].outputs[feature]

    def entity_of(self, view: str) -> Entity:
        """The entity of a view, or of an aggregation's source view."""
        if view in self.aggregations:
            view = self.aggregations[view].source
        return self.entities[self.views[view].entity]

    def join_keys_of(self, name: str) -> dict[str, str]:
        """The join keys a read of this view, aggregation or transform needs."""
        if name in self.transforms:
            keys: dict[str, str] = {}
            for v, _ in self.resolve_refs(list(self.transforms[name].inputs)) if self.transforms[
                    name].inputs else []:
                keys.update(self.entity_of(v).join_keys)
            return keys
        return dict(self.entity_of(name).join_keys)

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
        if view_name not in self.views and view_name not in self.aggregations \
                and view_name not in self.transforms:
            known = sorted([*self.views, *self.aggregations, *self.transforms])
            raise ValueError(
                f"unknown view in feature reference {ref!r}; known views: "
                + (", ".join(known) or "none")
            )
        names = self.feature_names_of(view_name)
        if not feature:
            return [(view_name, f) for f in names]
        if feature not in names:
            raise ValueError(
                f"unknown feature {ref!r}; features of {view_name}: "
                + ", ".join(f"{view_name}:{f}" for f in names)
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
