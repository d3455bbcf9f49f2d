from __future__ import annotations

import json
from pathlib import Path

import pytest
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


DAY = 86_400


def _recent_history(config: Config) -> Path:
    """c1 rows 40, 30 and 1 days ago; labels 25 days ago (sees the 30-day-old row) and now."""
    from asof_stream import FeatureStore
    from asof_stream.timestamps import now_micros, to_iso

    now = now_micros() // 10**6
    with FeatureStore(config) as store:
        assert store.push([{"view": "customer_stats", "customer_id": "c1",
                            "event_timestamp": now - age * DAY, "orders_7d": age}
                           for age in (40, 30, 1)]).stored == 3
    labels = config.root / "labels.csv"
    labels.write_text("customer_id,event_timestamp\n"
                      f"c1,{to_iso((now - 25 * DAY) * 10**6)}\nc1,{to_iso(now * 10**6)}\n")
    return labels


def test_retention_runs_are_recorded(config: Config) -> None:
    from asof_stream.offline.log import open_log

    _recent_history(config)
    r = CliRunner().invoke(main, ["retention", "--older-than", "20d", "--yes",
                                  "--config", str(config.path)])
    assert r.exit_code == 0, r.output
    with open_log(config.offline_path, readonly=True) as log:
        rows = log.conn.execute("SELECT view, deleted, min_seq, max_seq, keep_latest, cutoff,"
                                " run_ts FROM retention_runs ORDER BY view").fetchall()
    assert [row[:5] for row in rows] == [("customer_stats", 2, 1, 2, 1), ("merchant_risk", 0, None, None, 1)]
    cutoff, run_ts = rows[0][5:]
    assert run_ts - cutoff == pytest.approx(20 * DAY * 10**6, abs=120 * 10**6)


def test_rebuild_after_retention_refuses_naming_the_run(config: Config) -> None:
    labels = _recent_history(config)
    out = config.root / "train.csv"
    cfg = ["--config", str(config.path)]
    runner = CliRunner()
    r = runner.invoke(main, ["training-set", "--labels", str(labels), "--features",
                             "customer_stats:orders_7d", "--out", str(out), *cfg])
    assert r.exit_code == 0, r.output
    original = out.read_text()
    assert original.splitlines()[1].endswith(",30")
    assert runner.invoke(main, ["rebuild", f"{out}.json", *cfg]).exit_code == 0
    assert out.read_text() == original
    r = runner.invoke(main, ["retention", "--older-than", "20d", "--yes", *cfg])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["rebuild", f"{out}.json", *cfg])
    assert r.exit_code != 0
    msg = r.stderr
    assert "cannot rebuild exactly: retention run at " in msg and "(cutoff " in msg, msg
    assert "deleted 2 rows of view customer_stats (seq 1..2)" in msg and "--allow-partial" in msg
    assert len(msg.strip().splitlines()) == 1
    assert out.read_text() == original
    r = runner.invoke(main, ["rebuild", f"{out}.json", "--allow-partial", *cfg])
    assert r.exit_code == 0, r.stderr
    assert "partial rebuild: retention run at" in r.stderr
    assert out.read_text() != original


def test_retention_before_the_build_does_not_block_rebuild(config: Config) -> None:
    labels = _recent_history(config)
    out = config.root / "train.csv"
    cfg = ["--config", str(config.path)]
    runner = CliRunner()
    assert runner.invoke(main, ["retention", "--older-than", "20d", "--yes", *cfg]).exit_code == 0
    r = runner.invoke(main, ["training-set", "--labels", str(labels), "--features",
                             "customer_stats", "--out", str(out), *cfg])
    assert r.exit_code == 0, r.output
    original = out.read_text()
    r = runner.invoke(main, ["rebuild", f"{out}.json", *cfg])
    assert r.exit_code == 0, r.output
    assert out.read_text() == original
