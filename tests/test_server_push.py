"""POST /push over a real socket: one transaction per request, dead letters, auth, `to`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from asof_stream.config import Config
from asof_stream.offline.log import open_log
from asof_stream.stores import open_stores
from asof_stream.timestamps import now_micros, to_iso

from .server_helpers import running_server

# Recent days (UTC), well inside the views' ttl and not in the future ([ingest] max_future).
_BASE = datetime.now(UTC).date() - timedelta(days=12)
D1, D4, D5, D32 = ((_BASE + timedelta(days=n)).isoformat() for n in (0, 3, 4, 10))
RECENT = int(datetime.fromisoformat(f"{D1}T00:00:00+00:00").timestamp())  # epoch seconds

READ = {"features": ["customer_stats:spend_7d", "customer_stats:tier"],
        "entities": {"customer_id": ["c1", "c2"]}}


def _log_counts(config: Config) -> tuple[int, int]:
    with open_log(config.offline_path) as log:
        return log.max_seq(), log.dead_letter_count()


def test_push_then_read_with_dead_letters_and_duplicates(any_config: Config) -> None:
    with running_server(any_config) as url, httpx.Client(base_url=url, timeout=10) as client:
        r = client.post("/push", headers={"x-request-id": "req-1"}, json={
            "push_source_name": "customer_stats",
            "df": {"customer_id": ["c1", "c2", "c3", "c1"],
                   "event_timestamp": [f"{D5} 10:00:00", f"{D5}T10:00:00Z", "never",
                                       f"{D4}T10:00:00Z"],
                   "spend_7d": [1.5, 2, 3.0, 9.0], "tier": ["gold", None, "x", "old"],
                   "event_id": ["e1", "e2", "e3", "e4"]},
            "to": "online"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["stored"], body["duplicates"], body["rejected"]) == (3, 0, 1)
        assert body["rejects"][0]["row"] == 2
        assert body["rejects"][0]["position"] == "push:req-1:2"
        assert "bad event_timestamp" in body["rejects"][0]["reason"]
        assert (body["to"], body["logged"], body["online_updated"]) == ("online", True, True)
        assert body["dead_letters"] == 1
        out = client.post("/get-online-features", json=READ).json()
        # c1's row from D4 is older than the one from D5: it does not win.
        assert out["results"][1]["values"] == [1.5, 2.0]
        assert out["results"][2]["values"] == ["gold", None]
        assert out["results"][1]["statuses"] == ["PRESENT", "PRESENT"]
        # The same event_ids again: skipped as duplicates, nothing new stored.
        r = client.post("/push", json={"view": "customer_stats", "df": {
            "customer_id": ["c1"], "event_timestamp": [f"{D32}T00:00:00Z"],
            "spend_7d": [100.0], "event_id": ["e1"]}})
        assert (r.json()["stored"], r.json()["duplicates"]) == (0, 1)
    assert _log_counts(any_config) == (3, 1)
    with open_stores(any_config) as stores:
        dead = stores.log.conn.execute("SELECT source, position, reason FROM dead_letters").fetchall()
    assert dead == [("http", "push:req-1:2", dead[0][2])]


@pytest.mark.parametrize("to", ["online", "online_and_offline", "both"])
def test_online_targets_log_and_serve(any_config: Config, to: str) -> None:
    """I1/I2: an online push is logged too (the log is the online store's source)."""
    with running_server(any_config) as url:
        r = httpx.post(url + "/push", json={"view": "customer_stats", "to": to, "df": {
            "customer_id": ["c1"], "event_timestamp": [f"{D1}T00:00:00Z"], "tier": ["t"]}})
        assert r.status_code == 200 and r.json()["stored"] == 1
        assert (r.json()["to"], r.json()["online_updated"]) == (to, True)
        got = httpx.post(url + "/get-online-features", json=READ).json()
        assert got["results"][2]["values"] == ["t", None]
    with open_stores(any_config) as stores:
        latest = {(x.view, x.entity): x.seq for x in stores.log.latest_rows()}
        online = {(x.view, x.entity): x.seq for x in stores.online.entries()}
    assert latest == online == {("customer_stats", "c1"): 1}


def test_offline_push_backfills_history_only(any_config: Config) -> None:
    """to=offline: logged, the online store untouched; a row it would have to serve is refused."""
    def push(url: str, to: str, ids: list[str], ts: list[str], tier: list[str]) -> httpx.Response:
        return httpx.post(url + "/push", json={"view": "customer_stats", "to": to, "df": {
            "customer_id": ids, "event_timestamp": ts, "tier": tier}})

    day = 86_400 * 10**6
    base = now_micros() - 10 * day  # recent, so the 14d ttl serves it; never in the future

    def at(d: int) -> str:
        return to_iso(base + d * day) or ""

    with running_server(any_config) as url:
        assert push(url, "online", ["c1"], [at(4)], ["now"]).status_code == 200
        r = push(url, "offline", ["c1", "c1", "c2"], [at(0), at(5), at(0)],
                 ["older", "newer", "no-online-row"])
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["stored"], body["dead_letters"], body["to"]) == (1, 2, "offline")
        assert (body["logged"], body["online_updated"]) == (True, False)
        assert [x["row"] for x in body["rejects"]] == [1, 2]
        assert "to=online_and_offline" in body["rejects"][0]["reason"]
        got = httpx.post(url + "/get-online-features", json=READ).json()
        assert got["results"][2]["values"] == ["now", None]
        # Every row refused: 422 with the reasons, nothing stored.
        r = push(url, "offline", ["c2"], [at(0)], ["x"])
        assert r.status_code == 422 and r.json()["stored"] == 0
    with open_stores(any_config) as stores:
        rows = stores.log.conn.execute("SELECT entity, features FROM log ORDER BY seq").fetchall()
        latest = {(x.view, x.entity): x.seq for x in stores.log.latest_rows()}
        online = {(x.view, x.entity): x.seq for x in stores.online.entries()}
    assert [(e, json.loads(f)["tier"]) for e, f in rows] == [("c1", "now"), ("c1", "older")]
    assert latest == online == {("customer_stats", "c1"): 1}  # I1: the log agrees online


