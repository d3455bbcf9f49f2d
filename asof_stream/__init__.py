"""asof-stream: a feature store built around a streaming-ingest daemon.

Exactly-once ingest into an append-only SQLite log, point-in-time-correct training sets
from one shared as-of join, and a monotonic latest-wins online store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .definitions import Entity, FeatureService, FeatureView, Field
    from .feature_store import FeatureStore

__all__ = ["Entity", "FeatureService", "FeatureStore", "FeatureView", "Field"]
__version__ = "0.1.0"

# Imported on first use, so the command line starts without the whole Python API.
_LAZY = {"Entity": "definitions", "FeatureService": "definitions", "FeatureView": "definitions",
         "Field": "definitions", "FeatureStore": "feature_store"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
