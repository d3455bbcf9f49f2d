"""The feature server's read side over a real socket: Feast shapes, statuses, bad requests."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from asof_stream import FeatureStore
from asof_stream.config import Config
from asof_stream.daemon import DaemonError, run_daemon
from asof_stream.offline.log import open_log
from asof_stream.server import serve
from asof_stream.timestamps import now_micros, to_iso
from tests.daemon_checks import reaped

from .conftest import BASIC_TOML
from .fixtures_kafka import run_cli
from .fixtures_redis import SQLITE_ONLINE
from .server_helpers import running_server

EPOCH = "1970-01-01T00:00:00Z"


def _seed(config: Config) -> int:
    now = now_micros()
    with FeatureStore(config) as store:
        r = store.push([
            {"view": "customer_stats", "customer_id": "c1", "event_timestamp": to_iso(now - 10**6),
             "spend_7d": 12.5, "orders_7d": 3, "tier": "gold"},
            {"view": "customer_stats", "customer_id": "c2", "event_timestamp": "2020-01-01",
             "spend_7d": 1.0},
            {"view": "merchant_risk", "merchant_id": 7, "event_timestamp": "2020-01-01",
             "risk": 0.25, "flagged": True},
        ])
        assert r.stored == 3
    return now - 10**6


@pytest.fixture
def served(any_config: Config) -> Iterator[tuple[httpx.Client, int]]:
    ts = _seed(any_config)
    with running_server(any_config) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client, ts


def test_feast_shapes_and_statuses(served: tuple[httpx.Client, int]) -> None:
    client, ts = served
    r = client.post("/get-online-features", json={
        "features": ["customer_stats:spend_7d", "customer_stats:tier"],
        "entities": {"customer_id": ["c1", "c2", "zz"]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metadata"]["feature_names"] == ["customer_id", "spend_7d", "tier"]
    keys, spend, tier = body["results"]
    assert keys == {"values": ["c1", "c2", "zz"], "statuses": ["PRESENT"] * 3,
                    "event_timestamps": [EPOCH] * 3}
    assert spend["values"] == [12.5, None, None]
    assert spend["statuses"] == ["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
    assert spend["event_timestamps"] == [to_iso(ts), "2020-01-01T00:00:00Z", EPOCH]
    assert tier["values"] == ["gold", None, None]


def test_feature_service_full_names_and_int_keys(served: tuple[httpx.Client, int]) -> None:
    client, _ = served
    r = client.post("/get-online-features", json={
        "feature_service": "churn", "entities": {"customer_id": ["c1"]},
        "full_feature_names": True})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["feature_names"] == [
        "customer_id", "customer_stats__spend_7d", "customer_stats__tier"]
    r = client.post("/get-online-features", json={
        "features": ["merchant_risk"], "entities": {"merchant_id": [7, 8]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metadata"]["feature_names"] == ["merchant_id", "risk", "flagged"]
    assert body["results"][1]["values"] == [0.25, None]
    assert body["results"][2]["values"] == [True, None]
    # merchant_risk has no ttl: an old row is still PRESENT.
    assert body["results"][1]["statuses"] == ["PRESENT", "NOT_FOUND"]
    # Two entities in one request: both join keys, in the request's order.
    r = client.post("/get-online-features", json={
        "features": ["merchant_risk:risk", "customer_stats:tier"],
        "entities": {"merchant_id": [7], "customer_id": ["c1"]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metadata"]["feature_names"] == ["merchant_id", "customer_id", "risk", "tier"]
    assert [c["values"] for c in body["results"]] == [[7], ["c1"], [0.25], ["gold"]]


def test_http_equals_in_process(any_config: Config) -> None:
    _seed(any_config)
    rows = [{"customer_id": c} for c in ("c1", "c2", "zz")]
    with FeatureStore(any_config) as store:
        local = store.get_online_features(["customer_stats:spend_7d"], rows)
    with running_server(any_config) as url:
        r = httpx.post(url + "/get-online-features", json={
            "features": ["customer_stats:spend_7d"], "entities": {"customer_id": ["c1", "c2", "zz"]}})
    col = r.json()["results"][1]
    assert col["values"] == local["spend_7d"]
    assert col["statuses"] == local.statuses["spend_7d"]
    assert col["event_timestamps"] == [to_iso(t) if t is not None else EPOCH
                                       for t in local.event_timestamps["spend_7d"]]


@pytest.mark.parametrize(("body", "status", "needle"), [
    (b'{"features": ["customer_stats:tier"], "entities": {', 400, "malformed JSON"),
    (b"", 400, "empty request body"),
    (b"[1, 2]", 400, "expects a JSON object"),
    (b'{"entities": {"customer_id": ["c1"]}}', 400, "needs 'features'"),
    (b'{"features": ["customer_stats:nope"], "entities": {"customer_id": ["c1"]}}', 400,
     "features of customer_stats: customer_stats:spend_7d, customer_stats:orders_7d"),
    (b'{"features": ["nope:x"], "entities": {"customer_id": ["c1"]}}', 400, "known views"),
    (b'{"feature_service": "nope", "entities": {"customer_id": ["c1"]}}', 400, "@churn"),
    (b'{"features": ["customer_stats:tier"], "entities": {"customer_id": [1]}}', 400,
     "join key 'customer_id' is a string, got 1"),
    (b'{"features": ["merchant_risk:risk"], "entities": {"merchant_id": ["7"]}}', 400,
     "join key 'merchant_id' is int64"),
    (b'{"features": ["merchant_risk:risk"], "entities": {"merchant_id": [7.5]}}', 400, "int64"),
    (b'{"features": ["customer_stats:tier"], "entities": {"customer_id": [null]}}', 400,
     "missing join key 'customer_id'"),
    (b'{"features": ["merchant_risk:risk"], "entities": {"customer_id": ["c1"]}}', 400,
     "not join keys of the requested features; join keys: ['merchant_id']"),
    (b'{"features": ["merchant_risk:risk", "customer_stats:tier"],'
     b' "entities": {"merchant_id": [1]}}', 400, "missing join key column(s) ['customer_id']"),
    (b'{"features": ["customer_stats:tier"], "entities": {"customer_id": "c1"}}', 400,
     "must be a list"),
    (b'{"features": ["customer_stats:tier"], "entities": []}', 400, "'entities' must be"),
    (b'{"features": "customer_stats:tier", "entities": {"customer_id": ["c1"]},'
     b' "full_feature_names": "yes"}', 400, "full_feature_names"),
    (b'{"features": ["customer_stats:tier"], "entities": {"customer_id": ["c1"]}, "x": 1}', 400,
     "unknown field(s) ['x']"),
])
def test_bad_requests_name_the_problem(served: tuple[httpx.Client, int], body: bytes,
                                       status: int, needle: str) -> None:
    client, _ = served
    r = client.post("/get-online-features", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_name_collision_needs_full_names(make_config: Callable[..., Config]) -> None:
    cfg = make_config("""
