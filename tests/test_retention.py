from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.ingest.sources.base import Record
from asof_stream.offline.retention import apply_retention
from asof_stream.online.materialize import materialize
from asof_stream.stores import open_stores


def load(config: Config) -> None:
    with open_stores(config) as s:
        recs = [Record(json.dumps({"view": "customer_stats", "customer_id": f"c{i % 3}",
                                   "event_timestamp": 1000 + i, "orders_7d": i}).encode(), str(i))
                for i in range(12)]
        s.committer().commit("t", recs)


def online_rows(config: Config) -> set[tuple[str, int, str]]:
    with open_stores(config) as s:
        return {(r.entity, r.seq, r.features) for r in s.online.entries()}


def test_retention_keeps_latest_rows_so_materialize_is_unchanged(config: Config) -> None:
    load(config)
    before = online_rows(config)
    with open_stores(config) as s:
        dry = apply_retention(s.log, "customer_stats", (1000 + 100) * 10**6, dry_run=True)
        assert (dry.deleted, dry.kept) == (9, 3)
        assert s.log.max_seq() == 12
        r = apply_retention(s.log, "customer_stats", (1000 + 100) * 10**6)
        assert (r.deleted, r.kept) == (9, 3)
        assert s.log.view_stats()["customer_stats"]["rows"] == 3
        assert s.log.view_stats()["customer_stats"]["earliest_event_timestamp"] == 1009 * 10**6
        materialize(s.log, s.online)
    assert online_rows(config) == before


def test_retention_cli(config: Config, tmp_path: Path) -> None:
    load(config)
    cfg = str(tmp_path / "asof.toml")
    runner = CliRunner()
    for args, message in [
        ([], "exactly one of"),
        (["--before", "x"], "--before"),
        (["--older-than", "1y"], "--older-than"),
        (["--before", "1", "--view", "nope"], "unknown view 'nope'"),
    ]:
        r = runner.invoke(main, ["retention", *args, "--config", cfg])
        assert r.exit_code != 0 and message in r.output, r.output
    r = runner.invoke(main, ["retention", "--before", "1005", "--view", "customer_stats",
                             "--drop-latest", "--yes", "--config", cfg])
    assert r.exit_code == 0, r.output
    assert "customer_stats: deleted 5 rows, 7 remain" in r.output
    r = runner.invoke(main, ["retention", "--before", "2000", "--config", cfg], input="n\n")
    assert r.exit_code != 0 and "nothing deleted" in r.output
