"""Online reads: per feature a value, its event_timestamp and a status (docs/online.md).

Shared by the Python API, the ``online`` command and the feature server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..definitions import Definitions
from ..events import coerce_key, entity_key, loads_values
from ..timestamps import now_micros
from .aggread import AggReader
from .aggsummary import empty_value
from .base import OnlineStore

PRESENT = "PRESENT"
NOT_FOUND = "NOT_FOUND"
OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"


@dataclass(frozen=True, slots=True)
class FeatureValue:
    """One looked-up feature: the value (None unless PRESENT; an aggregation's count and
    sum read 0 for an entity never seen), its time and status."""

    value: Any
    status: str
    event_timestamp: int | None


def entity_keys_for(defs: Definitions, view: str, rows: Sequence[Mapping[str, Any]], *,
                    from_text: bool = False) -> list[str]:
    """Canonical entity keys of ``view`` for each row of join-key values."""
    entity = defs.entity_of(view)
    out = []
    for i, row in enumerate(rows):
        values = []
        for name, dtype in entity.join_keys.items():
            if name not in row or row[name] is None:
                raise ValueError(f"entity row {i}: missing join key {name!r} "
                                 f"(entity {entity.name!r} needs {list(entity.join_keys)})")
            values.append(coerce_key(name, dtype, row[name], from_text=from_text))
        out.append(entity_key(entity, values))
    return out


def read_online(defs: Definitions, online: OnlineStore, features: Sequence[tuple[str, str]],
                rows: Sequence[Mapping[str, Any]], *, now: int | None = None,
                from_text: bool = False,
                first_row: int = 0) -> list[dict[tuple[str, str], FeatureValue]]:
    """For each entity row, every requested (view or aggregation, feature) with value, time
    and status, from the online store. Transforms are read by :func:`.read.read_features`,
    which calls this for their inputs; ``first_row`` numbers rows in errors.
    """
    now = now_micros() if now is None else now
    out: list[dict[tuple[str, str], FeatureValue]] = [{} for _ in rows]
    by_view: dict[str, list[str]] = {}
    for view, feat in features:
        by_view.setdefault(view, []).append(feat)
    for view, feats in by_view.items():
        if view in defs.aggregations:
            _read_aggregation(defs, online, view, feats, rows, now, from_text, out)
            continue
        ttl = defs.views[view].ttl
        keys = entity_keys_for(defs, view, rows, from_text=from_text)
        stored = online.get(view, keys)
        for i, row in enumerate(stored):
            if row is None:
                for f in feats:
                    out[i][(view, f)] = FeatureValue(None, NOT_FOUND, None)
                continue
            if ttl is not None and now - row.event_ts > ttl:
                for f in feats:
                    out[i][(view, f)] = FeatureValue(None, OUTSIDE_MAX_AGE, row.event_ts)
                continue
            values = loads_values(row.features)
            for f in feats:
                v = values.get(f)
                # A feature added to the view after this row was written reads as absent.
                status = PRESENT if f in values else NOT_FOUND
                out[i][(view, f)] = FeatureValue(v, status, row.event_ts)
    return [{pair: d[pair] for pair in features} for d in out]


_readers: dict[tuple[int, str], AggReader] = {}


def source_missing(online: OnlineStore, source: str) -> bool:
    plan = online.agg_plan
    return plan is None or source not in plan.keep


def _read_aggregation(defs: Definitions, online: OnlineStore, name: str, feats: list[str],
                      rows: Sequence[Mapping[str, Any]], now: int, from_text: bool,
                      out: list[dict[tuple[str, str], FeatureValue]]) -> None:
    """An aggregation's features computed at ``now`` from the state (see :mod:`.aggread`)."""
    reader = _readers.get((id(defs), name))
    if reader is None or reader.agg is not defs.aggregations[name]:
        reader = _readers[(id(defs), name)] = AggReader(defs, name)
    if source_missing(online, reader.agg.source):
        raise ValueError(f"aggregation {name!r}: this online store keeps no aggregation state"
                         " (not opened through the project's stores)")
    source = reader.agg.source
    keys = entity_keys_for(defs, name, rows, from_text=from_text)
    latest = online.get(source, keys)
    state = online.agg_state(source, keys, reader.lower(now), now, reader.all_history(feats))
    for i, (row, (found, summary)) in enumerate(zip(latest, state, strict=True)):
        if row is None:
            for f in feats:
                fdef, dtype = reader.feats[f]
                out[i][(name, f)] = FeatureValue(empty_value(fdef.fn, dtype), NOT_FOUND, None)
            continue
        for f, (value, ts) in reader.evaluate_on(feats, found, now, summary).items():
            out[i][(name, f)] = FeatureValue(value, PRESENT, ts)
