"""The real Redis for the tests: a unique key prefix per test, removed afterwards.

Uses ``ASOF_TEST_REDIS`` (a ``redis://`` URL) or ``redis://127.0.0.1:6379/0``; ``.ci/run``
starts ``redis-server`` when nothing answers. If Redis does not answer, the tests that
use it fail: they never skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

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
