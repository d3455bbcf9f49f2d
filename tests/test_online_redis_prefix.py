"""Redis key prefixes: checked in the config, and one project's rebuild never touches
another project's keys, whatever their prefixes (glob characters, nesting names)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from asof_stream.config import Config, ConfigError, parse_config
from asof_stream.online.base import OnlineRow
from asof_stream.online.materialize import materialize
from asof_stream.online.redis import RedisOnlineStore
from asof_stream.stores import open_stores
from tests.conftest import BASIC_TOML
from tests.fixtures_redis import SQLITE_ONLINE, redis_base_url


def _config(folder: Path, url: str) -> Config:
    folder.mkdir(parents=True, exist_ok=True)
    body = BASIC_TOML.replace(SQLITE_ONLINE, f'online = "{url}"')
    path = folder / "asof.toml"
    path.write_text(body, encoding="utf-8")
    return parse_config(body, path)


def _literal(text: str) -> str:
    """``text`` escaped for SCAN MATCH, written here apart from the code under test."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _url(prefix: str) -> str:
    base = redis_base_url()
    return f"{base}{'&' if '?' in base else '?'}prefix={prefix}"


@pytest.mark.parametrize("bad", ["rt1*", "a?", "x[1]", "back\\slash", "{a}", "a b", "", "é"])
def test_a_bad_prefix_is_a_config_error_naming_the_url_parameter(tmp_path: Path,
                                                                 bad: str) -> None:
    url = f"redis://user:pw-secret@127.0.0.1:6379/0?prefix={bad}"
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, url.replace("\\", "\\\\"))
    text = str(info.value)
    assert "store.online" in text and "URL parameter prefix=" in text
    assert repr(bad) in text and "letters, digits and _ . - :" in text
    assert "pw-secret" not in text


def test_a_bad_prefix_fails_the_cli_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "asof.toml").write_text(BASIC_TOML.replace(
        SQLITE_ONLINE, 'online = "redis://127.0.0.1:6379/0?prefix=rt1*"'), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "asof_stream", "materialize", "--config",
                           str(tmp_path / "asof.toml")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "prefix='rt1*'" in lines[0] and "Traceback" not in done.stderr


def test_glob_escape_makes_every_pattern_character_literal() -> None:
    from asof_stream.online.redis_url import glob_escape

    client = redis.Redis.from_url(redis_base_url())
    tag = uuid.uuid4().hex[:8]
    keys = [f"esc-{tag}-a*b", f"esc-{tag}-axb", f"esc-{tag}-a?b[1]\\", f"esc-{tag}-a?b11\\"]
    try:
        for k in keys:
            client.set(k, 1)
        for k in keys:
            found = {x.decode() for x in client.scan_iter(match=glob_escape(k), count=1000)}
            assert found == {k}
    finally:
        client.delete(*keys)


@pytest.fixture
def nesting_prefixes() -> Iterator[list[str]]:
    """Prefixes that nest as strings and as key paths: P, P:0, P:0:r, P1, P0."""
    p = f"nest-{uuid.uuid4().hex[:8]}"
    prefixes = [p, f"{p}:0", f"{p}:0:r", f"{p}1", f"{p}0"]
    yield prefixes
    client = redis.Redis.from_url(redis_base_url())
    for q in prefixes:
        keys = list(client.scan_iter(match="{" + _literal(q) + "}:*", count=1000))
        keys += list(client.scan_iter(match=_literal(q) + ":*", count=1000))  # old layout
        if keys:
            client.unlink(*keys)
    client.close()


def _dump(client: redis.Redis, prefix: str) -> dict[bytes, object]:
    out: dict[bytes, object] = {}
    for key in client.scan_iter(match="{" + _literal(prefix) + "}:*", count=1000):
        kind = client.type(key)
        if kind == b"string":
            out[key] = client.get(key)
        elif kind == b"set":
            out[key] = sorted(client.smembers(key))  # type: ignore[arg-type]
        else:
            out[key] = client.zrange(key, 0, -1, withscores=True)
    return out


def test_nesting_prefixes_never_touch_each_other(tmp_path: Path,
                                                 nesting_prefixes: list[str]) -> None:
    """Two (here five) projects on one Redis with prefixes that nest: materialize (with
    an empty log and with rows) and replace_all on one leave every other key as it was."""
    client = redis.Redis.from_url(redis_base_url())
    stores = [RedisOnlineStore(_url(p)) for p in nesting_prefixes]
    try:
        for i, s in enumerate(stores):
            rows = [OnlineRow("customer_stats", f"c{j}", 1000 + j, j + 1, 1,
                              json.dumps({"spend_7d": i * 100 + j}))
                    for j in range(20)]
            s.apply(rows, 20)
        def seen(j: int) -> object:
            """What another project holds: its rows and applied seq, and its raw keys."""
            return (sorted(stores[j].entries(), key=lambda r: r.entity),
                    stores[j].applied_seq(), _dump(client, nesting_prefixes[j]))

        for i, prefix in enumerate(nesting_prefixes):
            before = {q: seen(j) for j, q in enumerate(nesting_prefixes) if q != prefix}
            config = _config(tmp_path / f"p{i}", _url(prefix))
            with open_stores(config, heal=False) as opened:
                assert materialize(opened.log, opened.online) == 0  # the empty log
                assert opened.online.count("customer_stats") == 0
            stores[i].replace_all([OnlineRow("customer_stats", "z", 5, 1, 1, "{}")], 1)
            stores[i].replace_all([], 0)
            after = {q: seen(j) for j, q in enumerate(nesting_prefixes) if q != prefix}
            assert after == before, f"materialize of prefix {prefix!r} touched another's keys"
            for j, other in enumerate(stores):
                if j > i:
                    assert other.count("customer_stats") == 20
                    got = other.get("customer_stats", ["c3"])[0]
                    assert got is not None and json.loads(got.features) == {"spend_7d": j * 100 + 3}
    finally:
        for s in stores:
            s.close()
        client.close()


def test_keys_of_a_prefix_live_under_its_braces(redis_url: str) -> None:
    store = RedisOnlineStore(redis_url)
    try:
        store.apply([OnlineRow("v", "e", 1, 1, 1, "{}")], 1)
        prefix = redis_url.rsplit("prefix=", 1)[1]
        keys = {k.decode() for k in store.client.scan_iter(match="*" + _literal(prefix) + "*")}
        assert keys and all(k.startswith("{" + prefix + "}:") for k in keys)
    finally:
        store.close()


