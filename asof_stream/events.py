"""Decode and validate feature events (contract section 3).

One set of rules for every path (Kafka, file, HTTP push, replay). :class:`EventDecoder`
compiles each view's definition into a small checker for the per-event path; the
pydantic models in :mod:`asof_stream.event_schema` state the same rules declaratively,
and the tests prove the two agree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from .definitions import RESERVED, Definitions, Entity, FeatureView
from .timestamps import TimestampError, to_micros

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_MISSING: Any = object()
_json_decoder = msgspec.json.Decoder()


class EventError(ValueError):
    """Why one event was rejected; the message becomes the dead letter's reason."""


@dataclass(slots=True)
class Event:
    """A validated event: entity key in canonical form, time in UTC microseconds."""

    view: str
    entity: str
    event_ts: int
    event_id: str | None
    values: dict[str, Any]


def entity_key(entity: Entity, values: list[Any]) -> str:
    """Canonical text of an entity key: the value for one key, a JSON array for several."""
    if len(values) == 1:
        return str(values[0])
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_int64(v: object) -> int:
    if not _is_int(v):
        raise TypeError("expected int64")
    assert isinstance(v, int)
    if v < INT64_MIN or v > INT64_MAX:
        raise ValueError("int64 value out of the signed 64-bit range")
    return v


def _checker(dtype: str, allow_nan: bool) -> Callable[[Any], Any]:
    if dtype == "int64":
        return check_int64
    if dtype == "float64":

        def check_float(v: Any) -> float:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise TypeError("expected float64")
            f = float(v)
            if not allow_nan and not math.isfinite(f):
                raise ValueError("NaN and infinities are not allowed")
            return f

        return check_float
    if dtype == "string":

        def check_str(v: Any) -> str:
            if not isinstance(v, str):
                raise TypeError("expected string")
            return v

        return check_str

    def check_bool(v: Any) -> bool:
        if not isinstance(v, bool):
            raise TypeError("expected bool")
        return v

    return check_bool


def _describe(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class ViewRules:
    """The compiled checks for one view."""

    __slots__ = ("view", "entity", "keys", "features", "allowed", "forbid_extra")

    def __init__(self, view: FeatureView, entity: Entity) -> None:
        self.view = view.name
        self.entity = entity
        self.keys = [(k, check_int64 if t == "int64" else _checker("string", False))
                     for k, t in entity.join_keys.items()]
        self.features = [(f.name, f.required, _checker(f.dtype, f.allow_nan), f.dtype)
                         for f in view.features]
        self.allowed = frozenset(RESERVED | set(entity.join_keys) | set(view.feature_names))
        self.forbid_extra = view.extra == "forbid"

    def check(self, obj: dict[str, Any]) -> Event:
        ts_raw = obj.get("event_timestamp", _MISSING)
        if ts_raw is _MISSING or ts_raw is None:
            raise EventError("missing event_timestamp")
        try:
            ts = to_micros(ts_raw)
        except TimestampError as exc:
            raise EventError(f"bad event_timestamp: {exc}") from None
        key_values = []
        for name, check in self.keys:
            v = obj.get(name, _MISSING)
            if v is _MISSING or v is None:
                raise EventError(f"missing join key {name!r} of entity {self.entity.name!r}")
            try:
                key_values.append(check(v))
            except (TypeError, ValueError) as exc:
                raise EventError(f"join key {name!r}: {exc}, got {_describe(v)}") from None
        values: dict[str, Any] = {}
        for name, required, check, dtype in self.features:
            v = obj.get(name)
            if v is None:
                if required:
                    raise EventError(f"missing required feature {name!r}")
                values[name] = None
                continue
            try:
                values[name] = check(v)
            except (TypeError, ValueError) as exc:
                raise EventError(f"feature {name!r} ({dtype}): {exc}, got {_describe(v)}") from None
        if self.forbid_extra and not self.allowed.issuperset(obj):
            unknown = sorted(set(obj) - self.allowed)
            raise EventError(f"unknown field(s) {unknown} for view {self.view!r}")
        event_id = obj.get("event_id")
        if event_id is not None:
            if _is_int(event_id):
                event_id = str(event_id)
            elif not isinstance(event_id, str):
                raise EventError(f"event_id must be a string, got {_describe(event_id)}")
        return Event(self.view, entity_key(self.entity, key_values), ts, event_id, values)


class EventDecoder:
    """Turns raw bytes (or already parsed rows) into :class:`Event` or :class:`EventError`."""

    def __init__(self, defs: Definitions, view: str | None = None,
                 max_bytes: int = 1 << 20) -> None:
        if view is not None and view not in defs.views:
            raise ValueError(f"unknown view {view!r}")
        self.defs = defs
        self.bound_view = view
        self.max_bytes = max_bytes
        self.rules = {name: ViewRules(v, defs.entities[v.entity]) for name, v in defs.views.items()}
        self._only = next(iter(self.rules)) if len(self.rules) == 1 else None

    def decode(self, raw: bytes) -> Event:
        """Validate one JSON event; raises :class:`EventError` with the reason."""
        if len(raw) > self.max_bytes:
            raise EventError(f"oversized event: {len(raw)} bytes > limit {self.max_bytes}")
        try:
            obj = _json_decoder.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a string.
            obj = _lenient_json(raw, exc)
        if not isinstance(obj, dict):
            raise EventError(f"event is not a JSON object but {type(obj).__name__}")
        return self.validate(obj)

    def validate(self, obj: dict[str, Any]) -> Event:
        """Validate one parsed event object."""
        view = obj.get("view")
        if view is None:
            view = self.bound_view or self._only
            if view is None:
                raise EventError("missing 'view' (the source is not bound to one view)")
        elif not isinstance(view, str):
            raise EventError(f"'view' must be a string, got {_describe(view)}")
        elif self.bound_view is not None and view != self.bound_view:
            raise EventError(f"event is for view {view!r} but the source is bound to "
                             f"{self.bound_view!r}")
        rules = self.rules.get(view)
        if rules is None:
            raise EventError(f"unknown view {view!r}; known views: {', '.join(sorted(self.rules))}")
        return rules.check(obj)


def _lenient_json(raw: bytes, exc: Exception) -> Any:
    """Strict JSON failed: the stdlib parser still reads NaN/Infinity literals."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EventError("event is not valid UTF-8") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise EventError(f"not JSON: {exc}") from None


def dumps_values(values: dict[str, Any]) -> str:
    """Feature values as JSON text for the log and the online store (keeps NaN/inf)."""
    for v in values.values():
        # msgspec would silently write NaN/inf as null; the stdlib keeps them.
        if v.__class__ is float and not math.isfinite(v):
            return json.dumps(values, separators=(",", ":"), ensure_ascii=False)
    return msgspec.json.encode(values).decode()


def loads_values(text: str | bytes) -> dict[str, Any]:
    """Inverse of :func:`dumps_values`."""
    try:
        out: dict[str, Any] = _json_decoder.decode(text)
    except msgspec.DecodeError:
        out = json.loads(text)
    return out
