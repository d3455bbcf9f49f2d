"""Hostile lines in a tailed file: deeply nested or oversized events are bounded dead letters."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from asof_stream.config import load_config
from asof_stream.daemon import run_daemon
from tests.daemon_checks import logged_orders
from tests.fixtures_kafka import event, write_config

SOURCE = """
[sources.tail]
kind = "file"
path = "events/*.jsonl"
poll_interval = 0.05
"""


async def caught_up(folder: Path) -> int:
    return await run_daemon(load_config(folder / "asof.toml"), until_caught_up=True)


async def test_deep_and_oversized_lines_are_bounded_dead_letters(tmp_path: Path) -> None:
    """A deeply nested event is a dead letter, not a crash; an oversized one keeps 4 KiB."""
    write_config(tmp_path, SOURCE, max_event_bytes=8192)
    (tmp_path / "events").mkdir()
    deep = b'{"customer_id": "c1", "event_timestamp": 1, "tier": ' + b"[" * 100_000 \
        + b"]" * 100_000 + b"}"
    oversized = event(2, tier="x" * 20_000)
    with (tmp_path / "events" / "a.jsonl").open("wb") as fh:
        for line in (event(0), deep, event(1), oversized, event(3)):
            fh.write(line + b"\n")
    assert await caught_up(tmp_path) == 0
    assert sorted(logged_orders(tmp_path)) == [0, 1, 3]
    conn = sqlite3.connect(tmp_path / "data" / "offline.sqlite")
    try:
        dead = conn.execute("SELECT raw, reason FROM dead_letters ORDER BY id").fetchall()
    finally:
        conn.close()
    assert [len(raw) for raw, _ in dead] == [4096, 4096]
    assert dead[0][0] == deep[:4096] and dead[1][0] == oversized[:4096]
    assert "oversized event" in dead[0][1] and f"of {len(deep)} bytes kept" in dead[0][1]
    assert f"first 4096 of {len(oversized)} bytes kept" in dead[1][1]


async def test_a_deeply_nested_event_within_the_limit_is_a_dead_letter(tmp_path: Path) -> None:
    write_config(tmp_path, SOURCE)
    (tmp_path / "events").mkdir()
    deep = b'{"customer_id": "c1", "event_timestamp": 1, "tier": ' + b"[" * 50_000 \
        + b"]" * 50_000 + b"}"
    (tmp_path / "events" / "a.jsonl").write_bytes(event(0) + b"\n" + deep + b"\n" + event(1)
                                                 + b"\n")
    assert await caught_up(tmp_path) == 0
    assert sorted(logged_orders(tmp_path)) == [0, 1]
    conn = sqlite3.connect(tmp_path / "data" / "offline.sqlite")
    try:
        dead = conn.execute("SELECT raw, reason FROM dead_letters").fetchall()
    finally:
        conn.close()
    assert dead == [(deep, "not JSON: nested too deeply")]
