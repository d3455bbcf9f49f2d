"""Reading any features online: stored and aggregated ones, and on-demand transforms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..definitions import Definitions
from ..transforms.online import read_with_transforms
from .base import OnlineStore
from .lookup import FeatureValue, read_online


def read_features(defs: Definitions, online: OnlineStore, features: Sequence[tuple[str, str]],
                  rows: Sequence[Mapping[str, Any]], *, now: int | None = None,
                  from_text: bool = False,
                  first_row: int = 0) -> list[dict[tuple[str, str], FeatureValue]]:
    """:func:`.lookup.read_online`, plus transform outputs computed from their inputs'
    values and the request values in the rows (:mod:`asof_stream.transforms.online`)."""
    if any(v in defs.transforms for v, _ in features):
        return read_with_transforms(defs, online, features, rows, now=now, from_text=from_text,
                                    first_row=first_row)
    return read_online(defs, online, features, rows, now=now, from_text=from_text,
                       first_row=first_row)
