"""The Redis online store's no-window aggregations, folded into summaries or not (every
row kept, as before folding existed on Redis), in the same run.

    python scripts/bench_redis_fold.py --redis URL [--entities 2000] [--per-entity 100]
                                       [--reads 5000]

Commits ``--entities`` x ``--per-entity`` purchases spread over the last 30 days, in time
order (batches of 5000, the committer's clock at each batch's newest event), into a
project with a no-window aggregation (sum, stddev, last over all history) beside a 1 d
window; reports the commit's wall and CPU seconds (this process only, not the Redis
server's), the sorted-set members and summary keys left, the Redis memory of the
prefix (``MEMORY USAGE`` summed over its keys), and p50/p99 of one online read of the
four features. Each mode uses a fresh key prefix, removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, however it is installed

import redis  # noqa: E402
from _common import PURCHASES  # noqa: E402

from asof_stream import FeatureStore  # noqa: E402
from asof_stream.ingest.sources.base import Record  # noqa: E402
from asof_stream.online.aggstate import AggPlan  # noqa: E402

TOML = PURCHASES + """
[aggregations.life]
source = "purchases"

[aggregations.life.features]
spend = {{ fn = "sum", of = "amount" }}
std_amount = {{ fn = "stddev", of = "amount" }}
last_category = {{ fn = "last", of = "category" }}
orders_1d = {{ fn = "count", window = "1d" }}
"""

FEATURES = ["life:spend", "life:std_amount", "life:last_category", "life:orders_1d"]


def bench(base: str, fold: bool, entities: int, per_entity: int, reads: int) -> dict[str, float]:
    prefix = f"bench-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(base)
    sep = "&" if "?" in base else "?"
    try:
        with tempfile.TemporaryDirectory(prefix="asof-bench-fold-") as tmp:
            folder = Path(tmp)
            (folder / "asof.toml").write_text(TOML.format(online=f"{base}{sep}prefix={prefix}"))
            store = FeatureStore(folder / "asof.toml")
            online = store.stores.online
            if not fold:  # every row kept, the plan of a store that does not fold
                online.agg_plan = AggPlan.from_defs(store.stores.config.defs)
                online.folds_aggregations = False
            rng = random.Random(1)
            now = time.time()
            # A stream: events in time order, the committer's clock at each batch's newest
            # event (so entities come due for a fold as the clock moves on).
            stamps = sorted(now - rng.uniform(0, 30 * 86400)
                            for _ in range(entities * per_entity))
            records = [Record(json.dumps({
                "customer_id": f"c{rng.randrange(entities)}", "event_timestamp": ts,
                "amount": round(rng.uniform(1, 100), 2),
                "category": rng.choice("abcde")}).encode(), f"b:{i}")
                for i, ts in enumerate(stamps)]
            committer = store.stores.committer()
            clock = [0]
            committer.clock = lambda: clock[0]
            c0, w0 = os.times(), time.perf_counter()
            for i in range(0, len(records), 5000):
                clock[0] = int(stamps[min(i + 5000, len(stamps)) - 1] * 1e6)
                committer.commit("bench", records[i:i + 5000])
            w1, c1 = time.perf_counter(), os.times()
            members = summaries = memory = 0
            for key in client.scan_iter(match="{" + prefix + "}:*", count=1000):
                memory += int(client.memory_usage(key) or 0)
                if b":a:" in key:
                    members += int(client.zcard(key))
                elif b":s:" in key:
                    summaries += 1
            times = []
            for _ in range(reads):
                k = [{"customer_id": f"c{rng.randrange(entities)}"}]
                t = time.perf_counter_ns()
                store.get_online_features(FEATURES, k)
                times.append(time.perf_counter_ns() - t)
            store.close()
    finally:
        keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
        if keys:
            client.unlink(*keys)
        client.close()
    times.sort()
    return {"commit wall s": w1 - w0,
            "commit cpu s": (c1.user - c0.user) + (c1.system - c0.system),
            "members": members, "summaries": summaries, "memory MB": memory / 1e6,
            "read p50 us": times[len(times) // 2] / 1000,
            "read p99 us": times[int(len(times) * 0.99)] / 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--entities", type=int, default=2000)
    ap.add_argument("--per-entity", type=int, default=100)
    ap.add_argument("--reads", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    for r in range(args.repeat):
        for fold in (False, True):
            got = bench(args.redis, fold, args.entities, args.per_entity, args.reads)
            label = "folded" if fold else "every row"
            print(f"run {r + 1} {label:9s} " + "  ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in got.items()))


if __name__ == "__main__":
    main()
