"""asof-stream: a feature store built around a streaming-ingest daemon.

Exactly-once ingest into an append-only SQLite log, point-in-time-correct training sets
from one shared as-of join, and a monotonic latest-wins online store.
"""

from .definitions import Entity, FeatureService, FeatureView, Field
from .store import FeatureStore

__all__ = ["Entity", "FeatureService", "FeatureStore", "FeatureView", "Field"]
__version__ = "0.1.0"
