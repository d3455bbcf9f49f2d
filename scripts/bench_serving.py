"""Serving speed: in-process reads, HTTP reads at several concurrencies, HTTP push.

    python scripts/bench_serving.py [--seconds 3] [--entities 10000] [--redis URL]

Measures, on SQLite and on Redis:

- in-process ``FeatureStore.get_online_features`` for 1 entity x 10 features (p50/p99 us),
  beside the bare baselines: a SQLite point SELECT of the same row and a redis-py GET of
  the same key, with the ratios;
- ``POST /get-online-features`` (1 entity x 10 features) p50/p99 and requests/s at 1, 8
  and 32 concurrent keep-alive clients on loopback (server in a subprocess, a minimal
  asyncio HTTP/1.1 client in this one, each level run for ``--seconds``);
- ``POST /push`` rows/s (batches of 500 rows, one client).

Targets (2-core machine): in-process SQLite read p99 < 100 us; HTTP p99 < 5 ms at 8 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, however it is installed

from asof_stream import FeatureStore  # noqa: E402
from asof_stream.online.redis import RedisOnlineStore, split_url  # noqa: E402

FEATURES = [f"f{i}" for i in range(10)]
TOML = """
[store]
offline = "data/offline.sqlite"
online = "{online}"

[entities.user]
join_keys = {{ user_id = "string" }}

