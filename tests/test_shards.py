"""Partition shards (contract section 12): routing, config checks, and two daemons in one
group over a real broker and the real Redis, one SIGKILLed mid-stream."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from asof_stream import FeatureStore
from asof_stream.cli import main
from asof_stream.config import ConfigError, load_config, parse_config
from asof_stream.offline.log import OfflineLog
from asof_stream.offline.shard_union import ShardUnion
from asof_stream.offline.shards import Router, partition_for
from asof_stream.online.redis import RedisOnlineStore
from tests.daemon_checks import daemon_group, kafka_project, latest_assignment, new_group, wait_for
from tests.fixtures_kafka import Broker, event, run_cli

TOPIC_PARTITIONS = 3


def test_partitioner_is_kafkas_default() -> None:
    # Java Kafka's murmur2 partitioner over 1000 partitions (kafka-python's reference values).
    for key, want in [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107),
                      (b"123456789", 566), (b"\x00 ", 742)]:
        assert partition_for(key.decode(), 1000) == want
    from aiokafka.partitioner import DefaultPartitioner

    rng = random.Random(3)
    route = Router(7)
    parts = list(range(7))
    for _ in range(2000):
        key = "".join(rng.choice("abcxyz0123é") for _ in range(rng.randint(0, 12)))
        want = DefaultPartitioner()(key.encode(), parts, parts)
        assert partition_for(key, 7) == want == route(key) == route(key)


SHARDED = """
[store]
offline = "data/offline.sqlite"
online = "%s"
shards = "partition"

[entities.customer]
join_keys = { customer_id = "string" }

[views.customer_stats]
entity = "customer"
features = { spend_7d = "float64", orders_7d = "int64", tier = "string" }
"""


def test_sharded_config_needs_redis_and_kafka(tmp_path: Path) -> None:
    path = tmp_path / "asof.toml"
    with pytest.raises(ConfigError, match="store.online: shards = 'partition' needs a Redis"):
        parse_config(SHARDED % "sqlite:///data/online.sqlite", path)
    with pytest.raises(ConfigError, match="sources.f.kind: shards = 'partition' shards by Kafka"):
        parse_config(SHARDED % "redis://127.0.0.1:6379/0"
                     + '[sources.f]\nkind = "file"\npath = "e/*.jsonl"\n', path)
    # A command that reads one log says so instead of creating a stray file.
    path.write_text(SHARDED % "redis://127.0.0.1:6379/0")
    r = CliRunner().invoke(main, ["compact", "--config", str(path)])
    assert r.exit_code != 0
    assert "store.shards = 'partition' keeps one log per Kafka partition" in r.output
    assert not (tmp_path / "data" / "offline.sqlite").exists()


def test_union_of_no_shards_has_the_logs_tables(tmp_path: Path) -> None:
    """Before any shard has data the union is the log's own tables, empty."""
    path = tmp_path / "asof.toml"
    path.write_text(SHARDED % "redis://127.0.0.1:6379/0")
    config = load_config(path)
    with ShardUnion(config) as union, OfflineLog(tmp_path / "one.sqlite") as one:
        assert union.path == tmp_path / "data" / "offline.shards"
        for table in ("log", "positions", "dead_letters", "view_stats"):
            sql = f"SELECT name, type, \"notnull\", pk FROM pragma_table_info('{table}')"
            assert list(union.conn.execute(sql)) == list(one.conn.execute(sql)), table
        assert (union.view_stats(), union.positions(), union.max_seq()) == ({}, {}, 0)
        assert union.dead_letter_count() == 0 and list(union.latest_rows()) == []
        assert not union.has_tiers()


