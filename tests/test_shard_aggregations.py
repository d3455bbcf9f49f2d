"""Aggregations over partition shards: each shard's commit writes its entities' state to
the shared Redis online store, so an online read of an aggregated feature gives what the
same read gives on one flat log holding the same events, and what the brute-force oracle
gives over them; a rebuild from every shard's log reads the same (I2 over shards)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from asof_stream.config import Config
from asof_stream.ingest.sharded_commit import materialize_shards, open_shard
from asof_stream.offline.shards import shard_name
from asof_stream.online.lookup import PRESENT, read_online
from asof_stream.online.redis import RedisOnlineStore
from asof_stream.online.redis_fold import MARK
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


def _state(online: RedisOnlineStore) -> tuple[dict[str, bytes], dict[str, list[bytes]]]:
    """The live generation's summaries and sorted sets of customer_stats, by entity."""
    c = online.client
    base = f"{online.prefix}{(c.get(online.prefix + 'gen') or b'0').decode()}:"
    pattern = base.replace("{", "\\{").replace("}", "\\}")
    sums = {k.decode().rsplit(":", 1)[1]: c.get(k)
            for k in c.scan_iter(match=pattern + "s:customer_stats:*")}
    sets = {k.decode().rsplit(":", 1)[1]: c.zrange(k, 0, -1)
            for k in c.scan_iter(match=pattern + "a:customer_stats:*")}
    return sums, sets


def _shards_exact(config: Config, partitions: int) -> int:
    """Every row of every shard's log is in its entity's sorted set or its summary,
    exactly once, and each summary's mark is at most its shard's applied seq; returns
    how many rows are folded."""
    folded_rows = 0
    for p in range(partitions):
        shard = open_shard(config, p, partitions)
        try:
            online = shard.online
            assert isinstance(online, RedisOnlineStore)
            sums, sets = _state(online)
            per = Counter(r.entity for r in all_rows(shard.log, config.defs))
            applied = online.applied_seq()
            for ent, n in per.items():
                s = sums.get(ent)
                folded = 0 if s is None else json.loads(s[MARK:])["rows"]
                assert s is None or int(s[:MARK]) <= applied
                assert folded + len(sets.get(ent, [])) == n, (p, ent, folded, n)
                folded_rows += folded
        finally:
            shard.close()
    return folded_rows


def test_no_window_aggregations_are_folded_over_shards_exactly(tmp_path: Path,
                                                               redis_url: str) -> None:
    """Each shard's daemon folds its entities' rows out of the longest finite window
    into summaries marked with that shard's seq; late rows, a crash before a shard's
    batch was marked applied (its tail replayed) and a rebuild leave every row counted
    exactly once, and reads equal one flat log's."""
    sharded, flat = twin_projects(tmp_path, redis_url, AGGREGATIONS)
    start = now_micros() // 1_000_000 - 3 * 3600

    def at(i: int) -> float:
        return start + (i * 7919) % (3 * 3600 + 600)

    commit_both(sharded, flat, [event(i, keys=20, event_timestamp=at(i)) for i in range(300)])
    # late rows far below the fold: rows until their entity's next fold
    commit_both(sharded, flat, [event(i, keys=20, event_timestamp=at(i) - 7200)
                                for i in range(300, 400)])
    assert _shards_exact(sharded, 3) > 0  # folding happened over the shards
    pairs = [("spend", f) for f in FEATURES]
    ents = [{"customer_id": f"c{i}"} for i in range(21)]
    now = now_micros()

    def reads(config: Config) -> list[Any]:
        with open_stores(config) as stores:
            return [[sorted(d.items()) for d in read_online(
                stores.config.defs, stores.online, pairs, ents, now=t)]
                for t in (now, now + 10**9)]

    want = reads(flat)
    assert reads(sharded) == want
    # A crash after each shard wrote its rows but before they were marked applied: its
    # applied seq goes back (here to the start), and opening the shard replays its tail
    # (rows at or below an entity's summary mark are skipped, the others are there).
    def crash_and_replay() -> None:
        shard0 = open_shard(sharded, 0, 3)
        online0 = shard0.online
        assert isinstance(online0, RedisOnlineStore)
        client = online0.client
        gen = (client.get(online0.prefix + "gen") or b"0").decode()
        for p in range(3):
            client.set(f"{online0.prefix}{gen}:applied:{shard_name(p)}", 0)
        shard0.close()

    crash_and_replay()
    assert _shards_exact(sharded, 3) > 0  # (each shard reopened: healed)
    assert reads(sharded) == want
    materialize_shards(sharded)  # I2 over shards: each summary marked with its shard's seq
    crash_and_replay()
    assert _shards_exact(sharded, 3) > 0
    assert reads(sharded) == want
