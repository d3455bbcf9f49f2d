"""Commands over partition shards give what the same command gives on one flat log
holding the same events (docs/scaling.md)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.offline.log import open_log
from asof_stream.offline.shards import existing_shards, partition_of, shard_name
from asof_stream.timestamps import to_iso
from tests.fixtures_kafka import event
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