async def _produce_keyed(bootstrap: str, topic: str, events: list[bytes]) -> None:
    """Keyed by customer_id through aiokafka's default (murmur2) partitioner."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for value in events:
            key = json.loads(value)["customer_id"].encode()
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def _produce_to(bootstrap: str, topic: str, value: bytes, partition: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"c1", partition=partition)
    finally:
        await producer.stop()


def shard_rows(folder: Path) -> dict[str, list[tuple[str, int, int, str]]]:
    """Per shard file: (entity, event_timestamp, orders_7d, features) of every log row."""
    out = {}
    for path in sorted((folder / "data" / "offline.shards").glob("p*.sqlite")):
        conn = sqlite3.connect(path)
        try:
            out[path.stem] = [(e, ts, json.loads(f)["orders_7d"], f) for e, ts, f in conn.execute(
                "SELECT entity, event_timestamp, features FROM log")]
        finally:
            conn.close()
    return out


def shard_table(folder: Path, sql: str) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    for path in sorted((folder / "data" / "offline.shards").glob("p*.sqlite")):
        conn = sqlite3.connect(path)
        try:
            out[path.stem] = list(conn.execute(sql))
        finally:
            conn.close()
    return out


def test_two_sharded_daemons_one_killed(kafka_broker: Broker, redis_url: str,
                                        tmp_path: Path) -> None:
    topic, config = kafka_project(kafka_broker, tmp_path, "shard", partitions=TOPIC_PARTITIONS,
                                  group=new_group(), batch_size=200, batch_timeout_ms=50)
    text = config.read_text()
    config.write_text(text.replace('online = "sqlite:///data/online.sqlite"',
                                   f'online = "{redis_url}"\nshards = "partition"'))
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    # c1 belongs in partition partition_for("c1", 3); one event sent elsewhere is refused.
    wrong = (partition_for("c1", TOPIC_PARTITIONS) + 1) % TOPIC_PARTITIONS
    misrouted = event(10**6, customer_id="c1")
    asyncio.run(_produce_to(kafka_broker.bootstrap, topic, misrouted, wrong))
    sent = [0]
    producing = threading.Event()
    producing.set()

    def producer() -> None:
        while producing.is_set() and sent[0] < 4800:
            batch = [event(i) for i in range(sent[0], sent[0] + 80)]
            asyncio.run(_produce_keyed(kafka_broker.bootstrap, topic, batch))
            sent[0] += 80
            time.sleep(0.05)

    t = threading.Thread(target=producer)
    with daemon_group(config, logs, TOPIC_PARTITIONS) as daemons:
        t.start()
        try:
            wait_for("a commit in every shard", lambda: len(shard_rows(tmp_path)) == 3 and all(
                shard_rows(tmp_path).values()))
            time.sleep(0.5)
            daemons[0].send_signal(signal.SIGKILL)  # mid-stream, mid-batch perhaps
            daemons[0].wait(10)
            at_kill = sent[0]
            wait_for("the survivor to own every partition",
                     lambda: latest_assignment(logs[1])
                     == {f"{topic}/{p}" for p in range(TOPIC_PARTITIONS)})
        finally:
            producing.clear()
            if t.is_alive():
                t.join()
        total = sent[0]
        assert at_kill < total, "the producer should still be running when a daemon dies"
        wait_for("every event to land", lambda: sum(
            len(r) for r in shard_rows(tmp_path).values()) >= total, 60)
        time.sleep(0.5)
        daemons[1].send_signal(signal.SIGTERM)
        assert daemons[1].wait(30) == 0

    rows = shard_rows(tmp_path)
    assert set(rows) == {"p0000", "p0001", "p0002"}
    # Exactly once across shards, each entity's history in the shard of its partition.
    counts = Counter(o for shard in rows.values() for _, _, o, _ in shard)
    assert sorted(k for k, n in counts.items() if n > 1) == []
    assert set(counts) == set(range(total))
    for name, shard in rows.items():
        assert {partition_for(e, TOPIC_PARTITIONS) for e, _, _, _ in shard} == {int(name[1:])}
    # Each shard's positions are its own partition's, and sum to what was produced.
    positions = shard_table(tmp_path, "SELECT key, next_offset FROM positions")
    for name, pos in positions.items():
        assert [k for k, _ in pos] == [f"{topic}/{int(name[1:])}"]
    assert sum(n for pos in positions.values() for _, n in pos) == total + 1
    dead = shard_table(tmp_path, "SELECT raw, reason FROM dead_letters")
    assert dead[f"p{wrong:04d}"] == [(misrouted, dead[f"p{wrong:04d}"][0][1])]
    assert "misrouted" in str(dead[f"p{wrong:04d}"][0][1])
    assert sum(len(d) for d in dead.values()) == 1

    # I1 over shards: the shared Redis store holds the newest row of every entity.
    newest: dict[str, tuple[int, str]] = {}
    for shard in rows.values():
        for e, ts, _, f in shard:
            if e not in newest or ts > newest[e][0]:
                newest[e] = (ts, f)
    store = RedisOnlineStore(redis_url)
    try:
        online = {r.entity: (r.event_ts, r.features) for r in store.entries("customer_stats")}
    finally:
        store.close()
    assert online == newest

    # status --json adds the shards up.
    st = json.loads(run_cli("status", "--json", "--config", str(config)).stdout)
    assert st["views"]["customer_stats"]["rows"] == total
    assert st["views"]["customer_stats"]["online_rows"] == len(newest)
    assert st["dead_letters"] == 1 and st["partitions"] == 3 and set(st["shards"]) == set(rows)
    assert set(st["sources"]["events"]["positions"]) == {f"{topic}/{p}" for p in range(3)}
    assert all(v["online_applied_seq"] == v["max_seq"] for v in st["shards"].values())

    _check_serving(config, newest, total)
    _check_training_sets(tmp_path, config, rows, total)


def _check_serving(config_path: Path, newest: dict[str, tuple[int, str]], total: int) -> None:
    """The feature server and the read-only commands over the shards."""
    import httpx

    from tests.server_helpers import running_server

    config = load_config(config_path)
    some = sorted(newest)[:5]
    with running_server(config) as url:
        assert httpx.get(url + "/health").status_code == 200
        r = httpx.post(url + "/get-online-features", json={
            "features": ["customer_stats:orders_7d"], "entities": {"customer_id": some}})
        assert r.status_code == 200, r.text
        got = r.json()["results"][1]["values"]
        assert got == [json.loads(newest[e][1])["orders_7d"] for e in some]
        r = httpx.post(url + "/push", json={"view": "customer_stats", "df": {
            "customer_id": ["c1"], "event_timestamp": [1], "orders_7d": [1]}})
        assert r.status_code == 409 and "produce them to Kafka" in r.text
        metrics = httpx.get(url + "/metrics").text
        assert 'view="customer_stats"' in metrics
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "customer_stats" in page.text
    features = json.loads(run_cli("features", "--json", "--config", str(config_path)).stdout)
    assert {f["rows"] for f in features} == {total}
    text = run_cli("status", "--config", str(config_path))
    assert text.returncode == 0 and "shard p0000: seq" in text.stdout
    fresh = run_cli("freshness", "--json", "--config", str(config_path))
    assert "customer_stats" in fresh.stdout


def _check_training_sets(tmp_path: Path, config: Path, rows: dict[str, list[tuple[str, int, int, str]]],
                         total: int) -> None:
    """The sharded training set (1 and 2 jobs) equals the one join over the same events
    in one unsharded log."""
    rng = random.Random(5)
    labels = tmp_path / "labels.csv"
    lines = ["customer_id,event_timestamp,label"]
    for i in range(600):
        lines.append(f"c{rng.randrange(55)},{1_767_600_000 + rng.randrange(-100, 5200)},{i % 2}")
    labels.write_text("\n".join(lines) + "\n")
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"sharded-{jobs}.csv"
        r = run_cli("training-set", "--config", str(config), "--labels", str(labels),
                    "--features", "customer_stats", "--out", str(out), "--jobs", jobs)
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]

    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "asof.toml").write_text(SHARDED.replace('shards = "partition"\n', "")
                                    % "sqlite:///data/online.sqlite")
    with FeatureStore(flat / "asof.toml") as store:
        events = [dict(json.loads(f), customer_id=e, event_timestamp=ts // 10**6)
                  for shard in rows.values() for e, ts, _, f in shard]
        rng.shuffle(events)
        assert store.push(events).stored == total
    r = run_cli("training-set", "--config", str(flat / "asof.toml"), "--labels", str(labels),
                "--features", "customer_stats", "--out", str(flat / "one.csv"))
    assert r.returncode == 0, r.stderr
    assert outs[0] == (flat / "one.csv").read_bytes()
    assert outs[0].count(b"\n") == 601 and b",gold" in outs[0]

    # The sidecar records each shard's mark, and a rebuild is byte-identical.
    side = json.loads((tmp_path / "sharded-1.csv.json").read_text())
    assert set(side["shard_high_water"]) == set(rows)
    r = run_cli("rebuild", str(tmp_path / "sharded-1.csv.json"), "--config", str(config),
                "--out", str(tmp_path / "again.csv"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "again.csv").read_bytes() == outs[0]
    assert load_config(config).defs.store.shards == "partition"
