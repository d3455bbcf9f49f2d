"""Redis restarts empty, or refuses connections, while processes run: the log keeps
committing, /health says the store is behind, and every process heals it from the log
without a restart (I1 again). Uses a redis-server of the test's own, killed at will."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from asof_stream.config import Config, load_config, parse_config
from asof_stream.ingest.sources.base import Record
from asof_stream.offline.log import LogRow
from asof_stream.online.base import OnlineRow
from asof_stream.stores import open_stores
from tests.daemon_checks import wait_for
from tests.fixtures_redis import PrivateRedis, free_port
from tests.server_helpers import running_server
from tests.toml_parts import CUSTOMER_STATS, PRELUDE_ONLINE

TOML = PRELUDE_ONLINE + CUSTOMER_STATS + """
[ingest]
batch_size = 200
batch_timeout_ms = 50

[server]
max_online_lag = %(max_lag)d
%(extra)s
"""


def _config(folder: Path, online: str, max_lag: int = 5, extra: str = "") -> Config:
    folder.mkdir(parents=True, exist_ok=True)
    body = TOML % {"online": online, "max_lag": max_lag, "extra": extra}
    (folder / "asof.toml").write_text(body, encoding="utf-8")
    return parse_config(body, folder / "asof.toml")


def _event(i: int, keys: int) -> bytes:
    return json.dumps({"customer_id": f"c{i % keys}", "event_timestamp": 1_767_600_000 + i,
                       "spend_7d": i / 4, "orders_7d": i, "tier": "gold"}).encode()


def _records(start: int, stop: int, keys: int) -> list[Record]:
    return [Record(_event(i, keys), f"t:{i}") for i in range(start, stop)]


def _i1(config: Config) -> tuple[dict[tuple[str, str], OnlineRow], dict[tuple[str, str], OnlineRow]]:
    """(latest log row per key, online rows): equal when the online store is healed."""
    with open_stores(config, heal=False) as stores:
        latest = {(r.view, r.entity): OnlineRow(r.view, r.entity, r.event_ts, r.seq,
                                                r.ingest_ts, r.features)
                  for r in stores.log.latest_rows()}
        online = {(r.view, r.entity): r for r in stores.online.entries()}
    return latest, online


def _get(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read().decode()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read().decode(), exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def _poll(check: Callable[[], bool], seconds: float, what: str) -> None:
    wait_for(what, check, seconds)


def test_commits_go_on_while_redis_is_down_and_a_healer_catches_up(
        tmp_path: Path, private_redis: PrivateRedis) -> None:
    from asof_stream.online.heal import Healer

    config = _config(tmp_path, private_redis.url)
    with open_stores(config) as stores:
        committer = stores.committer()
        committer.commit("t", _records(0, 300, 40))
        private_redis.kill()
        for start in range(300, 900, 100):  # no exception: the log is the truth
            assert committer.commit("t", _records(start, start + 100, 40)).stored == 100
        assert stores.log.max_seq() == 900
        healer = Healer(stores.log, stores.online)
        assert healer.tick().error is not None  # still down: recorded, not raised
        private_redis.start()  # back, and empty
        state = healer.tick()
        assert state.error is None and state.applied_seq == 900 and state.lag == 0
        assert state.resets == 1
    latest, online = _i1(config)
    assert len(latest) == 40 and online == latest


def test_catch_up_never_counts_chunks_applied_to_a_store_that_reset_under_it(
        tmp_path: Path, private_redis: PrivateRedis) -> None:
    """Redis resets in the middle of a replay of the tail: the chunks after the reset
    must not make the empty store claim the seqs before them."""
    from asof_stream.online.materialize import catch_up

    config = _config(tmp_path, private_redis.url)
    with open_stores(config) as stores:
        stores.committer().commit("t", _records(0, 50, 50))
        client = private_redis.client()
        client.flushall()  # Redis restarted empty: the tail to replay is 1..50
        real = stores.log.rows_after

        def rows_after(seq: int, chunk: int = 10_000) -> Iterator[list[LogRow]]:
            for i, part in enumerate(real(seq, chunk=10)):
                if i == 2:
                    client.flushall()  # our own server resets between two chunks
                yield part

        stores.log.rows_after = rows_after  # type: ignore[method-assign]
        catch_up(stores.log, stores.online)
        assert stores.online.applied_seq() == 0  # seqs 1..20 are not in it
        stores.log.rows_after = real  # type: ignore[method-assign]
        from asof_stream.online.heal import Healer

        assert Healer(stores.log, stores.online).tick().lag == 0
    latest, online = _i1(config)
    assert len(latest) == 50 and online == latest


def test_health_is_503_while_the_online_store_is_behind(tmp_path: Path,
                                                       private_redis: PrivateRedis) -> None:
    from asof_stream.online.heal import Healer

    config = _config(tmp_path, private_redis.url, max_lag=5)
    with open_stores(config) as stores:
        stores.committer().commit("t", _records(0, 50, 10))
        with running_server(config, heal=False) as base:
            status, body = _get(base + "/health")
            assert status == 200 and body["online_lag"] == 0, body
            private_redis.client().flushall()  # Redis restarted empty, say
            status, body = _get(base + "/health")
            assert status == 503 and body["status"] == "behind", body
            assert "50 seqs behind" in body["reason"] and "max_online_lag = 5" in body["reason"]
            assert body["online_applied_seq"] == 0 and body["log_seq"] == 50
            _, metrics = _get(base + "/metrics")
            assert "asof_online_lag_seqs 50.0" in metrics
            private_redis.kill()
            status, body = _get(base + "/health")
            assert status == 503 and body["status"] == "unavailable" and body["reason"]
            private_redis.start()
            assert Healer(stores.log, stores.online).tick().lag == 0
            status, body = _get(base + "/health")
            assert status == 200 and body["status"] == "ok", body
            _, metrics = _get(base + "/metrics")
            assert "asof_online_lag_seqs 0.0" in metrics


def test_daemon_and_server_heal_after_redis_dies_and_restarts_empty(
        tmp_path: Path, private_redis: PrivateRedis) -> None:
    """A real daemon tails a file into the log and our Redis; Redis is SIGKILLed
    mid-stream and the daemon keeps committing the log; Redis comes back empty; the
    daemon and a separate feature server heal it: every entity PRESENT with the log's
    newest value (I1), and /health back to 200, without restarting either."""
    keys, total = 500, 6000
    folder = tmp_path / "project"
    port = free_port()
    _config(folder, private_redis.url, max_lag=0, extra=f"""port = {port}