[views.other_stats]
entity = "customer"
features = { tier = "string" }
""")
    with running_server(cfg) as url:
        r = httpx.post(url + "/get-online-features", json={
            "features": ["customer_stats:tier", "other_stats:tier"],
            "entities": {"customer_id": ["c1"]}})
        assert r.status_code == 400
        assert '"full_feature_names": true' in r.json()["detail"]
        r = httpx.post(url + "/get-online-features", json={
            "features": ["customer_stats:tier", "other_stats:tier"],
            "entities": {"customer_id": ["c1"]}, "full_feature_names": True})
        assert r.status_code == 200


def test_body_size_cap_and_routing(make_config: Callable[..., Config]) -> None:
    cfg = make_config("\n[server]\nmax_body_bytes = 200\n")
    with running_server(cfg) as url, httpx.Client(base_url=url) as client:
        big = {"features": ["customer_stats:tier"], "entities": {"customer_id": ["c" * 300]}}
        r = client.post("/get-online-features", json=big)
        assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the cap holds while reading
            yield b'{"features": ["customer_stats:tier"], '
            yield b'"entities": {"customer_id": ["' + b"c" * 300 + b'"]}}'

        r = client.post("/get-online-features", content=chunks())
        assert r.status_code == 413
        r = client.post("/push", json={"view": "customer_stats", "df": {"x": ["y" * 300]}})
        assert r.status_code == 413
        assert client.get("/nope").status_code == 404
        r = client.get("/get-online-features")
        assert r.status_code == 405 and "not allowed" in r.json()["detail"]


def test_metrics_and_health(served: tuple[httpx.Client, int]) -> None:
    client, _ = served
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["log_seq"] == 3
    client.post("/get-online-features", json={"features": ["customer_stats:tier"],
                                              "entities": {"customer_id": ["c1"]}})
    client.post("/get-online-features", content=b"{")
    text = client.get("/metrics").text
    assert 'asof_http_request_seconds_count{endpoint="get-online-features",status="200"}' in text
    assert 'asof_http_request_seconds_count{endpoint="get-online-features",status="400"}' in text
    line = next(x for x in text.splitlines()
                if x.startswith('asof_view_freshness_seconds{view="merchant_risk"}'))
    assert float(line.split()[-1]) > 86400 * 365  # its latest event is from 2020


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A private redis-server this test may stop."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed"
    port = _free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    try:
        yield port, proc
    finally:
        proc.kill()
        proc.wait()


def test_health_is_503_when_the_online_store_is_gone(
        make_config: Callable[..., Config], own_redis: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, proc = own_redis
    url = f"redis://127.0.0.1:{port}/0"
    cfg = make_config(text=BASIC_TOML.replace(SQLITE_ONLINE, f'online = "{url}"'))
    _seed(cfg)
    with running_server(cfg) as base, httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/health").status_code == 200
        read = {"features": ["customer_stats:tier"], "entities": {"customer_id": ["c1"]}}
        assert client.post("/get-online-features", json=read).json()["results"][1]["values"] \
            == ["gold"]
        proc.kill()
        proc.wait()
        r = client.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
        r = client.post("/get-online-features", json=read)
        assert r.status_code == 503 and "store unavailable" in r.json()["detail"]


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(("path", "body"), [
    ("/get-online-features", b'{"features": ["customer_stats:tier"], "entities": '
                             b'{"customer_id": ' + DEEP + b"}}"),
    ("/push", b'{"view": "customer_stats", "df": {"customer_id": ' + DEEP + b"}}"),
    ("/push", b'{"view": "customer_stats", "df": {"tier": [NaN], "customer_id": ' + DEEP
     + b"}}"),
])
def test_deeply_nested_json_is_a_400(config: Config, path: str, body: bytes) -> None:
    with running_server(config) as url:
        r = httpx.post(url + path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == "malformed JSON: nested too deeply"


def test_entities_per_request_are_capped(make_config: Callable[..., Config]) -> None:
    cfg = make_config("\n[server]\nmax_entities = 3\n")
    with running_server(cfg) as url:
        read = {"features": ["customer_stats:tier"], "entities": {"customer_id": ["a", "b", "c"]}}
        assert httpx.post(url + "/get-online-features", json=read).status_code == 200
        read["entities"]["customer_id"].append("d")
        r = httpx.post(url + "/get-online-features", json=read)
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == ("4 entities in one request is over the cap of 3"
                                  " ([server] max_entities); split the request")


def test_health_answers_while_a_big_read_runs(make_config: Callable[..., Config]) -> None:
    """A read of many entities yields to the event loop: /health does not wait for it."""
    n = 200_000
    cfg = make_config(f"\n[server]\nmax_entities = {n}\n")
    big = json.dumps({"features": ["customer_stats:spend_7d", "customer_stats:tier"],
                      "entities": {"customer_id": [f"c{i}" for i in range(n)]}}).encode()
    with running_server(cfg) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            # sendall returns once the server has taken (nearly) the whole body in.
            sock.sendall(b"POST /get-online-features HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\n"
                         + f"Content-Length: {len(big)}\r\n\r\n".encode() + big)
            time.sleep(0.2)  # the last bytes are read and the read begins; not an assertion
            health = httpx.get(url + "/health", timeout=60)
            sock.setblocking(False)
            try:
                early = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                early = b""
            sock.setblocking(True)
            head = sock.recv(12)
    assert health.status_code == 200
    assert early == b"", "/health answered only after the big read"
    assert head == b"HTTP/1.1 200"


def _raw_connection(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.settimeout(0.2)
    return sock


def _dribble_until_closed(sock: socket.socket, pieces: Iterator[bytes]) -> tuple[bytes, bool]:
    """Send a piece every 0.2 s until the server closes; (what it sent, closed first)."""
    got = b""
    for piece in pieces:
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return got, True
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return got, True
                got += data
        except TimeoutError:
            pass
        except ConnectionResetError:
            return got, True
    return got, False


def test_slow_clients_are_cut_off(make_config: Callable[..., Config]) -> None:
    """Headers, then a body one byte at a time: the server closes at its deadline."""
    cfg = make_config("\n[server]\nrequest_timeout_s = 1\n")
    with running_server(cfg) as url:
        sock = _raw_connection(url)
        head = (b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n")
        got, closed = _dribble_until_closed(sock, iter([head] + [b" "] * 100))
        sock.close()
        assert closed, "the server kept a dribbling body open"
        assert got.startswith(b"HTTP/1.1 408 "), got[:200]
        assert b"did not arrive within 1 s" in got
        # Headers that never end: closed too (no response: there is no request yet).
        sock = _raw_connection(url)
        got, closed = _dribble_until_closed(
            sock, iter([b"POST /push HTTP/1.1\r\nHost: x\r\n"] + [b"X-A: b\r\n"] * 100))
        sock.close()
        assert closed and got == b""
        # A connection that sends nothing at all.
        sock = _raw_connection(url)
        got, closed = _dribble_until_closed(sock, iter([b""] * 100))
        sock.close()
        assert closed and got == b""
        assert httpx.get(url + "/health").status_code == 200
    with open_log(cfg.offline_path) as log:
        assert log.max_seq() == 0


@pytest.mark.parametrize("server", ['host = "0.0.0.0"', 'host = "0.0.0.0"\npush_token = ""',
                                    'host = "0.0.0.0"\npush_token = "  "'])
async def test_open_push_is_refused(make_config: Callable[..., Config], server: str) -> None:
    cfg = make_config(f"\n[server]\nenabled = true\n{server}\n")
    with pytest.raises(ValueError, match="push_token") as exc:
        await serve(cfg, port=0)
    assert "--allow-open-push" in str(exc.value) and "0.0.0.0" in str(exc.value)
    with pytest.raises(DaemonError, match="refusing to serve on 0.0.0.0"):
        await run_daemon(cfg)
    r = run_cli("serve", "--config", str(cfg.path), "--port", "0")
    assert r.returncode != 0
    line, = r.stderr.strip().splitlines()
    assert "refusing to serve on 0.0.0.0" in line and "--allow-open-push" in line
    assert not cfg.offline_path.exists()  # refused before anything was opened


def test_open_push_when_asked(make_config: Callable[..., Config]) -> None:
    cfg = make_config('\n[server]\nhost = "0.0.0.0"\n')
    proc = subprocess.Popen([sys.executable, "-m", "asof_stream", "serve", "--config",
                             str(cfg.path), "--port", "0", "--allow-open-push"],
                            stderr=subprocess.PIPE, text=True)
    with reaped(proc):
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "listening on" in line:
                break
        assert "listening on http://0.0.0.0:" in lines[-1], lines
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
