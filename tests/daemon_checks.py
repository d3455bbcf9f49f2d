"""Assertions shared by the daemon tests: exactly once (I3) and online = join at +inf (I1)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path


def logged_orders(folder: Path) -> Counter[int]:
    """How many times each event (by its unique ``orders_7d``) is in the offline log."""
    if not (folder / "data" / "offline.sqlite").exists():
        return Counter()
    conn = sqlite3.connect(folder / "data" / "offline.sqlite")
    try:
        return Counter(json.loads(f)["orders_7d"] for (f,) in conn.execute("SELECT features FROM log"))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the daemon has created the file, not its tables yet
            return Counter()
        raise
    finally:
        conn.close()


def assert_exactly_once(folder: Path, expected: set[int], note: str = "") -> None:
    counts = logged_orders(folder)
    doubled = sorted(k for k, n in counts.items() if n > 1)
    missing = sorted(expected - set(counts))
    extra = sorted(set(counts) - expected)
    assert not doubled, f"{len(doubled)} events stored twice, e.g. {doubled[:10]} {note}"
    assert not missing, f"{len(missing)} events lost, e.g. {missing[:10]} {note}"
    assert not extra, f"unexpected events {extra[:10]} {note}"
    assert_online_is_join_at_infinity(folder)


def assert_online_is_join_at_infinity(folder: Path) -> None:
    """I1: per (view, entity) the online row is the log row with the greatest (ts, seq)."""
    conn = sqlite3.connect(folder / "data" / "offline.sqlite")
    try:
        oracle: dict[tuple[str, str], tuple[int, int, str]] = {}
        for view, entity, ts, seq, features in conn.execute(
                "SELECT view, entity, event_timestamp, seq, features FROM log"):
            cur = oracle.get((view, entity))
            if cur is None or (ts, seq) > cur[:2]:
                oracle[(view, entity)] = (ts, seq, features)
    finally:
        conn.close()
    online = sqlite3.connect(folder / "data" / "online.sqlite")
    try:
        stored = {(v, e): (ts, seq, f) for v, e, ts, seq, f in online.execute(
            "SELECT view, entity, event_timestamp, seq, features FROM online")}
    finally:
        online.close()
    assert stored == oracle


def positions(folder: Path, source: str) -> dict[str, int]:
    if not (folder / "data" / "offline.sqlite").exists():
        return {}
    conn = sqlite3.connect(folder / "data" / "offline.sqlite")
    try:
        return {k: n for k, n in conn.execute(
            "SELECT key, next_offset FROM positions WHERE source = ?", (source,))}
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # created, not yet set up by the daemon
            return {}
        raise
    finally:
        conn.close()
