"""The file-tail source: appends, partial lines, rotation, truncation, restarts."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

from asof_stream.config import load_config
from asof_stream.daemon import run_daemon
from tests.daemon_checks import assert_exactly_once, logged_orders
from tests.fixtures_kafka import event, write_config

SOURCE = """
[sources.tail]
kind = "file"
path = "events/*.jsonl"
poll_interval = 0.05
"""


def caught_up(folder: Path) -> int:
    return asyncio.run(run_daemon(load_config(folder / "asof.toml"), until_caught_up=True))


def append(path: Path, first: int, last: int) -> None:
    with path.open("ab") as fh:
        for i in range(first, last):
            fh.write(event(i) + b"\n")


def test_appends_partial_lines_and_restarts(tmp_path: Path) -> None:
    write_config(tmp_path, SOURCE)
    events = tmp_path / "events"
    events.mkdir()
    f = events / "a.jsonl"
    append(f, 0, 100)
    with f.open("ab") as fh:
        fh.write(b"\n   \n")  # blank lines are skipped
        fh.write(event(100)[:20])  # a partial last line: not read until its newline
    stop = asyncio.Event()

    async def scenario() -> int:
        daemon = asyncio.ensure_future(run_daemon(load_config(tmp_path / "asof.toml"), stop=stop))
        for _ in range(200):
            await asyncio.sleep(0.05)
            if len(logged_orders(tmp_path)) == 100:
                break
        assert set(logged_orders(tmp_path)) == set(range(100))
        with f.open("ab") as fh:
            fh.write(event(100)[20:] + b"\n")
        append(f, 101, 150)
        for _ in range(200):
            await asyncio.sleep(0.05)
            if len(logged_orders(tmp_path)) == 150:
                break
        stop.set()
        return await daemon

    assert asyncio.run(scenario()) == 0
    append(f, 150, 200)  # while stopped
    assert caught_up(tmp_path) == 0
    assert caught_up(tmp_path) == 0  # nothing new: nothing stored again
    assert_exactly_once(tmp_path, set(range(200)))


def test_rotation_while_running_and_while_stopped(tmp_path: Path) -> None:
    write_config(tmp_path, SOURCE)
    events = tmp_path / "events"
    events.mkdir()
    f = events / "app.jsonl"
    append(f, 0, 50)
    assert caught_up(tmp_path) == 0
    # Rotation while the daemon is down: the renamed file's tail is found by identity.
    append(f, 50, 80)
    os.rename(f, events / "app.jsonl.1")
    append(f, 80, 120)
    assert caught_up(tmp_path) == 0
    assert_exactly_once(tmp_path, set(range(120)))

    # Rotation while running: the old file is drained through its open descriptor.
    stop = asyncio.Event()

    async def scenario() -> int:
        daemon = asyncio.ensure_future(run_daemon(load_config(tmp_path / "asof.toml"), stop=stop))
        await asyncio.sleep(0.3)
        append(f, 120, 150)
        os.rename(f, events / "app.jsonl.2")
        with (events / "app.jsonl.2").open("ab") as fh:  # a writer that has not reopened yet
            fh.write(event(150) + b"\n")
        append(f, 151, 170)
        for _ in range(200):
            await asyncio.sleep(0.05)
            if len(logged_orders(tmp_path)) == 170:
                break
        stop.set()
        return await daemon

    assert asyncio.run(scenario()) == 0
    assert_exactly_once(tmp_path, set(range(170)))


def test_truncation_restarts_from_the_new_content(tmp_path: Path) -> None:
    write_config(tmp_path, SOURCE)
    events = tmp_path / "events"
    events.mkdir()
    f = events / "t.jsonl"
    append(f, 0, 40)
    assert caught_up(tmp_path) == 0
    with f.open("r+b") as fh:  # copy-truncate rotation: same inode, shorter content
        fh.truncate(0)
    append(f, 40, 45)
    assert f.stat().st_size < 40 * len(event(0))
    assert caught_up(tmp_path) == 0
    assert_exactly_once(tmp_path, set(range(45)))


def test_a_recycled_inode_is_read_from_the_start(tmp_path: Path) -> None:
    write_config(tmp_path, SOURCE)
    events = tmp_path / "events"
    events.mkdir()
    f = events / "r.jsonl"
    append(f, 0, 30)
    assert caught_up(tmp_path) == 0
    # Replace the content in place with different, longer bytes (what a recycled inode
    # looks like: same identity, different file): the fingerprint tells them apart.
    with f.open("r+b") as fh:
        fh.truncate(0)
        fh.seek(0)
        for i in range(30, 90):
            fh.write(json.dumps({"customer_id": "z", "event_timestamp": 5, "orders_7d": i,
                                 "tier": "x" * 3}).encode() + b"\n")
    assert caught_up(tmp_path) == 0
    assert_exactly_once(tmp_path, set(range(90)))


def test_deep_and_oversized_lines_are_bounded_dead_letters(tmp_path: Path) -> None:
    """A deeply nested event is a dead letter, not a crash; an oversized one keeps 4 KiB."""
    write_config(tmp_path, SOURCE, max_event_bytes=8192)
    (tmp_path / "events").mkdir()
    deep = b'{"customer_id": "c1", "event_timestamp": 1, "tier": ' + b"[" * 100_000 \
        + b"]" * 100_000 + b"}"
    oversized = event(2, tier="x" * 20_000)
    with (tmp_path / "events" / "a.jsonl").open("wb") as fh:
        for line in (event(0), deep, event(1), oversized, event(3)):
            fh.write(line + b"\n")
    assert caught_up(tmp_path) == 0
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


def test_a_deeply_nested_event_within_the_limit_is_a_dead_letter(tmp_path: Path) -> None:
    write_config(tmp_path, SOURCE)
    (tmp_path / "events").mkdir()
    deep = b'{"customer_id": "c1", "event_timestamp": 1, "tier": ' + b"[" * 50_000 \
        + b"]" * 50_000 + b"}"
    (tmp_path / "events" / "a.jsonl").write_bytes(event(0) + b"\n" + deep + b"\n" + event(1)
                                                 + b"\n")
    assert caught_up(tmp_path) == 0
    assert sorted(logged_orders(tmp_path)) == [0, 1]
    conn = sqlite3.connect(tmp_path / "data" / "offline.sqlite")
    try:
        dead = conn.execute("SELECT raw, reason FROM dead_letters").fetchall()
    finally:
        conn.close()
    assert dead == [(deep, "not JSON: nested too deeply")]
