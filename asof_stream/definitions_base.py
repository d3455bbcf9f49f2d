"""The pieces every definition model shares: the base model, names, feature types."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

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


def duration_value(v: Any, example: str, *, optional: bool = True) -> Any:
    """A config duration (``"14d"``, a timedelta, or None where ``optional``) as µs."""
    if isinstance(v, str):
        return parse_duration(v)
    if isinstance(v, timedelta):
        return v // timedelta(microseconds=1)
    if v is None and optional:
        return v
    raise ValueError(f"expected a duration like {example!r} (s, m, h, d), got {v!r}")
