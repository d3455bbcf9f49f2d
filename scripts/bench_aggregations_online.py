"""Online reads of aggregated features, in process: p50/p99 per read.

    python scripts/bench_aggregations_online.py [--entities 2000] [--per-entity 50]
                                                [--reads 20000] [--redis URL]

Fills a project with ``--entities`` customers, each with ``--per-entity`` purchases spread
over the last 2 days (so a 1 d window holds about half of them), then times
``FeatureStore.get_online_features`` for 1 random entity x 3 aggregated features (a 1 h
sum, a 1 d count, a 7 d last) at the current time; with ``--redis``, the same on a Redis
online store (a fresh key prefix, removed afterwards). Beside it, interleaved, the read of
two plain view features of the same entity (the latest-row read) as the baseline. Each
read's wall time and its thread's CPU time are both reported (``cpu`` rows): a wall tail
that the CPU time does not show is the machine, not the code.
Target: p99 under 200 us on SQLite.
"""

from __future__ import annotations

import argparse
import gc
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

from _common import PURCHASES  # noqa: E402

from asof_stream import FeatureStore  # noqa: E402
from asof_stream.ingest.sources.base import Record  # noqa: E402

TOML = PURCHASES + """
[aggregations.spend]
source = "purchases"

[aggregations.spend.features]
amount_1h = {{ fn = "sum", of = "amount", window = "1h" }}
orders_1d = {{ fn = "count", window = "1d" }}
last_category_7d = {{ fn = "last", of = "category", window = "7d" }}
"""

FEATURES = ["spend:amount_1h", "spend:orders_1d", "spend:last_category_7d"]
PLAIN = ["purchases:amount", "purchases:category"]


def bench(online: str, entities: int, per_entity: int,
          reads: int) -> dict[str, tuple[float, float, float]]:
    with tempfile.TemporaryDirectory(prefix="asof-bench-agg-") as tmp:
        folder = Path(tmp)
        (folder / "asof.toml").write_text(TOML.format(online=online))
        rng = random.Random(1)
        now = time.time()
        store = FeatureStore(folder / "asof.toml")
        committer = store.stores.committer()
        batch = []
        for i in range(entities * per_entity):
            batch.append(Record(json.dumps({
                "customer_id": f"c{i % entities}", "event_timestamp": now - rng.uniform(0, 2 * 86400),
                "amount": round(rng.uniform(1, 100), 2), "category": rng.choice("abcde")}).encode(),
                f"b:{i}"))
            if len(batch) == 5000:
                committer.commit("bench", batch)
                batch = []
        if batch:
            committer.commit("bench", batch)
        keys = [[{"customer_id": f"c{rng.randrange(entities)}"}] for _ in range(reads)]
        for k in keys[:500]:  # warm up
            store.get_online_features(FEATURES, k)
        # Interleaved with the baseline (a plain view feature, the same entity), so both
        # see the same machine.
        # Wall time, and the thread's CPU time beside it: a wall tail the CPU time does
        # not have is the machine (the scheduler giving the core to another process),
        # not the code. Collections of the cyclic GC during the reads are counted.
        times: dict[str, list[int]] = {"aggregated": [], "plain view": [],
                                       "aggregated cpu": [], "plain view cpu": []}
        collections = [0]
        gc.callbacks.append(lambda phase, _info: collections.__setitem__(
            0, collections[0] + (phase == "start")))
        wall, cpu = time.perf_counter_ns, time.thread_time_ns
        for k in keys:
            for label, feats in (("aggregated", FEATURES), ("plain view", PLAIN)):
                c, t = cpu(), wall()
                store.get_online_features(feats, k)
                times[label].append(wall() - t)
                times[label + " cpu"].append(cpu() - c)
        gc.callbacks.pop()
        store.close()
    out = {}
    for label, ts in times.items():
        ts.sort()
        out[label] = (ts[len(ts) // 2] / 1000, ts[int(len(ts) * 0.9)] / 1000,
                      ts[int(len(ts) * 0.99)] / 1000)
    print(f"  {collections[0]} GC collections during {2 * len(keys)} reads")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--entities", type=int, default=2000)
    ap.add_argument("--per-entity", type=int, default=50)
    ap.add_argument("--reads", type=int, default=20000)
    ap.add_argument("--redis", default=None, help="Also measure on this Redis (redis://...).")
    args = ap.parse_args()
    backends = [("sqlite", "sqlite:///data/online.sqlite")]
    if args.redis:
        sep = "&" if "?" in args.redis else "?"
        backends.append(("redis", f"{args.redis}{sep}prefix=bench-{uuid.uuid4().hex[:8]}"))
    print(f"{args.entities} entities x {args.per_entity} rows over 2 days; 1 entity x 3"
          " aggregated features per read")
    for name, url in backends:
        try:
            results = bench(url, args.entities, args.per_entity, args.reads)
        finally:
            if name == "redis":
                import redis

                client = redis.Redis.from_url(url.split("?")[0])
                prefix = url.split("prefix=")[1]
                keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
                if keys:
                    client.unlink(*keys)
        for label, (p50, p90, p99) in results.items():
            print(f"{name:>6} {label:>14}: p50 {p50:7.1f} us   p90 {p90:7.1f} us"
                  f"   p99 {p99:7.1f} us")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
