"""Aggregations over partition shards: each shard's commit writes its entities' state to
the shared Redis online store, so an online read of an aggregated feature gives what the
same read gives on one flat log holding the same events, and what the brute-force oracle
gives over them; a rebuild from every shard's log reads the same (I2 over shards)."""

from __future__ import annotations

import random
from pathlib import Path

from asof_stream.ingest.sharded_commit import materialize_shards
from asof_stream.online.lookup import PRESENT, read_online
from asof_stream.stores import open_stores
from asof_stream.timestamps import now_micros
from tests.aggregation_oracle import all_rows, oracle, same
from tests.fixtures_kafka import event
from tests.shard_builders import commit_both, twin_projects

AGGREGATIONS = """
[aggregations.spend]
source = "customer_stats"

[aggregations.spend.features]
spend_1h = { fn = "sum", of = "spend_7d", window = "1h" }
orders_30m = { fn = "count", window = "30m" }
std_spend = { fn = "stddev", of = "spend_7d", window = "1h" }
last_tier = { fn = "last", of = "tier" }
orders = { fn = "count" }
spend = { fn = "sum", of = "spend_7d" }
max_orders = { fn = "max", of = "orders_7d" }
"""

FEATURES = ["spend_1h", "orders_30m", "std_spend", "last_tier", "orders", "spend", "max_orders"]


def test_aggregations_over_shards_match_one_log(tmp_path: Path, redis_url: str) -> None:
    sharded, flat = twin_projects(tmp_path, redis_url, AGGREGATIONS)
    rng = random.Random(3)
    start = now_micros() // 1_000_000 - 3 * 3600  # over the last 3 hours, some late

    def at(i: int) -> float:
        return start + (i * 7919) % (3 * 3600 + 600)

    commit_both(sharded, flat, [event(i, keys=20, event_timestamp=at(i)) for i in range(400)])
    commit_both(sharded, flat, [event(i, keys=20, event_timestamp=at(i) - 7200)
                                for i in range(400, 500)])
    pairs = [("spend", f) for f in FEATURES]
    ents = [{"customer_id": f"c{i}"} for i in range(22)]
    now = now_micros()
    times = [now + rng.randrange(5400) * 1_000_000 for _ in range(8)] + [now + 10**13]

    def reads(config: object) -> list[list[object]]:
        with open_stores(config) as stores:  # type: ignore[arg-type]
            defs = stores.config.defs
            rows = all_rows(stores.log, defs) if not stores.sharded else None
            out = []
            for t in times:
                got = read_online(defs, stores.online, pairs, ents, now=t)
                out.append([sorted(d.items()) for d in got])
                if rows is not None:
                    for ent, values in zip(ents, got, strict=True):
                        for (_, feat), fv in values.items():
                            fn = defs.aggregations["spend"].feature(feat).fn
                            want = oracle(defs, rows, "spend", feat, ent["customer_id"], t)
                            assert same(fn, fv.value, want), (feat, ent, t, fv, want)
            return out

    got_flat = reads(flat)
    got_sharded = reads(sharded)
    assert got_sharded == got_flat
    assert any(fv.status == PRESENT and fv.value for row in got_sharded[0] for _, fv in row)
    materialize_shards(sharded)
    assert reads(sharded) == got_flat
