"""The real Redis for the tests: a unique key prefix per test, removed afterwards.

Uses ``ASOF_TEST_REDIS`` (a ``redis://`` URL) or ``redis://127.0.0.1:6379/0``; ``.ci/run``
starts ``redis-server`` when nothing answers. If Redis does not answer, the tests that
use it fail: they never skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from asof_stream.config import Config

from .conftest import BASIC_TOML

SQLITE_ONLINE = 'online = "sqlite:///data/online.sqlite"'


def redis_base_url() -> str:
    return os.environ.get("ASOF_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """``redis://...?prefix=test-<random>``; every key under that prefix is deleted after."""
    base = redis_base_url()
    client = redis.Redis.from_url(base, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {base} does not answer ({exc}); start redis-server", pytrace=False)
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}prefix={prefix}"
    finally:
        keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
        if keys:
            client.unlink(*keys)
        client.close()


@pytest.fixture
def redis_config(make_config: Callable[..., Config], redis_url: str) -> Config:
    """The basic test config with its online store in Redis."""
    return make_config(text=BASIC_TOML.replace(SQLITE_ONLINE, f'online = "{redis_url}"'))


@pytest.fixture(params=["sqlite", "redis"])
def any_config(request: pytest.FixtureRequest, make_config: Callable[..., Config]) -> Config:
    """The basic test config over each online backend in turn."""
    if request.param == "sqlite":
        return make_config()
    url: str = request.getfixturevalue("redis_url")
    return make_config(text=BASIC_TOML.replace(SQLITE_ONLINE, f'online = "{url}"'))


class PrivateRedis:
    """A ``redis-server`` of the test's own on a free port (no persistence), so a test may
    kill and restart it; the shared Redis is never touched."""

    def __init__(self, folder: Path, args: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.args = args
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        pytest.fail(f"redis-server on port {self.port} did not start", pytrace=False)

    def kill(self) -> None:
        """SIGKILL this server (only ever the one this object started)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def client(self, **kw: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=3, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A started :class:`PrivateRedis`, killed after the test."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (needed to restart Redis in tests)",
                    pytrace=False)
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()
