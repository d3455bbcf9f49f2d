"""``asof-stream compact`` and ``export --snapshot``: DuckDB reads exactly the log's rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.stores import open_stores
from tests.test_segments import VIEW, all_rows, rec


def test_duckdb_over_the_snapshot_returns_the_log_rows(config: Config, tmp_path: Path) -> None:
    cfg = str(tmp_path / "asof.toml")
    with open_stores(config) as s:
        s.committer().commit("src", [rec(i) for i in range(60)])
    runner = CliRunner()
    r = runner.invoke(main, ["compact", "--config", cfg])
    assert r.exit_code == 0 and "sealed 60 rows into 1 segment" in r.output, r.output
    with open_stores(config) as s:
        s.committer().commit("src", [rec(i) for i in range(60, 75)])  # these stay in the head
        expected = all_rows(s.log, config)
    out = tmp_path / "snap"
    r = runner.invoke(main, ["export", "--snapshot", str(out), "--config", cfg])
    assert r.exit_code == 0 and "75 rows" in r.output, r.output
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["max_seq"] == 75 and doc["views"][VIEW]["rows"] == 75
    con = duckdb.connect()
    here = os.getcwd()
    os.chdir(out)
    try:
        con.execute((out / "snapshot.sql").read_text())
        got = con.execute(f"SELECT seq, entity, event_timestamp, ingest_ts, spend_7d, orders_7d, tier"
                          f" FROM {VIEW} ORDER BY seq").fetchall()
    finally:
        os.chdir(here)
    assert sorted(got) == expected
    # Later compaction does not disturb the snapshot (its files are links of its own).
    r = runner.invoke(main, ["compact", "--config", cfg])
    assert r.exit_code == 0, r.output
    n = duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)",
                                 [doc["views"][VIEW]["absolute"]]).fetchone()
    assert n == (75,)


def test_compact_verify_names_a_damaged_file(config: Config, tmp_path: Path) -> None:
    cfg = str(tmp_path / "asof.toml")
    with open_stores(config) as s:
        s.committer().commit("src", [rec(i) for i in range(20)])
    runner = CliRunner()
    assert runner.invoke(main, ["compact", "--config", cfg]).exit_code == 0
    r = runner.invoke(main, ["compact", "--verify", "--config", cfg])
    assert r.exit_code == 0 and "every segment matches" in r.output
    seg = next((tmp_path / "data" / "offline.sqlite.segments" / VIEW).glob("*.parquet"))
    data = bytearray(seg.read_bytes())
    data[100] ^= 1
    seg.write_bytes(bytes(data))
    r = runner.invoke(main, ["compact", "--verify", "--config", cfg])
    assert r.exit_code == 1 and seg.name in r.output and "sha256" in r.output, r.output
