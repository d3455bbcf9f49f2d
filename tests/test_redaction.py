"""Credentials are never printed: not in /health, the page, /metrics, status, features,
logs or errors (real Redis with a password and an ACL user, a real daemon process)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import load_config
from asof_stream.redaction import redact_url
from tests.fixtures_redis import PrivateRedis
from tests.server_helpers import running_server
from tests.toml_parts import CUSTOMER_STATS, PRELUDE_ONLINE

PASSWORD = "pw-S3cret"
USER, USER_PASSWORD = "alice", "alice-Pw9"
SECRETS = (PASSWORD, USER_PASSWORD)

TOML = PRELUDE_ONLINE + CUSTOMER_STATS + """
[sources.tail]
kind = "file"
path = "events/*.jsonl"
poll_interval = 0.05
"""


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://u:pw@h:6379/0?prefix=x", "redis://u:***@h:6379/0?prefix=x"),
    ("rediss://pw@h/0", "rediss://***@h/0"),
    ("redis://h:6379/0?password=pw&prefix=a:b", "redis://h:6379/0?password=***&prefix=a:b"),
    ("redis://u:p%40ss@h/0", "redis://u:***@h/0"),
    ("redis://h:6379/0", "redis://h:6379/0"),
    ("sqlite:///data/online.sqlite", "sqlite:///data/online.sqlite"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.fixture
def secured_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    acl = tmp_path / "users.acl"
    acl.write_text(f"user default on >{PASSWORD} ~* &* +@all\n"
                   f"user {USER} on >{USER_PASSWORD} ~* &* +@all\n", encoding="utf-8")
    server = PrivateRedis(tmp_path / "redis", ("--aclfile", str(acl)))
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows a password: {text[:400]}"


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


@pytest.mark.parametrize("auth", [f":{PASSWORD}", f"{USER}:{USER_PASSWORD}"])
def test_no_output_shows_the_redis_password(tmp_path: Path, secured_redis: PrivateRedis,
                                            auth: str) -> None:
    url = f"redis://{auth}@127.0.0.1:{secured_redis.port}/0?prefix=red"
    folder = tmp_path / "project"
    (folder / "events").mkdir(parents=True)
    (folder / "asof.toml").write_text(TOML % {"online": url}, encoding="utf-8")
    events = "".join(json.dumps({"customer_id": f"c{i}", "event_timestamp": 1_767_600_000 + i,
                                 "spend_7d": i, "orders_7d": i, "tier": "gold"}) + "\n"
                     for i in range(30))
    (folder / "events" / "a.jsonl").write_text(events, encoding="utf-8")
    config_path = str(folder / "asof.toml")
    cmd = [sys.executable, "-m", "asof_stream", "--log-level", "INFO"]
    done = subprocess.run([*cmd, "run", "--config", config_path, "--until-caught-up"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    _assert_clean(done.stdout + done.stderr, "the daemon's log")

    config = load_config(config_path)
    with running_server(config) as base:
        for path in ("/health", "/", "/metrics"):
            body = _get(base + path)
            assert body
            _assert_clean(body, path)
        health = json.loads(_get(base + "/health"))
        assert health["status"] == "ok" and health["online"].startswith("redis://")
        assert "***" in health["online"]

    runner = CliRunner()
    for args in (["status"], ["status", "--json"], ["features"], ["features", "--json"],
                 ["online", "--features", "customer_stats:spend_7d", "--entity",
                  "customer_id=c1", "--json"]):
        res = runner.invoke(main, [*args, "--config", config_path])
        assert res.exit_code == 0, res.output
        _assert_clean(res.output, " ".join(args))
    status = json.loads(runner.invoke(main, ["status", "--json", "--config",
                                             config_path]).output)
    assert "***" in status["online"] and status["online_lag"] == 0

    # Redis down: the warnings and errors name the store, redacted.
    secured_redis.kill()
    (folder / "events" / "b.jsonl").write_text(events.replace('"c', '"d'), encoding="utf-8")
    down = subprocess.run([*cmd, "run", "--config", config_path, "--until-caught-up"],
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert "127.0.0.1" in down.stderr  # it did say which store does not answer
    _assert_clean(down.stdout + down.stderr, "the daemon's log with Redis down")
    for args in (["status"], ["status", "--json"],
                 ["online", "--features", "customer_stats:spend_7d", "--entity",
                  "customer_id=c1"], ["materialize"]):
        res = subprocess.run([*cmd, *args, "--config", config_path], capture_output=True,
                             text=True, timeout=60)
        assert "Traceback" not in res.stderr, res.stderr
        _assert_clean(res.stdout + res.stderr, " ".join(args) + " with Redis down")

    # A config error repeats the URL: redacted too.
    (folder / "asof.toml").write_text(TOML % {"online": url.replace("prefix=red", "prefix=r*")},
                                      encoding="utf-8")
    bad = subprocess.run([*cmd, "status", "--config", config_path], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1 and "prefix='r*'" in bad.stderr
    _assert_clean(bad.stderr, "the config error")
