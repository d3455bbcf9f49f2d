"""A read-only project can be read: ``status``, ``online`` and ``training-set`` work on a
log in a folder this process cannot write, or say exactly why they cannot.

How the folder is made read-only: the tests run as root, for whom permission bits stop
nothing (``chmod`` would prove nothing). Instead each command runs in its own user and
mount namespace (``unshare -rm``) in which the project folder is bind-mounted onto itself
read-only: every write there fails with EROFS, for root too, exactly as on a read-only
file system or snapshot, and the mount vanishes with the process (nothing to clean up).
SQLite cannot create the log's ``-shm`` file there, which is what broke the readers."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BASIC_TOML


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asof_stream", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, env={**os.environ, "TZ": "Asia/Kolkata"})


def readonly_cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``project`` mounted read-only (see the module docstring)."""
    command = (f'mount --bind -o ro "{project}" "{project}" && cd "{project}" && '
               f'touch probe 2>/dev/null && echo "folder is writable" >&2 && exit 99; '
               f'exec "{sys.executable}" -m asof_stream "$@"')
    return subprocess.run(["unshare", "-rm", "sh", "-c", command, "sh", *args], text=True,
                          capture_output=True, timeout=120, env={**os.environ, "TZ": "Asia/Kolkata"})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "asof.toml").write_text(BASIC_TOML)
    now = int(__import__("time").time())
    (proj / "e.jsonl").write_text("".join(json.dumps(
        {"view": "customer_stats", "customer_id": "c1", "event_timestamp": now - 3600 + i,
         "orders_7d": i, "tier": "gold"}) + "\n" for i in range(10)))
    (proj / "labels.csv").write_text(f"customer_id,event_timestamp\nc1,{now}\n")
    r = cli("replay", "e.jsonl", cwd=proj)
    assert r.returncode == 0, r.stderr
    assert not (proj / "data" / "offline.sqlite-shm").exists()  # checkpointed, closed
    return proj


def test_readers_work_on_a_read_only_project(project: Path, tmp_path: Path) -> None:
    r = readonly_cli(project, "status")
    assert r.returncode == 0, r.stderr
    assert "(10 rows, seq 10)" in r.stdout
    r = readonly_cli(project, "status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["log_rows"] == 10
    r = readonly_cli(project, "online", "--features", "customer_stats:orders_7d",
                     "--entity", "customer_id=c1", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["features"]["orders_7d"]["value"] == 9
    out = tmp_path / "train.csv"
    r = readonly_cli(project, "training-set", "--labels", "labels.csv", "--features",
                     "customer_stats:orders_7d", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text().splitlines()[1].endswith(",9")
    assert sorted(p.name for p in (project / "data").iterdir()) == [
        "offline.sqlite", "online.sqlite"]


def _uncheckpointed_commit(project: Path) -> None:
    """A commit left in the WAL, as a killed daemon leaves it (-wal and -shm stay)."""
    code = ("import os, sqlite3; c = sqlite3.connect('data/offline.sqlite');"
            " c.execute('PRAGMA wal_autocheckpoint = 0');"
            " c.execute(\"INSERT INTO dead_letters (source, raw, reason, error_ts)"
            " VALUES ('x', x'00', 'r', 1)\"); c.commit(); os._exit(0)")
    subprocess.run([sys.executable, "-c", code], cwd=project, check=True, timeout=60)
    assert (project / "data" / "offline.sqlite-wal").stat().st_size > 0


def test_read_only_project_with_a_wal_is_read_with_its_commits(project: Path) -> None:
    _uncheckpointed_commit(project)
    r = readonly_cli(project, "status", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dead_letters"] == 1  # the commit still only in the WAL


def test_wal_without_shm_in_a_read_only_folder_says_why(project: Path) -> None:
    """Commits only in the WAL, and no -shm to read them with: never read without them
    (immutable=1 would), but say what is in the way and what to do."""
    _uncheckpointed_commit(project)
    (project / "data" / "offline.sqlite-shm").unlink()
    r = readonly_cli(project, "status")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    log = project / "data" / "offline.sqlite"
    assert f"{log}: cannot open read-only: its write-ahead log {log}-wal holds" in lines[0]
    assert f"the folder {log.parent} is not writable" in lines[0]
    assert lines[0].count(str(log) + ":") == 1


def test_readonly_connection_in_a_writable_folder_refuses_writes(project: Path) -> None:
    from asof_stream.offline.sqlite import connect_readonly

    conn = connect_readonly(project / "data" / "offline.sqlite")
    assert conn.execute("SELECT count(*) FROM log").fetchone() == (10,)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM log")
    conn.close()