[sources.tail]
kind = "file"
path = "events/*.jsonl"
poll_interval = 0.05
""")
    (folder / "events").mkdir()
    config_path = str(folder / "asof.toml")
    cmd = [sys.executable, "-m", "asof_stream", "--log-level", "INFO"]
    daemon_log = (folder / "daemon.log").open("ab")
    server_log = (folder / "server.log").open("ab")
    daemon = subprocess.Popen([*cmd, "run", "--config", config_path], stdout=daemon_log,
                              stderr=subprocess.STDOUT)
    server = subprocess.Popen([*cmd, "serve", "--config", config_path], stdout=server_log,
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    written = [0]

    def write(upto: int) -> None:
        with (folder / "events" / "a.jsonl").open("ab") as fh:
            for i in range(written[0], upto):
                fh.write(_event(i, keys) + b"\n")
                if i % 100 == 0:
                    fh.flush()
                    time.sleep(0.01)
        written[0] = upto

    def log_seq() -> int:
        with open_stores(load_config(config_path), heal=False) as stores:
            return stores.log.max_seq()

    try:
        _poll(lambda: _get(base + "/health")[0] == 200, 60, "the server answers /health")
        write(2000)
        _poll(lambda: log_seq() == 2000, 60, "the daemon commits the first 2,000 events")
        private_redis.kill()
        writer = threading.Thread(target=write, args=(4000,))
        writer.start()
        writer.join()
        _poll(lambda: log_seq() == 4000, 60, "the daemon keeps committing with Redis down")
        assert daemon.poll() is None, "the daemon exited when Redis went away"
        assert _get(base + "/health")[0] == 503
        private_redis.start()  # empty: no persistence
        write(total)

        def healed() -> bool:
            if log_seq() != total:
                return False
            latest, online = _i1(load_config(config_path))
            return len(latest) == keys and online == latest

        _poll(healed, 90, "the online store equals the log's newest rows (I1)")
        _poll(lambda: _get(base + "/health")[0] == 200, 60, "/health is 200 again")
        latest, _ = _i1(load_config(config_path))
        entities = sorted(e for _, e in latest)
        status, body = _get(base + "/get-online-features", {
            "features": ["customer_stats:orders_7d"], "entities": {"customer_id": entities}})
        assert status == 200, body
        column = body["results"][1]
        assert column["statuses"] == ["PRESENT"] * keys
        want = [json.loads(latest[("customer_stats", e)].features)["orders_7d"]
                for e in entities]
        assert column["values"] == want
        st = subprocess.run([*cmd, "status", "--json", "--config", config_path],
                            capture_output=True, text=True, timeout=60)
        report = json.loads(st.stdout)
        assert report["online_lag"] == 0 and report["online_applied_seq"] == total
        assert daemon.poll() is None and server.poll() is None
    finally:
        for proc in (daemon, server):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(30) for proc in (daemon, server)]
        daemon_log.close()
        server_log.close()
    text = (folder / "daemon.log").read_text()
    assert codes == [0, 0], text[-3000:]
    assert "Traceback" not in text, text[-3000:]
