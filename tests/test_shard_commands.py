"""Commands over partition shards give what the same command gives on one flat log
holding the same events (docs/scaling.md)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.offline.shards import existing_shards
from asof_stream.timestamps import to_iso
from tests.fixtures_kafka import event
from tests.shard_builders import commit_both, twin_projects


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
