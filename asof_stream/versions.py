"""Definition versions: a content hash of what shapes a view's rows (schema and ttl).

Changing a description, owner or tags keeps the version; changing a feature's type,
adding a feature, or changing the ttl or the entity's join keys makes a new one. The
log records the version each row was written under, and the ``definition_versions``
table records when each version was first seen.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from .definitions import Definitions

SCHEMA = """
CREATE TABLE IF NOT EXISTS definition_versions (
    view TEXT NOT NULL,
    version TEXT NOT NULL,
    definition TEXT NOT NULL,
    first_seen_ts INTEGER NOT NULL,
    PRIMARY KEY (view, version)
);
"""


def view_shape(defs: Definitions, view: str) -> dict[str, Any]:
    """The parts of a view's definition that change what its rows mean."""
    v = defs.views[view]
    return {
        "view": v.name,
        "entity": v.entity,
        "join_keys": list(defs.entities[v.entity].join_keys.items()),
        "features": [[f.name, f.dtype, f.required, f.allow_nan] for f in v.features],
        "ttl": v.ttl,
        "extra": v.extra,
    }


def view_version(defs: Definitions, view: str) -> str:
    """A short stable hash of :func:`view_shape`."""
    text = json.dumps(view_shape(defs, view), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def aggregation_version(defs: Definitions, name: str) -> str:
    """A short stable hash of an aggregation's features (fn, of, window) and of its source
    view's :func:`view_shape`: a new window or function, or a changed source, is a new one."""
    agg = defs.aggregations[name]
    shape = {"aggregation": agg.name, "source": view_shape(defs, agg.source),
             "features": [[f.name, f.fn, f.of, f.window] for f in agg.features]}
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def record_versions(conn: sqlite3.Connection, defs: Definitions, now: int) -> dict[str, str]:
    """Register the current version of every view (first sighting wins); returns them."""
    conn.executescript(SCHEMA)
    out = {}
    rows = []
    for name in defs.views:
        version = view_version(defs, name)
        out[name] = version
        rows.append((name, version, json.dumps(view_shape(defs, name), sort_keys=True), now))
    conn.executemany("INSERT OR IGNORE INTO definition_versions VALUES (?, ?, ?, ?)", rows)
    return out