def test_push_with_every_row_rejected_is_422(config: Config) -> None:
    with running_server(config) as url:
        r = httpx.post(url + "/push", json={"view": "customer_stats", "df": {
            "customer_id": ["c1", "c2"], "event_timestamp": ["never", "2026-01-01"],
            "orders_7d": [1, "many"]}})
    assert r.status_code == 422, r.text
    body = r.json()
    assert (body["stored"], body["dead_letters"]) == (0, 2)
    assert "bad event_timestamp" in body["rejects"][0]["reason"]
    assert "orders_7d" in body["rejects"][1]["reason"]
    assert _log_counts(config) == (0, 2)


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"view": "customer_stats", "df": {"customer_id": ["c1"]}, "to": "elsewhere"}, 400,
     "'to' must be one of"),
    ({"view": "customer_stats"}, 400, "needs 'df'"),
    ({"view": "nope", "df": {"customer_id": ["c1"]}}, 404, "unknown view 'nope'"),
    ({"push_source_name": "nope", "df": {"customer_id": ["c1"]}}, 404,
     "unknown push_source_name 'nope'"),
    ({"push_source_name": "clicks", "view": "merchant_risk", "df": {"customer_id": ["c1"]}}, 400,
     "bound to view 'customer_stats'"),
    ({"view": "customer_stats", "df": {"customer_id": ["c1", "c2"], "tier": ["a", "b", "c"]}},
     400, "differ in length"),
    ({"view": "customer_stats", "df": "rows"}, 400, "'df' must be an object of columns"),
    ({"view": "customer_stats", "df": [1]}, 400, "df[0] must be an object"),
    ({"view": "customer_stats", "df": {"customer_id": ["c1"]}, "extra": 1}, 400,
     "unknown field(s) ['extra']"),
])
def test_bad_push_requests(make_config: Callable[..., Config], body: dict[str, Any], status: int,
                           needle: str) -> None:
    cfg = make_config('\n[sources.clicks]\nkind = "http"\nview = "customer_stats"\n')
    with running_server(cfg) as url:
        r = httpx.post(url + "/push", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]
    assert _log_counts(cfg) == (0, 0)


def test_http_source_binds_view_and_names_the_source(make_config: Callable[..., Config]) -> None:
    cfg = make_config('\n[sources.clicks]\nkind = "http"\nview = "customer_stats"\n')
    with running_server(cfg) as url:
        r = httpx.post(url + "/push", json={"push_source_name": "clicks", "df": [
            {"customer_id": "c1", "event_timestamp": RECENT, "orders_7d": 2},
            {"customer_id": "c2", "event_timestamp": RECENT, "orders_7d": 2.5},
            {"customer_id": "c3", "event_timestamp": RECENT, "bogus": 1},
        ]})
    body = r.json()
    assert (body["source"], body["stored"], body["rejected"]) == ("clicks", 1, 2)
    reasons = [x["reason"] for x in body["rejects"]]
    assert "orders_7d" in reasons[0] and "int64" in reasons[0]
    assert "unknown field(s) ['bogus']" in reasons[1]
    with open_stores(cfg) as stores:
        src = stores.log.conn.execute("SELECT DISTINCT source FROM log").fetchall()
    assert src == [("clicks",)]