[views.user_stats]
entity = "user"
features = {{ {features} }}
"""


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def timed(fn: Callable[[int], Any], n: int) -> list[float]:
    """Per-call latency in microseconds for n calls (after a warm-up)."""
    for i in range(min(1000, n)):
        fn(i)
    out = []
    clock = time.perf_counter_ns
    for i in range(n):
        t = clock()
        fn(i)
        out.append((clock() - t) / 1000)
    return out


def make_project(root: Path, online: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    feats = ", ".join(f'{f} = "float64"' for f in FEATURES)
    path = root / "asof.toml"
    path.write_text(TOML.format(online=online, features=feats))
    return path


def seed(config_path: Path, entities: int) -> None:
    rng = random.Random(1)
    now = int(time.time())
    with FeatureStore(config_path) as store:
        for start in range(0, entities, 2000):
            rows = [{"user_id": f"u{i}", "event_timestamp": now - rng.randrange(3600),
                     **{f: rng.random() for f in FEATURES}}
                    for i in range(start, min(entities, start + 2000))]
            r = store.push(rows, view="user_stats")
            assert r.rejected == 0, r.rejects[:3]


def bench_in_process(config_path: Path, entities: int, n: int) -> list[float]:
    refs = [f"user_stats:{f}" for f in FEATURES]
    rows = [[{"user_id": f"u{random.randrange(entities)}"}] for _ in range(1024)]
    with FeatureStore(config_path) as store:
        _ = store.stores  # open before timing

        def call(i: int) -> None:
            out = store.get_online_features(refs, rows[i & 1023])
            assert out["__statuses__"][0]["f0"][0] == "PRESENT"

        return timed(call, n)


def bench_bare_sqlite(db: Path, entities: int, n: int) -> list[float]:
    conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA cache_size = -65536")
    keys = [f"u{random.randrange(entities)}" for _ in range(1024)]
    sql = ("SELECT entity, event_timestamp, seq, ingest_ts, features FROM online"
           " WHERE view = ? AND entity = ?")

    def call(i: int) -> None:
        row = conn.execute(sql, ("user_stats", keys[i & 1023])).fetchone()
        assert row is not None

    try:
        return timed(call, n)
    finally:
        conn.close()


def bench_bare_redis(url: str, entities: int, n: int) -> list[float]:
    store = RedisOnlineStore(url)  # only to learn the live key names
    gen = store.client.get(store.prefix + "gen") or b"0"
    keys = [f"{store.prefix}{gen.decode()}:r:user_stats:u{random.randrange(entities)}"
            for _ in range(1024)]
    store.close()
    client = redis.Redis.from_url(split_url(url)[0])

    def call(i: int) -> None:
        assert client.get(keys[i & 1023]) is not None

    try:
        return timed(call, n)
    finally:
        client.close()


# -- HTTP -------------------------------------------------------------------------------


def start_server(config_path: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-m", "asof_stream", "serve", "--config",
                             str(config_path), "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = re.search(r":(\d+)\s*$", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"server did not start: {line}{proc.stderr.read()}")
    return proc, int(m.group(1))


def _request(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> bytes:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    assert m, head
    body = await reader.readexactly(int(m.group(1)))
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode() + body.decode())
    return body


async def http_load(port: int, requests: list[bytes], clients: int,
                    seconds: float) -> tuple[list[float], float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    async def client(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        try:
            await _one(reader, writer, requests[i % len(requests)])  # warm the connection
            while time.perf_counter() < deadline:
                i += clients
                t = time.perf_counter_ns()
                await _one(reader, writer, requests[i % len(requests)])
                latencies.append((time.perf_counter_ns() - t) / 1000)
        finally:
            writer.close()

    await asyncio.gather(*(client(k) for k in range(clients)))
    return latencies, time.perf_counter() - started


def bench_http(config_path: Path, entities: int, seconds: float) -> dict[str, Any]:
    proc, port = start_server(config_path)
    try:
        reads = [_request("/get-online-features", json.dumps({
            "features": [f"user_stats:{f}" for f in FEATURES],
            "entities": {"user_id": [f"u{random.randrange(entities)}"]}}).encode())
            for _ in range(256)]
        body = json.loads(asyncio.run(_single(port, reads[0])))
        assert body["results"][1]["statuses"] == ["PRESENT"], body
        out: dict[str, Any] = {}
        for clients in (1, 8, 32):
            lat, elapsed = asyncio.run(http_load(port, reads, clients, seconds))
            out[f"read c={clients}"] = (pct(lat, 0.5), pct(lat, 0.99), len(lat) / elapsed)
        now = int(time.time())
        pushes = []
        for b in range(64):
            ids = [f"p{b}-{i}" for i in range(500)]
            df: dict[str, Any] = {"user_id": ids, "event_timestamp": [now] * 500}
            for f in FEATURES:
                df[f] = [0.5] * 500
            pushes.append(_request("/push", json.dumps({"view": "user_stats", "df": df}).encode()))
        lat, elapsed = asyncio.run(http_load(port, pushes, 1, seconds))
        out["push rows/s"] = (pct(lat, 0.5), pct(lat, 0.99), len(lat) * 500 / elapsed)
        return out
    finally:
        proc.terminate()
        proc.wait(30)


async def _single(port: int, req: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await _one(reader, writer, req)
    finally:
        writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="per HTTP load level")
    ap.add_argument("--entities", type=int, default=10000)
    ap.add_argument("--calls", type=int, default=20000, help="in-process calls per measurement")
    ap.add_argument("--redis", default=os.environ.get("ASOF_TEST_REDIS", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    redis_url = f"{args.redis}{'&' if '?' in args.redis else '?'}prefix={prefix}"
    rows: list[tuple[str, str, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="asof-bench-") as tmp:
        sqlite_cfg = make_project(Path(tmp) / "sqlite", "sqlite:///data/online.sqlite")
        redis_cfg = make_project(Path(tmp) / "redis", redis_url)
        try:
            for cfg in (sqlite_cfg, redis_cfg):
                seed(cfg, args.entities)
            sq = bench_in_process(sqlite_cfg, args.entities, args.calls)
            bare_sq = bench_bare_sqlite(sqlite_cfg.parent / "data" / "online.sqlite",
                                        args.entities, args.calls)
            rd = bench_in_process(redis_cfg, args.entities, args.calls)
            bare_rd = bench_bare_redis(redis_url, args.entities, args.calls)
            for label, s in (("in-process get_online_features, SQLite", sq),
                             ("bare SQLite point SELECT", bare_sq),
                             ("in-process get_online_features, Redis", rd),
                             ("bare redis-py GET", bare_rd)):
                rows.append((label, "1x10", pct(s, 0.5), pct(s, 0.99),
                             f"{1e6 / statistics.fmean(s):,.0f}/s"))
            ratios = (f"ratio SQLite p50 {pct(sq, .5) / pct(bare_sq, .5):.1f}x, "
                      f"p99 {pct(sq, .99) / pct(bare_sq, .99):.1f}x; "
                      f"Redis p50 {pct(rd, .5) / pct(bare_rd, .5):.2f}x, "
                      f"p99 {pct(rd, .99) / pct(bare_rd, .99):.2f}x")
            for name, cfg in (("SQLite", sqlite_cfg), ("Redis", redis_cfg)):
                for label, (p50, p99, rate) in bench_http(cfg, args.entities, args.seconds).items():
                    unit = "rows/s" if label.startswith("push") else "req/s"
                    rows.append((f"HTTP {label}, {name}", "1x10" if "read" in label else "500 rows",
                                 p50, p99, f"{rate:,.0f} {unit}"))
        finally:
            client = redis.Redis.from_url(args.redis)
            keys = list(client.scan_iter(match=prefix + ":*", count=1000))
            if keys:
                client.unlink(*keys)
            client.close()
    print(f"\n{'what':<46} {'shape':<9} {'p50 us':>10} {'p99 us':>10}  throughput")
    for label, shape, p50, p99, rate in rows:
        print(f"{label:<46} {shape:<9} {p50:>10.1f} {p99:>10.1f}  {rate}")
    print(ratios)
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.entities} entities,"
          f" {args.seconds:g}s per HTTP level)")


if __name__ == "__main__":
    main()
