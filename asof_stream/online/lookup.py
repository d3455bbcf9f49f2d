"""Online reads: per feature a value, its event_timestamp and a status (docs/online.md).

Shared by the Python API, the ``online`` command and the feature server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..definitions import Definitions
from ..events import check_int64, entity_key, loads_values
from ..timestamps import now_micros
from .base import OnlineStore

PRESENT = "PRESENT"
NOT_FOUND = "NOT_FOUND"
OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"


@dataclass(frozen=True, slots=True)
class FeatureValue:
    """One looked-up feature: the value (None unless PRESENT), its time and status."""

    value: Any
    status: str
    event_timestamp: int | None


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
                from_text: bool = False) -> list[dict[tuple[str, str], FeatureValue]]:
    """For each entity row, every requested (view, feature) with value, time and status."""
    now = now_micros() if now is None else now
    out: list[dict[tuple[str, str], FeatureValue]] = [{} for _ in rows]
    by_view: dict[str, list[str]] = {}
    for view, feat in features:
        by_view.setdefault(view, []).append(feat)
    for view, feats in by_view.items():
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
