"""A log file damaged in the middle: ``run`` and ``status`` say so in one line, naming the
file and what to do, and exit non-zero; nothing claims the committed data is intact.

The damage is real: pages in the middle of a real log (built by ``asof-stream replay``)
are overwritten with junk, and the commands run as subprocesses."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from asof_stream.config import load_config
from asof_stream.daemon import _supervise
from asof_stream.ingest.commit import StoreError
from asof_stream.ingest.sources.base import Record
from asof_stream.offline.sqlite import DatabaseDamaged, quick_check
from asof_stream.stores import open_stores
from tests.conftest import BASIC_TOML

PAGE = 4096


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asof_stream", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, env={**os.environ, "TZ": "Asia/Kolkata"})


def events(first: int, n: int) -> str:
    return "".join(json.dumps({"customer_id": f"c{i % 300}", "event_timestamp": 1767600000 + i,
                               "orders_7d": i, "tier": "t" * 40}) + "\n"
                   for i in range(first, first + n))


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """A project whose log (about 1 MB, checkpointed) has junk over pages in its middle."""
    (tmp_path / "asof.toml").write_text(
        BASIC_TOML + '\n[sources.f]\nkind = "file"\npath = "events.jsonl"\n'
        'view = "customer_stats"\n')
    (tmp_path / "events.jsonl").write_text(events(0, 5000))
    r = cli("run", "--until-caught-up", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    log = tmp_path / "data" / "offline.sqlite"
    assert not (tmp_path / "data" / "offline.sqlite-wal").exists()  # checkpointed on close
    pages = log.stat().st_size // PAGE
    assert pages > 100
    junk = random.Random(7)
    with log.open("r+b") as fh:
        for page in range(pages // 2, pages // 2 + 8):
            fh.seek(page * PAGE)
            fh.write(bytes(junk.randrange(256) for _ in range(PAGE)))
    with (tmp_path / "events.jsonl").open("a") as fh:  # more to read, so run would write
        fh.write(events(5000, 500))
    return tmp_path


def assert_says_damaged(r: subprocess.CompletedProcess[str], log: Path) -> None:
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith(f"asof-stream: error: {log} is damaged"), line
    assert "restore it from a backup" in line and f'sqlite3 {log} ".recover"' in line
    assert "intact" not in line and "positions moved" not in line


def test_run_on_a_damaged_log_refuses_in_one_line(damaged: Path) -> None:
    log = damaged / "data" / "offline.sqlite"
    before = log.read_bytes()
    assert_says_damaged(cli("run", "--until-caught-up", cwd=damaged), log)
    assert log.read_bytes() == before  # nothing written into a damaged file


def test_status_on_a_damaged_log_exits_non_zero(damaged: Path) -> None:
    log = damaged / "data" / "offline.sqlite"
    assert_says_damaged(cli("status", cwd=damaged), log)
    assert_says_damaged(cli("status", "--json", cwd=damaged), log)


def test_status_of_a_sound_log_passes_quick_check(tmp_path: Path) -> None:
    (tmp_path / "asof.toml").write_text(BASIC_TOML)
    (tmp_path / "e.jsonl").write_text(events(0, 100))
    assert cli("replay", "e.jsonl", "--view", "customer_stats", cwd=tmp_path).returncode == 0
    r = cli("status", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_commit_into_a_damaged_log_is_a_damaged_store_error(damaged: Path) -> None:
    """The daemon checks at start; a file damaged later fails its commit with an error that
    says damaged (and the supervisor does not call the data intact)."""
    config = load_config(damaged / "asof.toml")
    with open_stores(config, heal=False) as stores:
        with pytest.raises(DatabaseDamaged):
            quick_check(stores.log.conn, stores.log.path)
        recs = [Record(line.encode(), str(i)) for i, line in
                enumerate(events(0, 3000).splitlines())]
        with pytest.raises(StoreError) as exc:
            stores.committer("customer_stats").commit("f", recs)
    assert exc.value.damaged and "is damaged" in str(exc.value)


async def test_supervisor_reports_damage_without_claiming_intact(
        caplog: pytest.LogCaptureFixture) -> None:
    async def fail() -> None:
        raise StoreError("/x/offline.sqlite is damaged (malformed): restore ...", damaged=True)

    with caplog.at_level(logging.INFO):
        code, damaged = await _supervise({asyncio.ensure_future(fail()): None}, asyncio.Event())
    assert code != 0 and damaged is not None and "is damaged" in str(damaged)
    assert "intact" not in caplog.text


def test_quick_check_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    path.write_bytes(b"x" * 8192)
    conn = sqlite3.connect(path)
    with pytest.raises(DatabaseDamaged, match=f"{path} is damaged"):
        quick_check(conn, path)
