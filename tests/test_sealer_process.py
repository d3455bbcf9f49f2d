"""The daemon's sealer child process: it dies with a SIGKILLed daemon, a SIGKILL of the
child does not stop ingest (the daemon starts a new one), and across both the log keeps
every row exactly once over the two tiers."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from asof_stream.config import Config, load_config
from asof_stream.offline.log import open_log
from asof_stream.offline.manifest import list_segments
from asof_stream.offline.scan import scan_view
from asof_stream.offline.seal import verify_segments
from asof_stream.stores import open_stores
from tests.fixtures_kafka import event, run_cli, write_config

SOURCE = """
[sources.tail]
kind = "file"
path = "events/*.jsonl"
poll_interval = 0.05
"""
SEALING = "\n[log]\nseal_rows = 100\nseal_interval = 0.05\nmerge_fanout = 3\n"


def project(root: Path, n: int) -> Path:
    config = write_config(root, SOURCE, batch_size=100, batch_timeout_ms=20, extra=SEALING)
    (root / "events").mkdir()
    append(root / "events" / "a.jsonl", 0, n)
    return config


def append(path: Path, first: int, last: int) -> None:
    with path.open("ab") as fh:
        fh.write(b"".join(event(i) + b"\n" for i in range(first, last)))


def start(config: Path, log_file: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "asof_stream", "--log-level", "INFO", "run",
                             "--config", str(config)], env={**os.environ, **env},
                            stdout=log_file.open("ab"), stderr=subprocess.STDOUT)


def state(pid: int) -> str | None:
    """The process's state letter (None: gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    return state(pid) not in (None, "Z")  # a zombie has exited (its reaper may be slow)


def children(pid: int) -> list[int]:
    """The live sealer processes of ``pid`` (its spawned children; not multiprocessing's
    resource tracker)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            with contextlib.suppress(OSError):
                if b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                    out.append(int(stat.parent.name))
    return out


def wait_for(cond: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def tiers(root: Path) -> tuple[int, int]:
    """(rows in the head, rows in registered segments), in one read."""
    conn = sqlite3.connect(root / "data" / "offline.sqlite")
    try:
        head, sealed = conn.execute("SELECT (SELECT count(*) FROM log), (SELECT coalesce("
                                    "sum(rows), 0) FROM segments)").fetchone()
        return int(head), int(sealed)
    except sqlite3.OperationalError:  # the tables are not there yet
        return 0, 0
    finally:
        conn.close()


def assert_each_row_once(config_path: Path, n: int) -> None:
    """Every event (by its unique ``orders_7d``) in exactly one tier, seqs unique."""
    config = load_config(config_path)
    with open_log(config.offline_path) as log:
        orders: Counter[int] = Counter()
        seqs: list[int] = []
        for tier in scan_view(log, config.defs, "customer_stats"):
            orders.update(tier.table.column("orders_7d").to_pylist())
            seqs.extend(tier.table.column("seq").to_pylist())
        assert sorted(orders) == list(range(n)) and set(orders.values()) == {1}
        assert len(seqs) == len(set(seqs)) == n
        assert verify_segments(log) == []
        assert list_segments(log.conn)  # the sealer did seal


def test_a_sigkilled_daemon_takes_its_sealer_process_with_it(tmp_path: Path) -> None:
    root = tmp_path / "p"
    config = project(root, 3000)
    # Slow seals (every step sleeps): the kill is likely to land inside one.
    daemon = start(config, tmp_path / "daemon.log", ASOF_STREAM_SEAL_SLOW="0.03")
    try:
        wait_for(lambda: children(daemon.pid), "the sealer process")
        (sealer,) = children(daemon.pid)
        wait_for(lambda: tiers(root)[1] > 0, "a first segment")
        append(root / "events" / "a.jsonl", 3000, 6000)
        time.sleep(0.3)
        assert alive(sealer)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        wait_for(lambda: not alive(sealer), "the sealer process to go", timeout=5.0)
    finally:
        daemon.kill()
        daemon.wait()
    done = run_cli("run", "--config", str(config), "--until-caught-up")
    assert done.returncode == 0, done.stderr
    assert_each_row_once(config, 6000)


def test_a_killed_sealer_process_does_not_stop_ingest(tmp_path: Path) -> None:
    root = tmp_path / "p"
    config = project(root, 2000)
    log_file = tmp_path / "daemon.log"
    daemon = start(config, log_file)
    try:
        wait_for(lambda: children(daemon.pid), "the sealer process")
        (first,) = children(daemon.pid)
        wait_for(lambda: tiers(root)[1] > 0, "a first segment")
        os.kill(first, signal.SIGKILL)
        append(root / "events" / "a.jsonl", 2000, 5000)
        wait_for(lambda: sum(tiers(root)) == 5000, "ingest of the events after the kill")
        assert daemon.poll() is None
        wait_for(lambda: [p for p in children(daemon.pid) if p != first], "a new sealer process")
        (second,) = children(daemon.pid)
        sealed = tiers(root)[1]
        append(root / "events" / "a.jsonl", 5000, 6000)
        wait_for(lambda: tiers(root)[1] > sealed, "the new sealer process to seal")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        assert not alive(second)
    finally:
        daemon.kill()
        daemon.wait()
    text = log_file.read_text()
    assert "the sealer process died (exit code -9); restarting it" in text
    assert_each_row_once(config, 6000)


def test_the_sealer_process_sends_the_id_hashes_and_stops_when_asked(
        config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    from asof_stream.offline import manifest
    from asof_stream.offline.sealer_process import SealerProcess
    from tests.test_segments import VIEW, rec

    monkeypatch.setattr(manifest, "ID_HASHES", manifest.IdHashes(budget=10**6))
    with open_stores(config) as s:
        c = s.committer()
        c.commit("src", [rec(i) for i in range(300)])
        sealer = SealerProcess(config.offline_path, config.defs, seal_rows=100, seal_age=None,
                               interval=0.05, fanout=10)
        sealer.start()
        try:
            wait_for(lambda: not s.log.conn.execute("SELECT count(*) FROM log").fetchone()[0],
                     "the head to be sealed")
            (seg,) = list_segments(s.log.conn, VIEW)
            path = s.log.segments_dir / seg.file
            wait_for(lambda: manifest.ID_HASHES.get(path) is not None, "the id hashes")
            assert manifest.ID_HASHES.get(path).size == 300  # type: ignore[union-attr]
            r = c.commit("src", [rec(7), rec(300)])
            assert (r.stored, r.duplicates) == (1, 1)
        finally:
            t0 = time.monotonic()
            sealer.stop()
        assert time.monotonic() - t0 < 5 and sealer.process is not None
        assert not sealer.process.is_alive() and sealer.process.exitcode == 0
        assert sealer.starts == 1 and not sealer.gave_up
