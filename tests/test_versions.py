from __future__ import annotations

import json
import sqlite3
from typing import Any

from asof_stream.ingest.sources.base import Record
from asof_stream.stores import open_stores
from asof_stream.versions import SCHEMA, view_version
from tests.conftest import BASIC_TOML


def test_version_changes_only_with_schema_or_ttl(make_config: Any) -> None:
    base = view_version(make_config().defs, "customer_stats")
    same = make_config(text=BASIC_TOML.replace(
        'ttl = "14d"', 'ttl = "14d"\ndescription = "new words"\nowner = "me"\ntags = ["x"]'))
    assert view_version(same.defs, "customer_stats") == base
    assert view_version(make_config(text=BASIC_TOML.replace('"14d"', '"15d"')).defs,
                        "customer_stats") != base
    assert view_version(make_config(text=BASIC_TOML.replace(
        'tier = "string"', 'tier = "string", extra_f = "bool"')).defs, "customer_stats") != base
    assert view_version(make_config(text=BASIC_TOML.replace(
        'orders_7d = "int64"', 'orders_7d = "float64"')).defs, "customer_stats") != base
    # Another view's change leaves this one alone.
    assert view_version(make_config(text=BASIC_TOML.replace(
        'flagged = "bool"', 'flagged = "string"')).defs, "customer_stats") == base


def test_log_rows_keep_the_version_they_were_written_under(make_config: Any) -> None:
    ev = {"view": "customer_stats", "customer_id": "c", "event_timestamp": 1}
    first = make_config()
    with open_stores(first) as s:
        s.committer().commit("t", [Record(json.dumps(ev).encode(), "0")])
    second = make_config(text=BASIC_TOML.replace('"14d"', '"30d"'))
    with open_stores(second) as s:
        s.committer().commit("t", [Record(json.dumps(ev).encode(), "1")])
        rows = [r[0] for r in s.log.conn.execute("SELECT def_version FROM log ORDER BY seq")]
        assert rows == [view_version(first.defs, "customer_stats"),
                        view_version(second.defs, "customer_stats")]
        seen = [v["version"] for v in known_versions(s.log.conn) if v["view"] == "customer_stats"]
        assert seen == rows


def known_versions(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every recorded version, oldest first."""
    conn.executescript(SCHEMA)
    cur = conn.execute("SELECT view, version, definition, first_seen_ts FROM definition_versions"
                       " ORDER BY first_seen_ts, view")
    return [{"view": v, "version": ver, "definition": json.loads(d), "first_seen_ts": t}
            for v, ver, d, t in cur]
