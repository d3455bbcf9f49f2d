"""Decode and validate feature events (docs/events.md).

One set of rules for every path (Kafka, file, HTTP push, replay). :class:`EventDecoder`
compiles each view's definition into a small checker for the per-event path; the tests
check it against a declarative statement of the same rules in pydantic
(``tests/event_schema.py``) on random events.
"""

from __future__ import annotations

import json
import keyword
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Annotated, Any

import msgspec

from .definitions import RESERVED, Definitions, Entity, FeatureView
from .timestamps import (
    MAX_US,
    MIN_US,
    US_PER_S,
    TimestampError,
    format_duration,
    now_micros,
    to_iso,
    to_micros,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_MISSING: Any = object()
_json_decoder = msgspec.json.Decoder()
_encode = msgspec.json.encode


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
    #: ``dumps_values(values)``, when the decoder already made it (the typed path does,
    #: so the text is built on the daemon's reading thread, not in the commit).
    features: str | None = field(default=None, compare=False, repr=False)


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
            try:
                f = float(v)
            except OverflowError:
                raise ValueError("number out of the float64 range") from None
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
        target = view or self._only
        self._fast = _TypedPath.build(defs, target) if target is not None else None
        self.max_future = defs.ingest.max_future
        #: the latest event_timestamp accepted: now + max_future, as of the last refresh
        self.latest_ts = 0
        self.refresh_clock()

    def refresh_clock(self, now: int | None = None) -> None:
        """Move the future bound to ``now`` (default: the clock) + ``max_future``; the
        committer calls this once per batch, so an event costs one comparison."""
        self.latest_ts = (now_micros() if now is None else now) + self.max_future

    def _beyond_bound(self, ev: Event) -> Event:
        """An event past the bound: refresh the bound (the clock moved on since the batch
        began, or nobody refreshed it), and reject the event if it is still past it."""
        self.refresh_clock()
        if ev.event_ts > self.latest_ts:
            raise EventError(
                f"event_timestamp {to_iso(ev.event_ts)} is more than"
                f" {format_duration(self.max_future)} in the future (after"
                f" {to_iso(self.latest_ts)}; the bound is [ingest] max_future ="
                f" \"{format_duration(self.max_future)}\")")
        return ev

    def decode(self, raw: bytes) -> Event:
        """Validate one JSON event; raises :class:`EventError` with the reason."""
        if len(raw) > self.max_bytes:
            raise EventError(f"oversized event: {len(raw)} bytes > limit {self.max_bytes}")
        try:
            if self._fast is not None:
                ev = self._fast.decode(raw)
                if ev is not None:
                    return ev if ev.event_ts <= self.latest_ts else self._beyond_bound(ev)
            # The general path: it accepts exactly what the typed path accepts, and more
            # importantly it says *why* an event is rejected.
            try:
                obj = _json_decoder.decode(raw)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a string.
                obj = _lenient_json(raw, exc)
        except RecursionError:  # msgspec raises it, not DecodeError, past its depth limit
            raise EventError("not JSON: nested too deeply") from None
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
        ev = rules.check(obj)
        return ev if ev.event_ts <= self.latest_ts else self._beyond_bound(ev)


_F64_MAX = sys.float_info.max


class _TypedPath:
    """A typed msgspec decode for a source bound to one view: the common case, fast.

    The struct accepts a subset of what :class:`ViewRules` accepts (same types, same
    bounds, NaN/inf and unknown fields rejected), and builds the same :class:`Event`.
    Anything it refuses goes to the general path, which decides and gives the reason.
    """

    def __init__(self, view: str, decoder: Any, keys: list[str], features: list[str],
                 finite: bool = False) -> None:
        self.view = view
        self.decoder = decoder
        self.keys = keys
        self.one_key = keys[0] if len(keys) == 1 else None
        self.features = features
        #: the feature values of a decoded struct, as a {name: value} dict
        self._values = _dict_getter(features)
        #: every float the struct accepts is finite, so msgspec writes the features as
        #: dumps_values would (without its NaN/inf check)
        self._finite = finite

    @classmethod
    def build(cls, defs: Definitions, view_name: str) -> _TypedPath | None:
        view = defs.views[view_name]
        entity = defs.entities[view.entity]
        int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
        finite = Annotated[float, msgspec.Meta(ge=-_F64_MAX, le=_F64_MAX)]
        fields: list[tuple[str, Any, Any] | tuple[str, Any]] = [
            ("event_timestamp", str | int | float),
            ("view", str | None, None),
            ("event_id", str | int | None, None),
        ]
        for k, t in entity.join_keys.items():
            fields.append((k, int64 if t == "int64" else str))
        for f in view.features:
            base: Any = {"int64": int64, "string": str, "bool": bool,
                         "float64": float if f.allow_nan else finite}[f.dtype]
            # A required feature may not be missing or null: leave those to the general path.
            fields.append((f.name, base) if f.required else (f.name, base | None, None))
        try:
            struct = msgspec.defstruct(f"_Event_{view_name}", fields,
                                       forbid_unknown_fields=view.extra == "forbid", kw_only=True)
            decoder = msgspec.json.Decoder(struct)
        except (TypeError, ValueError):
            return None  # names msgspec cannot use: the general path serves alone
        all_finite = not any(f.dtype == "float64" and f.allow_nan for f in view.features)
        return cls(view_name, decoder, list(entity.join_keys), view.feature_names, all_finite)

    def decode(self, raw: bytes) -> Event | None:
        try:
            obj = self.decoder.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
        if obj.view is not None and obj.view != self.view:
            return None
        t = obj.event_timestamp
        if t.__class__ is int and MIN_US <= t * US_PER_S <= MAX_US:  # epoch seconds
            ts = t * US_PER_S
        else:
            try:
                ts = to_micros(t)
            except TimestampError:
                return None
        if self.one_key is not None:
            entity = str(getattr(obj, self.one_key))
        else:
            entity = json.dumps([getattr(obj, k) for k in self.keys], separators=(",", ":"),
                                ensure_ascii=False)
        event_id = obj.event_id
        if event_id is not None and event_id.__class__ is not str:
            event_id = str(event_id)
        values = self._values(obj)
        features = _encode(values).decode() if self._finite else dumps_values(values)
        return Event(self.view, entity, ts, event_id, values, features)


def _dict_getter(names: list[str]) -> Callable[[Any], dict[str, Any]]:
    """``{name: obj.name, ...}`` of an object for ``names``, as one dict display when
    every name is an identifier (about 3x faster than building it from pairs)."""
    if all(n.isidentifier() and not keyword.iskeyword(n) for n in names):
        body = ", ".join(f"{n!r}: obj.{n}" for n in names)
        scope: dict[str, Any] = {}
        exec(f"def get(obj):\n    return {{{body}}}\n", scope)  # noqa: S102 (names checked)
        getter: Callable[[Any], dict[str, Any]] = scope["get"]
        return getter
    get = attrgetter(*names)
    if len(names) == 1:
        return lambda obj: {names[0]: get(obj)}
    return lambda obj: dict(zip(names, get(obj), strict=True))


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


def same_value(a: Any, b: Any) -> bool:
    """Two feature values are the same value: equal and of one type, or both NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and bool(a == b)


def coerce_key(name: str, dtype: str, value: Any, *, from_text: bool = False) -> Any:
    """Check (or, for text from a CLI flag or CSV cell, convert) one join key value."""
    if dtype == "int64":
        if from_text and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ValueError(f"join key {name!r} is int64, got {value!r}") from None
        try:
            return check_int64(value)
        except (TypeError, ValueError):
            raise ValueError(f"join key {name!r} is int64, got {value!r}") from None
    if not isinstance(value, str):
        raise ValueError(f"join key {name!r} is a string, got {value!r}")
    return value
