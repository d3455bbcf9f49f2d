"""Rows for the timeline page tests: one customer with a few rows, a tie, another customer."""

from __future__ import annotations

from asof_stream import FeatureStore
from asof_stream.config import Config
from asof_stream.timestamps import now_micros, to_iso

MINUTE = 60 * 10**6


def seed_timeline(config: Config) -> dict[str, int]:
    """Push c1's rows one at a time (seqs 1..4) and one of c2 (seq 5); returns the times.

    c1: seq 1 at t1, seq 2 at t2, seq 3 also at t2 (the tie: seq 3 wins), seq 4 at t3."""
    now = now_micros()
    now -= now % 10**6
    times = {"t1": now - 50 * MINUTE, "t2": now - 40 * MINUTE, "t3": now - 30 * MINUTE}
    rows = [("c1", times["t1"], 1.0, "bronze"), ("c1", times["t2"], 2.0, "silver"),
            ("c1", times["t2"], 3.0, "<b>gold</b>"), ("c1", times["t3"], 4.0, "platinum"),
            ("c2", times["t1"], 9.0, "x")]
    with FeatureStore(config) as store:
        for c, t, spend, tier in rows:
            r = store.push([{"view": "customer_stats", "customer_id": c,
                             "event_timestamp": to_iso(t), "spend_7d": spend,
                             "orders_7d": int(spend), "tier": tier}])
            assert r.stored == 1, r
    return times