def test_bearer_token(make_config: Callable[..., Config]) -> None:
    cfg = make_config('\n[server]\npush_token = "s3cret"\n')
    push = {"view": "customer_stats",
            "df": {"customer_id": ["c1"], "event_timestamp": [f"{D1}T00:00:00Z"]}}
    with running_server(cfg) as url, httpx.Client(base_url=url) as client:
        r = client.post("/push", json=push)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = client.post("/push", json=push, headers={"authorization": "Bearer wrong"})
        assert r.status_code == 401 and "wrong push token" in r.json()["detail"]
        r = client.post("/push", json=push, headers={"authorization": "Basic s3cret"})
        assert r.status_code == 401
        assert _log_counts(cfg) == (0, 0)
        # Reads need no token.
        assert client.post("/get-online-features", json=READ).status_code == 200
        r = client.post("/push", json=push, headers={"authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json()["stored"] == 1
    assert _log_counts(cfg) == (1, 0)


def test_token_from_environment(make_config: Callable[..., Config],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASOF_PUSH_TOKEN", "from-env")
    cfg = make_config()
    push = {"view": "customer_stats",
            "df": {"customer_id": ["c1"], "event_timestamp": [f"{D1}T00:00:00Z"]}}
    with running_server(cfg) as url:
        assert httpx.post(url + "/push", json=push).status_code == 401
        ok = httpx.post(url + "/push", json=push, headers={"authorization": "Bearer from-env"})
        assert ok.status_code == 200
    assert _log_counts(cfg) == (1, 0)


def test_nan_for_a_field_that_allows_it(make_config: Callable[..., Config]) -> None:
    cfg = make_config("""
[entities.s]
join_keys = { s_id = "string" }
[views.sensor]
entity = "s"
features = { v = { dtype = "float64", allow_nan = true }, w = "float64" }
""")
    with running_server(cfg) as url:
        r = httpx.post(url + "/push", content=b'{"view": "sensor", "df": {"s_id": ["a", "b"],'
                       b' "event_timestamp": [1, 1], "v": [NaN, 1.0], "w": [1.0, NaN]}}')
        body = r.json()
        assert (body["stored"], body["rejected"]) == (1, 1)
        assert "w" in body["rejects"][0]["reason"]
        got = httpx.post(url + "/get-online-features", json={
            "features": ["sensor:v"], "entities": {"s_id": ["a"]}}).json()
    # JSON has no NaN: the stored NaN is served as null, and PRESENT.
    assert got["results"][1] == {"values": [None], "statuses": ["PRESENT"],
                                 "event_timestamps": ["1970-01-01T00:00:01Z"]}


def _stored_bytes(config: Config) -> int:
    """The size of every store file (log, online, their WAL and journal files)."""
    data = config.offline_path.parent
    return sum(p.stat().st_size for p in data.iterdir() if p.is_file())


def test_hostile_push_costs_no_more_than_its_size(make_config: Callable[..., Config]) -> None:
    """A scalar is not repeated down the rows; an oversized record keeps an excerpt."""
    cfg = make_config("\n[ingest]\nmax_event_bytes = 65536\n")
    big = "x" * 70_000
    ids = [f"c{i}" for i in range(50)]
    ts = ["2026-01-01T00:00:00Z"] * 50
    hostile: list[dict[str, Any]] = [
        # A scalar column: once repeated down 50 rows, 50 oversized dead letters.
        {"view": "customer_stats", "df": {"customer_id": ids, "event_timestamp": ts,
                                          "tier": big}},
        # A long unknown column name: repeated in every row and every dead letter.
        {"view": "customer_stats", "df": {"customer_id": ids * 20, "event_timestamp": ts * 20,
                                          "y" * 5000: [0] * 1000}},
        # One honest row over the event size limit: a dead letter, kept as an excerpt.
        {"view": "customer_stats", "df": {"customer_id": ["c1"], "event_timestamp": ts[:1],
                                          "tier": [big]}},
    ]
    with running_server(cfg) as url, httpx.Client(base_url=url, timeout=30) as client:
        warm = client.post("/push", json={"view": "customer_stats", "df": {
            "customer_id": ["c0"], "event_timestamp": ts[:1], "tier": ["t"]}})
        assert warm.status_code == 200, warm.text
        before = _stored_bytes(cfg)
        sent = 0
        replies = []
        for body in hostile:
            content = json.dumps(body).encode()
            sent += len(content)
            replies.append(client.post("/push", content=content,
                                       headers={"content-type": "application/json"}))
        after = _stored_bytes(cfg)
    assert after - before <= 4 * sent + 256 * 1024, (after - before, sent)
    scalar, unknown, oversized = replies
    assert scalar.status_code == 400, scalar.text
    assert "'tier' must be a list" in scalar.json()["detail"]
    assert unknown.status_code == 400 and "unknown column(s)" in unknown.json()["detail"]
    assert oversized.status_code == 422, oversized.text
    with open_log(cfg.offline_path) as log:
        dead = log.conn.execute("SELECT raw, reason FROM dead_letters").fetchall()
    assert len(dead) == 1
    raw, reason = dead[0]
    full = json.dumps({"customer_id": "c1", "event_timestamp": ts[0], "tier": big},
                      separators=(",", ":")).encode()
    assert raw == full[:4096]
    assert "oversized event" in reason and f"first 4096 of {len(full)} bytes kept" in reason


@pytest.mark.parametrize("df", [
    {"customer_id": ["c1", "c2"], "tier": "gold"},
    {"customer_id": ["c1", "c2"], "tier": ["gold"]},
])
def test_scalar_or_short_column_is_refused(config: Config, df: dict[str, Any]) -> None:
    with running_server(config) as url:
        r = httpx.post(url + "/push", json={"view": "customer_stats", "df": df})
    assert r.status_code == 400, r.text
    assert "tier" in r.json()["detail"]
    assert _log_counts(config) == (0, 0)
