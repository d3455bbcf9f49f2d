"""The file-tail source: appends, partial lines, rotation (rename and copytruncate),
truncation, file identity across copies of the project, late writes, restarts."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from asof_stream.config import load_config
from asof_stream.daemon import run_daemon
from asof_stream.monitoring.status import gather_status
from tests.daemon_checks import assert_exactly_once, logged_orders, positions
from tests.fixtures_kafka import cli, event, run_cli, write_config

SOURCE = """
[sources.tail]
kind = "file"
path = "events/*.jsonl"
poll_interval = %(poll)s
"""


@dataclass
class Project:
    """A project folder with a file source over ``events/*.jsonl``."""

    root: Path

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def config(self) -> Path:
        return self.root / "asof.toml"

    def caught_up(self) -> int:
        return asyncio.run(run_daemon(load_config(self.config), until_caught_up=True))

    def running(self, scenario: Callable[[], object], until: int | set[int]) -> int:
        """Run the daemon in this process, call ``scenario`` (in a thread) once it is up,
        wait until ``until`` distinct events (or these events) are stored, then stop it."""
        stop = asyncio.Event()

        async def go() -> int:
            daemon = asyncio.ensure_future(run_daemon(load_config(self.config), stop=stop))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(scenario)
            for _ in range(400):
                await asyncio.sleep(0.05)
                have = logged_orders(self.root)
                if (len(have) >= until if isinstance(until, int) else until <= set(have)):
                    break
            stop.set()
            return await daemon

        return asyncio.run(go())

    def dead_letters(self) -> int:
        conn = sqlite3.connect(self.root / "data" / "offline.sqlite")
        try:
            return int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
        finally:
            conn.close()


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Project]:
    def make(poll: float = 0.05, extra: str = "", folder: str = "p") -> Project:
        root = tmp_path / folder
        write_config(root, SOURCE % {"poll": poll} + extra)
        (root / "events").mkdir()
        return Project(root)
    return make


@pytest.fixture
def project(make_project: Callable[..., Project]) -> Project:
    return make_project()


def append(path: Path, first: int, last: int, **over: object) -> None:
    with path.open("ab") as fh:
        for i in range(first, last):
            fh.write(event(i, **over) + b"\n")


def copytruncate(path: Path, to: Path) -> None:
    """logrotate's copytruncate: copy the file away, then truncate it in place."""
    shutil.copyfile(path, to)
    with path.open("r+b") as fh:
        fh.truncate(0)


async def test_appends_partial_lines_and_restarts(project: Project) -> None:
    f = project.events / "a.jsonl"
    append(f, 0, 100)
    with f.open("ab") as fh:
        fh.write(b"\n   \n")  # blank lines are skipped
        fh.write(event(100)[:20])  # a partial last line: not read until its newline
    stop = asyncio.Event()
    daemon = asyncio.ensure_future(run_daemon(load_config(project.config), stop=stop))
    for _ in range(200):
        await asyncio.sleep(0.05)
        if len(logged_orders(project.root)) == 100:
            break
    assert set(logged_orders(project.root)) == set(range(100))
    with f.open("ab") as fh:
        fh.write(event(100)[20:] + b"\n")
    append(f, 101, 150)
    for _ in range(200):
        await asyncio.sleep(0.05)
        if len(logged_orders(project.root)) == 150:
            break
    stop.set()
    assert await daemon == 0
    append(f, 150, 200)  # while stopped
    config = load_config(project.config)
    assert await run_daemon(config, until_caught_up=True) == 0
    assert await run_daemon(config, until_caught_up=True) == 0  # nothing new: nothing stored again
    assert_exactly_once(project.root, set(range(200)))


def test_rotation_while_running_and_while_stopped(project: Project) -> None:
    events, f = project.events, project.events / "app.jsonl"
    append(f, 0, 50)
    assert project.caught_up() == 0
    # Rotation while the daemon is down: the renamed file's tail is found by fingerprint.
    append(f, 50, 80)
    os.rename(f, events / "app.jsonl.1")
    append(f, 80, 120)
    assert project.caught_up() == 0
    assert_exactly_once(project.root, set(range(120)))

    # Rotation while running: the old file is drained through its open descriptor.
    def rotate() -> None:
        append(f, 120, 150)
        os.rename(f, events / "app.jsonl.2")
        with (events / "app.jsonl.2").open("ab") as fh:  # a writer that has not reopened yet
            fh.write(event(150) + b"\n")
        append(f, 151, 170)

    assert project.running(rotate, until=170) == 0
    assert_exactly_once(project.root, set(range(170)))


def test_late_writes_to_a_renamed_file_are_read_without_a_restart(project: Project) -> None:
    events, f = project.events, project.events / "app.jsonl"
    append(f, 0, 20)

    def rotate_then_write_late() -> None:
        writer = f.open("ab")  # the application's handle, kept across the rename
        os.rename(f, events / "app.jsonl.1")
        append(f, 20, 30)
        time.sleep(3.5)  # longer than the old 2 s grace, well inside rotated_idle_s
        writer.write(b"".join(event(i) + b"\n" for i in range(30, 40)))
        writer.close()

    assert project.running(rotate_then_write_late, until=40) == 0
    assert_exactly_once(project.root, set(range(40)))


def test_copytruncate_refilled_past_the_offset_between_polls(
        make_project: Callable[..., Project]) -> None:
    project = make_project(poll=0.5)
    events, f = project.events, project.events / "app.jsonl"
    append(f, 0, 40)

    def rotate() -> None:
        # Unread lines at the end, then copy + truncate + refill past the old offset, all
        # between two polls: the unread lines are only in the copy now.
        append(f, 40, 60)
        copytruncate(f, events / "app.jsonl.1")
        append(f, 60, 200)

    assert project.running(rotate, until=200) == 0
    assert project.caught_up() == 0  # a restart reads nothing again
    assert_exactly_once(project.root, set(range(200)))
    assert project.dead_letters() == 0


WRITER = """
import json, os, shutil, sys, time
path, n, every, ok = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def line(i):
    return json.dumps({"customer_id": f"c{i % 50}", "event_timestamp": 1767600000 + i % 5000,
                       "spend_7d": i / 4, "orders_7d": i, "tier": "gold"}) + "\\n"
rotation = due = 0
with open(path, "a") as fh:
    for i in range(n):
        fh.write(line(i))
        if i % 50 == 49:
            fh.flush()
            time.sleep(0.005)
        due += 1
        if due >= every and os.path.exists(ok):  # rotate only while a daemon runs
            fh.flush()
            due, rotation = 0, rotation + 1
            shutil.copyfile(path, f"{path}.{rotation}")
            fh.truncate(0)
"""


def test_copytruncate_under_a_live_writer_and_sigkill(make_project: Callable[..., Project]) -> None:
    project = make_project(poll=0.02)
    f, ok = project.events / "app.jsonl", project.root / "rotate.ok"
    f.touch()
    n = 30_000
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(f), str(n), "1700", str(ok)])
    log_file = project.root / "daemon.log"
    kills = 0
    while writer.poll() is None or kills < 2:
        daemon = cli("--log-level", "INFO", "run", "--config", str(project.config),
                     log_file=log_file)
        # Rotations happen while a daemon follows the file (a copy made while none runs,
        # or several, would never have been seen: outside the glob, like for any tailer).
        for _ in range(600):
            if log_file.read_text().count("source tail started") > kills:
                break
            time.sleep(0.02)
        ok.touch()
        time.sleep(1.0)
        ok.unlink()
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        kills += 1
    assert writer.wait() == 0
    assert project.caught_up() == 0
    assert_exactly_once(project.root, set(range(n)), f"after {kills} kills")
    assert project.dead_letters() == 0
    assert len(list(project.events.glob("app.jsonl.*"))) > 2  # it did rotate, several times


def test_truncation_restarts_from_the_new_content(project: Project) -> None:
    f = project.events / "t.jsonl"
    append(f, 0, 40)
    assert project.caught_up() == 0
    with f.open("r+b") as fh:  # copy-truncate rotation: same inode, shorter content
        fh.truncate(0)
    append(f, 40, 45)
    assert f.stat().st_size < 40 * len(event(0))
    assert project.caught_up() == 0
    assert_exactly_once(project.root, set(range(45)))


def test_a_recycled_inode_is_read_from_the_start(project: Project) -> None:
    f = project.events / "r.jsonl"
    append(f, 0, 30)
    assert project.caught_up() == 0
    # Replace the content in place with different, longer bytes (what a recycled inode
    # looks like: same identity, different file): the fingerprint tells them apart.
    with f.open("r+b") as fh:
        fh.truncate(0)
        fh.seek(0)
        for i in range(30, 90):
            fh.write(json.dumps({"customer_id": "z", "event_timestamp": 5, "orders_7d": i,
                                 "tier": "x" * 3}).encode() + b"\n")
    assert project.caught_up() == 0
    assert_exactly_once(project.root, set(range(90)))


def test_a_copy_of_the_project_stores_nothing_twice(make_project: Callable[..., Project],
                                                    tmp_path: Path) -> None:
    project = make_project()
    append(project.events / "plain.jsonl", 0, 300)
    with (project.events / "ids.jsonl").open("wb") as fh:
        for i in range(300, 400):
            fh.write(event(i, event_id=f"e{i}") + b"\n")
    assert project.caught_up() == 0
    # cp -r / a backup restore / another volume: every file has a new inode.
    copy = Project(tmp_path / "copy")
    shutil.copytree(project.root, copy.root)
    assert copy.caught_up() == 0
    assert_exactly_once(copy.root, set(range(400)))
    append(copy.events / "plain.jsonl", 400, 450)
    assert copy.caught_up() == 0
    assert_exactly_once(copy.root, set(range(450)))
    # A copy that lost its positions (an older backup of the log) still never doubles an
    # event with an event_id: the log's own rule.
    conn = sqlite3.connect(copy.root / "data" / "offline.sqlite")
    with conn:
        conn.execute("DELETE FROM positions")
    conn.close()
    assert copy.caught_up() == 0
    counts = logged_orders(copy.root)
    assert all(counts[i] == 1 for i in range(300, 400))


def test_old_dev_ino_positions_are_migrated(make_project: Callable[..., Project],
                                            tmp_path: Path) -> None:
    project = make_project()
    f = project.events / "old.jsonl"
    append(f, 0, 60)
    assert project.caught_up() == 0
    # Rewrite the stored position the way earlier versions stored it: key dev:ino.
    offset = f.stat().st_size
    head_len = min(256, offset)
    head = hashlib.sha1(f.read_bytes()[:head_len]).hexdigest()[:16]
    st = f.stat()
    conn = sqlite3.connect(project.root / "data" / "offline.sqlite")
    with conn:
        conn.execute("DELETE FROM positions WHERE source = 'tail'")
        conn.execute("INSERT INTO positions VALUES ('tail', ?, ?, ?, 0)",
                     (f"{st.st_dev}:{st.st_ino}", offset,
                      json.dumps({"path": str(f), "head_len": head_len, "head": head})))
    conn.close()
    copy = Project(tmp_path / "copy")
    shutil.copytree(project.root, copy.root)  # and a new inode, too
    append(copy.events / "old.jsonl", 60, 80)
    assert copy.caught_up() == 0
    assert_exactly_once(copy.root, set(range(80)))
    keys = list(positions(copy.root, "tail"))
    assert len(keys) == 1 and keys[0].startswith("events/old.jsonl#"), keys


def test_status_shows_file_positions_by_path(project: Project) -> None:
    f = project.events / "s.jsonl"
    append(f, 0, 10)
    assert project.caught_up() == 0
    tail = gather_status(load_config(project.config))["sources"]["tail"]
    assert tail["kind"] == "file"
    [(key, pos)] = tail["positions"].items()
    assert key.startswith("events/s.jsonl#")
    assert pos["next_offset"] == f.stat().st_size
    assert pos["path"] == "events/s.jsonl" and pos["warning"] is None
    assert "detail" in pos


def test_replay_resumes_a_restored_file_and_in_a_copy_of_the_project(project: Project,
                                                                     tmp_path: Path) -> None:
    f = project.root / "backfill.jsonl"
    append(f, 0, 50)

    def replay(p: Project) -> str:
        done = run_cli("replay", str(p.root / "backfill.jsonl"), "--config", str(p.config))
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    replay(project)
    # A backup restore: the same bytes in a new inode at the same path, then more lines.
    shutil.copyfile(f, tmp_path / "saved")
    f.unlink()
    shutil.copyfile(tmp_path / "saved", f)
    append(f, 50, 60)
    assert "stored 10" in replay(project)
    copy = Project(tmp_path / "copy")
    shutil.copytree(project.root, copy.root)
    append(copy.root / "backfill.jsonl", 60, 70)
    assert "stored 10" in replay(copy)
    assert_exactly_once(copy.root, set(range(70)))


def test_status_warns_when_a_truncated_files_old_content_is_gone(project: Project) -> None:
    f = project.events / "w.jsonl"
    append(f, 0, 20)

    def truncate_without_a_copy() -> None:
        append(f, 20, 30)
        with f.open("r+b") as fh:
            fh.truncate(0)
        append(f, 100, 110)

    assert project.running(truncate_without_a_copy, until=set(range(100, 110))) == 0
    text = run_cli("status", "--config", str(project.config))
    assert text.returncode == 0, text.stderr
    assert "events/w.jsonl: next offset" in text.stdout
    warned = [p for p in gather_status(load_config(project.config))["sources"]["tail"]
              ["positions"].values() if p["warning"]]
    assert warned and "no copy of its old content was found" in warned[0]["warning"]
    assert "warning: " in text.stdout
