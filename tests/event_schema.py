"""The event rules stated declaratively as pydantic models (docs/events.md).

:class:`asof_stream.events.EventDecoder` is the compiled per-event path; these models
are the readable statement of the same rules, and the tests check that both accept and
reject the same events with the same values. They also give a JSON Schema per view.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    create_model,
)

from asof_stream.definitions import Definitions, Entity, FeatureView
from asof_stream.events import INT64_MAX, INT64_MIN, Event, entity_key
from asof_stream.timestamps import now_micros, to_micros

Int64 = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
Timestamp = Annotated[int, BeforeValidator(to_micros)]


def _float(allow_nan: bool) -> Any:
    return Annotated[StrictInt | StrictFloat, Field(allow_inf_nan=allow_nan),
                     BeforeValidator(_reject_bool)]


def _reject_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("expected float64")
    return v


_TYPES: dict[str, Any] = {"int64": Int64, "string": StrictStr, "bool": StrictBool}


def _not_after(latest: int) -> Any:
    def check(us: int) -> int:
        if us > latest:
            raise ValueError("event_timestamp is beyond [ingest] max_future")
        return us

    return AfterValidator(check)


def event_model(view: FeatureView, entity: Entity, latest: int | None = None) -> type[BaseModel]:
    """A pydantic model accepting exactly the events of one view (with an event_timestamp
    at most ``latest``, when given)."""
    ts: Any = Timestamp if latest is None else Annotated[Timestamp, _not_after(latest)]
    fields: dict[str, Any] = {
        "view": (Literal[view.name] | None, None),
        "event_timestamp": (ts, ...),
        "event_id": (StrictStr | StrictInt | None, None),
    }
    for key, dtype in entity.join_keys.items():
        fields[key] = (Int64 if dtype == "int64" else StrictStr, ...)
    for f in view.features:
        t = _float(f.allow_nan) if f.dtype == "float64" else _TYPES[f.dtype]
        fields[f.name] = (t, ...) if f.required else (t | None, None)
    config = ConfigDict(extra=view.extra, strict=False)
    return create_model(f"{view.name}_event", __config__=config, **fields)


def reference_validate(defs: Definitions, view: str, obj: dict[str, Any]) -> Event:
    """Validate with the declarative model; raises pydantic.ValidationError."""
    fv = defs.views[view]
    entity = defs.entities[fv.entity]
    latest = now_micros() + defs.ingest.max_future
    m = event_model(fv, entity, latest).model_validate({**obj, "view": obj.get("view", view)})
    values = {}
    for f in fv.features:
        v = getattr(m, f.name)
        values[f.name] = float(v) if f.dtype == "float64" and v is not None else v
    event_id = m.event_id  # type: ignore[attr-defined]
    return Event(view, entity_key(entity, [getattr(m, k) for k in entity.join_keys]),
                 m.event_timestamp,  # type: ignore[attr-defined]
                 None if event_id is None else str(event_id), values)
