"""Commands over partition shards give what the same command gives on one flat log
holding the same events (docs/scaling.md)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.offline.log import open_log
from asof_stream.offline.shards import (
    Router,
    existing_shards,
    partition_count,
    partition_of,
    shard_name,
)
from asof_stream.timestamps import to_iso
from tests.daemon_checks import wait_for
from tests.fixtures_kafka import Broker, event
from tests.shard_builders import commit_both, routed, twin_projects


def log_rows(config: Config) -> list[tuple[str, int, int]]:
    """(entity, event_timestamp, orders_7d) of every log row, flat or over every shard."""
    paths = list(existing_shards(config).values()) if config.defs.store.shards == "partition" \
        else [config.offline_path]
    out = []
    for path in paths:
        conn = sqlite3.connect(path)
        try:
            out += [(e, ts, json.loads(f)["orders_7d"]) for e, ts, f in conn.execute(
                "SELECT entity, event_timestamp, features FROM log")]
        finally:
            conn.close()
    return sorted(out)


def cli(config: Config, *args: str) -> str:
    r = CliRunner().invoke(main, [*args, "--config", str(config.path)])
    assert r.exit_code == 0, r.output
    return r.output


def test_retention_over_shards_matches_one_log(tmp_path: Path, redis_url: str) -> None:
    sharded, flat = twin_projects(tmp_path, redis_url)
    commit_both(sharded, flat, [event(i, keys=20) for i in range(300)])
    assert len(existing_shards(sharded)) == 3
    assert log_rows(sharded) == log_rows(flat)
    cutoff = to_iso((1_767_600_000 + 2500) * 1_000_000)
    dry = cli(sharded, "retention", "--before", cutoff, "--dry-run").splitlines()[0]
    assert dry == cli(flat, "retention", "--before", cutoff, "--dry-run").splitlines()[0]
    before = log_rows(sharded)
    out_s = cli(sharded, "retention", "--before", cutoff, "--yes")
    out_f = cli(flat, "retention", "--before", cutoff, "--yes")
    assert out_s.splitlines()[0] == out_f.splitlines()[0]
    assert "deleted" in out_s and " 0 rows" not in out_s.splitlines()[0]
    after = log_rows(sharded)
    assert after == log_rows(flat) and len(after) < len(before)
    # Each shard recorded its own share of the run, in its own transaction.
    shares = 0
    for path in existing_shards(sharded).values():
        conn = sqlite3.connect(path)
        try:
            runs = list(conn.execute("SELECT view, deleted FROM retention_runs"))
        finally:
            conn.close()
        assert runs and all(v == "customer_stats" for v, _ in runs)
        shares += sum(d for _, d in runs)
    assert shares == len(before) - len(after)


def _add_discount(config: Config) -> None:
    config.path.write_text(config.path.read_text().replace(
        'tier = "string" }', 'tier = "string", discount = "float64" }'))


def test_dead_letters_over_shards_match_one_log(tmp_path: Path, redis_url: str) -> None:
    sharded, flat = twin_projects(tmp_path, redis_url)
    events = [event(i, keys=20, **({"discount": 1.5} if i % 7 == 0 else {}))
              for i in range(70)]
    commit_both(sharded, flat, events)

    def listed(config: Config, *args: str) -> dict[str, Any]:
        return json.loads(cli(config, "dead-letters", "--json", *args))

    got, want = listed(sharded), listed(flat)
    assert (got["count"], got["open"]) == (want["count"], want["open"]) == (10, 10)

    def seen(d: dict[str, Any]) -> tuple[object, ...]:
        return d["source"], d["position"], d["reason"], d["raw_preview"]

    assert sorted(map(seen, got["dead_letters"])) == sorted(map(seen, want["dead_letters"]))
    assert len({d["shard"] for d in got["dead_letters"]}) > 1
    for d in got["dead_letters"]:  # each names the shard of its partition
        assert d["shard"] == shard_name(partition_of(d["position"]))
    times = [d["time"] for d in got["dead_letters"]]
    assert times == sorted(times, reverse=True)  # newest first across shards
    assert len(listed(sharded, "--limit", "3")["dead_letters"]) == 3
    assert "[shard p000" in cli(sharded, "dead-letters")

    # Fixed definitions: the re-queue passes per shard exactly as on one log.
    for config in (sharded, flat):
        _add_discount(config)
    requeue = cli(sharded, "dead-letters", "--requeue", "--json")
    assert requeue == cli(flat, "dead-letters", "--requeue", "--json")
    assert json.loads(requeue)["requeued"] == 10
    assert log_rows(sharded) == log_rows(flat)
    assert listed(sharded)["count"] == 0 == listed(flat)["count"]

    # A letter whose entity routes to another shard stays a dead letter, saying why.
    misrouted_ev = event(5, keys=20, discount=2.0)
    records, _ = routed([misrouted_ev], 3)
    home = partition_of(records[0].position)
    wrong = (home + 1) % 3
    with open_log(existing_shards(sharded)[wrong]) as log:
        log.conn.execute("INSERT INTO dead_letters (source, position, raw, reason, error_ts)"
                         " VALUES (?, ?, ?, ?, ?)", ("k", f"t/{wrong}@999", misrouted_ev,
                                                      "unknown field(s) ['discount']", 1))
        log.conn.commit()
    again = json.loads(cli(sharded, "dead-letters", "--requeue", "--json"))
    assert (again["requeued"], again["still_bad"]) == (0, 1)
    (letter,) = listed(sharded)["dead_letters"]
    assert letter["shard"] == shard_name(wrong) and "misrouted" in letter["reason"]


def dead_letter_raws(config: Config) -> list[bytes]:
    paths = list(existing_shards(config).values()) if config.defs.store.shards == "partition" \
        else [config.offline_path]
    out: list[bytes] = []
    for path in paths:
        with open_log(path, readonly=True) as log:
            out += [bytes(r) for (r,) in log.conn.execute("SELECT raw FROM dead_letters")]
    return sorted(out)


def assert_routed(config: Config, partitions: int = 3) -> None:
    """Every shard holds only the entities murmur2 routes to it; no misrouted letters."""
    route = Router(partitions)
    for p, path in existing_shards(config).items():
        with open_log(path, readonly=True) as log:
            assert all(route(e) == p for (e,) in log.conn.execute("SELECT entity FROM log"))
            assert not list(log.conn.execute(
                "SELECT 1 FROM dead_letters WHERE reason LIKE 'misrouted%'"))


def _lines(start: int, n: int) -> bytes:
    body = b""
    for i in range(start, start + n):
        body += (b"not json" if i % 50 == 3 else event(i, keys=37)) + b"\n"
    return body


def test_replay_file_over_shards_routes_and_resumes(tmp_path: Path, redis_url: str) -> None:
    sharded, flat = twin_projects(tmp_path, redis_url)
    commit_both(sharded, flat, [event(i, keys=5) for i in range(10)])  # the shards exist
    data = tmp_path / "events.jsonl"
    data.write_bytes(_lines(1000, 400))
    for config in (sharded, flat):
        cli(config, "replay", str(data), "--batch-size", "23")
    assert log_rows(sharded) == log_rows(flat)
    assert dead_letter_raws(sharded) == dead_letter_raws(flat) != []
    assert_routed(sharded)
    # Again: nothing twice. Appended lines: only they are stored.
    assert "stored 0" in cli(sharded, "replay", str(data)).replace(",", "")
    with data.open("ab") as fh:
        fh.write(_lines(1400, 90))
    for config in (sharded, flat):
        cli(config, "replay", str(data), "--batch-size", "23")
    assert log_rows(sharded) == log_rows(flat) and len(log_rows(flat)) == 10 + 400 + 90 - 10
    assert dead_letter_raws(sharded) == dead_letter_raws(flat)


def test_replay_file_over_shards_killed_midway_is_exactly_once(tmp_path: Path,
                                                              redis_url: str) -> None:
    sharded, flat = twin_projects(tmp_path, redis_url)
    commit_both(sharded, flat, [event(i, keys=5) for i in range(10)])
    data = tmp_path / "events.jsonl"
    data.write_bytes(_lines(1000, 6000))
    cmd = [sys.executable, "-m", "asof_stream", "replay", str(data), "--batch-size", "3",
           "--config", str(sharded.path)]
    for _ in range(2):  # killed twice, somewhere in the middle
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = len(log_rows(sharded))
        wait_for("replay progress", lambda start=start: len(log_rows(sharded)) > start + 30)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(log_rows(sharded)) < 10 + 6000 - 120  # it was stopped midway
    cli(sharded, "replay", str(data))
    cli(flat, "replay", str(data))
    assert log_rows(sharded) == log_rows(flat)
    assert dead_letter_raws(sharded) == dead_letter_raws(flat)
    assert_routed(sharded)


def test_replay_kafka_over_shards_routes_by_the_live_partition_count(
        kafka_broker: Broker, tmp_path: Path, redis_url: str) -> None:
    live = kafka_broker.create_topic(3, "live")
    backfill = kafka_broker.create_topic(2, "backfill")  # split unlike the live topic
    source = (f'\n[sources.live]\nkind = "kafka"\nbootstrap = "{kafka_broker.bootstrap}"\n'
              f'topics = ["{live}"]\ngroup = ""\n')
    sharded, flat = twin_projects(tmp_path, redis_url)
    sharded.path.write_text(sharded.path.read_text() + source)
    events = [b"not json" if i % 40 == 7 else event(i, keys=31) for i in range(300)]
    kafka_broker.produce(backfill, events, partitions=2)  # round-robin: not by key
    args = ["replay", "--kafka", backfill, "--from-offset", "0", "--batch-size", "17",
            "--bootstrap", kafka_broker.bootstrap]
    cli(sharded, *args)
    cli(flat, *args)
    assert partition_count(sharded) == 3 and len(existing_shards(sharded)) == 3
    assert log_rows(sharded) == log_rows(flat) and len(log_rows(flat)) == 300 - 8
    assert dead_letter_raws(sharded) == dead_letter_raws(flat)
    assert_routed(sharded)
    assert "stored 0" in cli(sharded, *args).replace(",", "")  # positions per shard
    kafka_broker.produce(backfill, [event(i, keys=31) for i in range(300, 340)], partitions=2)
    cli(sharded, *args)
    cli(flat, *args)
    assert log_rows(sharded) == log_rows(flat) and len(log_rows(flat)) == 300 - 8 + 40
