"""SIGKILL during sealing and compaction loses no row and leaves none in two places.

The ``compact`` command runs in a real subprocess and is killed at named steps (the
n-th time it reaches them) and after random delays; after each kill the union of the
tiers must be exactly the rows committed, and the next compact must clean up.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asof_stream.config import Config
from asof_stream.offline.log import open_log
from asof_stream.offline.manifest import list_segments
from asof_stream.offline.seal import compact
from asof_stream.stores import open_stores
from tests.test_segments import VIEW, all_rows, rec

STEPS = ["segment-written", "segment-renamed", "registered", "committed", "unlinked-one"]


def build(config: Config) -> list[tuple[object, ...]]:
    with open_stores(config) as s:
        c = s.committer()
        n = 0
        for k in (13, 7, 21):  # leaves L0: 1, L1: 1, so the seal below cascades two merges
            c.commit("src", [rec(n + i) for i in range(k)])
            n += k
            compact(s.log, config.defs, fanout=2)
        c.commit("src", [rec(n + i) for i in range(17)])  # in the head
        c.commit("src", [rec(i, customer_id="m", event_id=f"m{i}", view="customer_stats")
                         for i in range(3)])
        return all_rows(s.log, config)


def run_compact(cfg: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "asof_stream", "compact", "--config", str(cfg)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def check(config: Config, expected: list[tuple[object, ...]]) -> None:
    with open_log(config.offline_path) as log:
        got = all_rows(log, config)
        assert got == expected  # no row lost, none in two places (seqs are unique)
        assert log.view_stats()[VIEW]["rows"] == len(expected)
        registered = {s.file for s in list_segments(log.conn)}
        on_disk = {p.relative_to(log.segments_dir).as_posix()
                   for p in log.segments_dir.glob("*/*")}
        assert registered <= on_disk


@pytest.mark.parametrize("nth", [1, 2, 3])
@pytest.mark.parametrize("where", STEPS)
def test_kill_at_each_step(config: Config, tmp_path: Path, where: str, nth: int) -> None:
    config = _with_fanout(config, tmp_path)
    expected = build(config)
    p = run_compact(config.path, {"ASOF_STREAM_SEAL_CRASH": f"{where}:{nth}"})
    assert p.wait(60) == -signal.SIGKILL  # it really reached the step
    check(config, expected)
    done = run_compact(config.path, {})
    assert done.wait(60) == 0, done.stderr.read() if done.stderr else ""
    check(config, expected)
    with open_log(config.offline_path) as log:
        registered = {s.file for s in list_segments(log.conn)}
        on_disk = {p.relative_to(log.segments_dir).as_posix() for p in log.segments_dir.glob("*/*")}
        assert on_disk == registered  # the crash's leftovers are gone
        assert log.conn.execute("SELECT count(*) FROM log").fetchone()[0] == 0


def test_kill_after_random_delays(config: Config, tmp_path: Path) -> None:
    config = _with_fanout(config, tmp_path)
    expected = build(config)
    rnd = random.Random(11)
    for _ in range(6):
        p = run_compact(config.path, {"ASOF_STREAM_SEAL_SLOW": "0.05"})
        time.sleep(rnd.uniform(0.3, 1.2))
        p.send_signal(signal.SIGKILL)
        p.wait(60)
        check(config, expected)
        with open_stores(config) as s:  # more rows arrive between the kills
            s.committer().commit("src", [rec(1000 + len(expected) + i) for i in range(4)])
            expected = all_rows(s.log, config)


def _with_fanout(config: Config, tmp_path: Path) -> Config:
    from asof_stream.config import parse_config

    text = config.path.read_text() + "\n[log]\nmerge_fanout = 2\n"
    config.path.write_text(text)
    return parse_config(text, config.path)
