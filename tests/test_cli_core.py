"""The CLI spellings of contract section 10 that the core provides, checked from outside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from asof_stream.cli import main
from tests.conftest import BASIC_TOML


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asof_stream", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, env={**os.environ, "TZ": "Asia/Kolkata"})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "asof.toml").write_text(BASIC_TOML)
    lines = [
        {"view": "customer_stats", "customer_id": "c1", "event_timestamp": "2026-01-05T10:00:00Z",
         "spend_7d": 1.0, "tier": "gold", "event_id": "a"},
        {"view": "customer_stats", "customer_id": "c1", "event_timestamp": "2026-01-04T10:00:00Z",
         "spend_7d": 0.5, "tier": "silver"},
        {"view": "merchant_risk", "merchant_id": 7, "event_timestamp": 1767607200, "risk": 0.25,
         "flagged": True},
    ]
    body = "".join(json.dumps(x) + "\n" for x in lines) + "{broken\n"
    (tmp_path / "events.jsonl").write_text(body)
    return tmp_path


def invoke(project: Path, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, "--config", str(project / "asof.toml")])


def test_replay_is_resumable_and_exactly_once(project: Path) -> None:
    r = invoke(project, "replay", str(project / "events.jsonl"))
    assert r.exit_code == 0, r.output
    assert "stored 3" in r.output and "dead letters 1" in r.output
    again = invoke(project, "replay", str(project / "events.jsonl"))
    assert "stored 0" in again.output  # resumed at the end of the file
    with (project / "events.jsonl").open("a") as fh:
        fh.write(json.dumps({"view": "merchant_risk", "merchant_id": 8, "event_timestamp": 1}) + "\n")
    more = invoke(project, "replay", str(project / "events.jsonl"))
    assert "stored 1" in more.output
    forced = invoke(project, "replay", str(project / "events.jsonl"), "--from-start")
    assert "stored 3" in forced.output and "duplicates skipped 1" in forced.output


def test_replay_bad_flags(project: Path) -> None:
    for args, message in [
        (["--view", "nope"], "unknown view 'nope'"),
        (["--available-at", "soon"], "--available-at"),
        ([], "no FILES"),
    ]:
        files = [str(project / "events.jsonl")] if args else []
        r = invoke(project, "replay", *files, *args)
        assert r.exit_code != 0 and message in r.output, r.output
    r = invoke(project, "replay", str(project / "missing.jsonl"))
    assert r.exit_code != 0 and "no such file" in r.output


def test_online_json_shape_and_statuses(project: Path) -> None:
    invoke(project, "replay", str(project / "events.jsonl"))
    r = run("online", "--features", "merchant_risk,@churn", "--entity", "merchant_id=7",
            "--entity", "customer_id=c1", "--json", cwd=project)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["entity"] == {"merchant_id": "7", "customer_id": "c1"}
    f = out["features"]
    assert f["risk"] == {"value": 0.25, "status": "PRESENT",
                         "event_timestamp": "2026-01-05T10:00:00Z"}
    assert f["flagged"]["value"] is True
    # customer_stats has a 14 day ttl and its newest row is from January 2026.
    assert f["tier"]["status"] == "OUTSIDE_MAX_AGE" and f["tier"]["value"] is None
    assert f["tier"]["event_timestamp"] == "2026-01-05T10:00:00Z"
    missing = run("online", "--features", "merchant_risk:risk", "--entity", "merchant_id=99",
                  "--json", cwd=project)
    assert json.loads(missing.stdout)["features"]["risk"]["status"] == "NOT_FOUND"


def test_online_bad_input(project: Path) -> None:
    for args, message in [
        (["--features", "merchant_risk:nope", "--entity", "merchant_id=7"], "merchant_risk:risk"),
        (["--features", "merchant_risk", "--entity", "merchant_id=seven"], "int64"),
        (["--features", "merchant_risk", "--entity", "merchant"], "KEY=VALUE"),
        (["--features", "merchant_risk", "--entity", "customer_id=c1"],
         "'customer_id' is not a join key of these features; their join keys: merchant_id"),
        (["--features", "merchant_risk,customer_stats", "--entity", "merchant_id=1"],
         "missing join key 'customer_id'"),
        (["--features", " , ", "--entity", "merchant_id=1"], "no feature references"),
    ]:
        r = run("online", *args, cwd=project)
        assert r.returncode != 0
        assert message in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1  # one clear line, no traceback


def test_status_json_fields(project: Path) -> None:
    invoke(project, "replay", str(project / "events.jsonl"))
    r = run("status", "--json", cwd=project)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    v = st["views"]["customer_stats"]
    assert (v["rows"], v["online_rows"]) == (2, 1)
    assert v["latest_event_timestamp"] == "2026-01-05T10:00:00Z"
    assert st["views"]["merchant_risk"]["rows"] == 1
    assert st["dead_letters"] == 1
    assert isinstance(st["sources"], dict)


def test_materialize_rebuilds(project: Path) -> None:
    invoke(project, "replay", str(project / "events.jsonl"))
    (project / "data" / "online.sqlite").unlink()
    r = run("materialize", cwd=project)
    assert r.returncode == 0 and "materialized 2" in r.stdout
    r = run("online", "--features", "merchant_risk:risk", "--entity", "merchant_id=7", "--json",
            cwd=project)
    assert json.loads(r.stdout)["features"]["risk"]["value"] == 0.25


def test_init_writes_a_runnable_project(tmp_path: Path) -> None:
    r = run("init", "proj", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    proj = tmp_path / "proj"
    assert run("validate", cwd=proj).returncode == 0
    rp = run("replay", "events/sample.jsonl", cwd=proj)
    assert rp.returncode == 0 and "dead letters 0" in rp.stdout
    assert run("init", "proj", cwd=tmp_path).returncode != 0  # no silent overwrite


def test_missing_config_is_one_clear_line(tmp_path: Path) -> None:
    r = run("status", cwd=tmp_path)
    assert r.returncode != 0
    assert "asof.toml: config file not found" in r.stderr


def test_every_command_module_is_listed_and_loads_lazily() -> None:
    """The lazy root group knows each command's module, and nothing else registers."""
    import importlib
    import pkgutil

    import asof_stream.cli as cli
    from asof_stream.cli.common import COMMAND_MODULES

    for info in pkgutil.iter_modules(cli.__path__):
        importlib.import_module(f"asof_stream.cli.{info.name}")
    registered = {name: cmd.callback.__module__.rsplit(".", 1)[1]
                  for name, cmd in cli.main.commands.items() if cmd.callback is not None}
    assert registered == COMMAND_MODULES
    help_text = CliRunner().invoke(cli.main, ["--help"]).output
    assert all(name in help_text for name in COMMAND_MODULES)
