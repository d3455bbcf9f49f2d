"""Windowed aggregations online: the value read at ``t`` equals the training-set value for a
label at ``t`` (the brute-force oracle over the log), for late and out-of-order events,
duplicates, a SIGKILLed daemon, a rebuild, a Redis reset, and both online backends; and
the window slides with the clock when no event arrives."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from asof_stream.config import Config, parse_config
from asof_stream.ingest.sources.base import Record
from asof_stream.online.lookup import NOT_FOUND, PRESENT, read_online
from asof_stream.online.materialize import catch_up, materialize
from asof_stream.stores import Stores, open_stores
from asof_stream.timestamps import now_micros
from tests.aggregation_oracle import all_rows, oracle, same
from tests.fixtures_kafka import cli, run_cli
from tests.fixtures_redis import PrivateRedis
from tests.toml_parts import PRELUDE_ONLINE, PURCHASES

HOUR = 3_600_000_000
DAY = 24 * HOUR

TOML = PRELUDE_ONLINE + PURCHASES + """
[views.visits]
entity = "customer"
features = { pages = "int64", device = "string" }

[aggregations.spend]
source = "purchases"

[aggregations.spend.features]
amount_1h = { fn = "sum", of = "amount", window = "1h" }
qty_1d = { fn = "sum", of = "qty", window = "1d" }
orders_1d = { fn = "count", window = "1d" }
amounts_6h = { fn = "count", of = "amount", window = "6h" }
mean_6h = { fn = "mean", of = "amount", window = "6h" }
min_qty_1d = { fn = "min", of = "qty", window = "1d" }
max_amount_2d = { fn = "max", of = "amount", window = "2d" }
last_cat_1d = { fn = "last", of = "category", window = "1d" }
std_1d = { fn = "stddev", of = "amount", window = "1d" }
mean_qty_1d = { fn = "mean", of = "qty", window = "1d" }

[aggregations.habits]
source = "visits"

[aggregations.habits.features]
visits = { fn = "count" }
pages = { fn = "sum", of = "pages" }
last_device = { fn = "last", of = "device" }
pages_3h = { fn = "max", of = "pages", window = "3h" }
std_pages = { fn = "stddev", of = "pages" }

[ingest]
batch_size = %(batch)d
batch_timeout_ms = 50
"""

SPEND = ["amount_1h", "qty_1d", "orders_1d", "amounts_6h", "mean_6h", "min_qty_1d",
         "max_amount_2d", "last_cat_1d", "std_1d", "mean_qty_1d"]
HABITS = ["visits", "pages", "last_device", "pages_3h", "std_pages"]
PAIRS = [("spend", f) for f in SPEND] + [("habits", f) for f in HABITS]


def make_config(folder: Path, online: str, batch: int = 200, sources: str = "") -> Config:
    folder.mkdir(parents=True, exist_ok=True)
    body = TOML % {"online": online, "batch": batch} + sources
    (folder / "asof.toml").write_text(body, encoding="utf-8")
    return parse_config(body, folder / "asof.toml")


def random_events(rng: random.Random, n: int, base: int, keys: int) -> list[dict[str, Any]]:
    """Events over the 3 days before ``base`` and up to 2 h after, in random order, some
    with nulls, some with a repeated event_id (a duplicate to skip)."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        ts = base - rng.randrange(3 * DAY) if rng.random() < 0.9 else base + rng.randrange(2 * HOUR)
        if rng.random() < 0.05:  # several events at one instant: seq breaks the tie
            ts = base - HOUR
        ent = f"c{rng.randrange(keys)}"
        eid = f"e{i}" if rng.random() > 0.05 or i == 0 else f"e{rng.randrange(i)}"
        if rng.random() < 0.6:
            ev: dict[str, Any] = {
                "view": "purchases", "customer_id": ent, "event_timestamp": ts / 1e6,
                "amount": None if rng.random() < 0.1 else round(rng.uniform(-5, 500), 3),
                "qty": rng.randrange(-3, 40),
                "category": None if rng.random() < 0.2 else rng.choice("abcde")}
        else:
            ev = {"view": "visits", "customer_id": ent, "event_timestamp": ts / 1e6,
                  "pages": None if rng.random() < 0.1 else rng.randrange(100),
                  "device": rng.choice(["ios", "android", "web"])}
        ev["event_timestamp"] = _iso(ts)
        ev["event_id"] = eid
        out.append(ev)
    return out


def _iso(ts: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts)).isoformat()


def commit_all(stores: Stores, events: list[dict[str, Any]], rng: random.Random) -> None:
    committer = stores.committer()
    i = 0
    while i < len(events):
        k = rng.randrange(1, 300)
        part = events[i:i + k]
        committer.commit("test", [Record(json.dumps(e).encode(), f"p:{i + j}")
                                  for j, e in enumerate(part)])
        i += k


def assert_zero_skew(stores: Stores, rng: random.Random, keys: int, t0: int,
                     checks: int = 150, note: str = "") -> int:
    """Online reads at random t >= t0 equal the oracle; returns how many values compared."""
    defs = stores.config.defs
    rows = all_rows(stores.log, defs)
    compared = 0
    times = [t0 + rng.randrange(3 * DAY) for _ in range(checks)]
    # the edges: exactly at a row's time, and just past a window's end
    some = rng.sample(rows, min(20, len(rows)))
    times += [max(t0, r.event_ts) for r in some]
    times += [r.event_ts + HOUR for r in some if r.event_ts + HOUR >= t0]
    times += [r.event_ts + DAY for r in some if r.event_ts + DAY >= t0]
    for t in times:
        ents = [{"customer_id": f"c{rng.randrange(keys + 2)}"} for _ in range(3)]
        got = read_online(defs, stores.online, PAIRS, ents, now=t)
        for ent, values in zip(ents, got, strict=True):
            e = ent["customer_id"]
            known = any(r.entity == e for r in rows)
            for (agg, feat), fv in values.items():
                fn = defs.aggregations[agg].feature(feat).fn
                want = oracle(defs, rows, agg, feat, e, t)
                assert same(fn, fv.value, want), (note, agg, feat, e, t, fv, want)
                assert fv.status == (PRESENT if known else NOT_FOUND), (note, e, fv)
                compared += 1
    return compared


def snapshot(stores: Stores, t: int, keys: int) -> list[Any]:
    ents = [{"customer_id": f"c{i}"} for i in range(keys)]
    return [sorted(d.items()) for d in read_online(stores.config.defs, stores.online, PAIRS,
                                                   ents, now=t)]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_online_aggregates_equal_the_training_set_value(backend: str, tmp_path: Path,
                                                        redis_url: str) -> None:
    seed = int(os.environ.get("ASOF_TEST_SEED", time.time()))
    rng = random.Random(seed)
    online = "sqlite:///data/online.sqlite" if backend == "sqlite" else redis_url
    config = make_config(tmp_path, online)
    keys = 12
    base = now_micros()
    events = random_events(rng, 3000, base, keys)
    with open_stores(config) as stores:
        commit_all(stores, events, rng)
        # Late events, long after the others: older than every window as of now (the
        # no-window aggregates still count them), and some duplicates of earlier ids.
        late = random_events(rng, 200, base - 5 * DAY, keys)
        for j, ev in enumerate(late):
            ev["event_id"] = f"late{j}" if j % 10 else events[j]["event_id"]
        commit_all(stores, late, rng)
        t0 = now_micros()
        n = assert_zero_skew(stores, rng, keys, t0, note=f"incremental, seed {seed}")
        assert n > 1000
        before = snapshot(stores, t0 + HOUR, keys)
        # I2: the rebuild from the log reads exactly as the incremental state.
        materialize(stores.log, stores.online)
        assert snapshot(stores, t0 + HOUR, keys) == before, f"seed {seed}"
        assert_zero_skew(stores, rng, keys, now_micros(), checks=50,
                         note=f"rebuilt, seed {seed}")


def test_the_window_slides_with_the_clock_with_no_new_event(tmp_path: Path) -> None:
    config = make_config(tmp_path, "sqlite:///data/online.sqlite")
    now = now_micros()
    at = now - 10 * 60_000_000
    ev = {"view": "purchases", "customer_id": "c1", "event_timestamp": _iso(at),
          "amount": 7.5, "qty": 3, "category": "x"}
    with open_stores(config) as stores:
        stores.committer().commit("t", [Record(json.dumps(ev).encode(), "p:0")])
        defs = stores.config.defs
        pairs = [("spend", "amount_1h"), ("spend", "orders_1d"), ("spend", "last_cat_1d"),
                 ("spend", "mean_6h")]

        def read(t: int) -> list[tuple[Any, str, int | None]]:
            got = read_online(defs, stores.online, pairs, [{"customer_id": "c1"}], now=t)[0]
            return [(got[p].value, got[p].status, got[p].event_timestamp) for p in pairs]

        assert read(now) == [(7.5, PRESENT, at), (1, PRESENT, at), ("x", PRESENT, at),
                             (7.5, PRESENT, at)]
        assert read(at + HOUR - 1) == read(now)
        # One microsecond later the 1 h window is empty: sum 0.0, no time; still PRESENT.
        assert read(at + HOUR) == [(0.0, PRESENT, None), (1, PRESENT, at), ("x", PRESENT, at),
                                   (7.5, PRESENT, at)]
        assert read(at + DAY) == [(0.0, PRESENT, None), (0, PRESENT, None),
                                  (None, PRESENT, None), (None, PRESENT, None)]
        # An entity never seen: NOT_FOUND, count and sum 0 as in a training set.
        got = read_online(defs, stores.online, pairs, [{"customer_id": "nobody"}], now=now)[0]
        assert [(v.value, v.status) for v in got.values()] == [
            (0.0, NOT_FOUND), (0, NOT_FOUND), (None, NOT_FOUND), (None, NOT_FOUND)]
        # Rows that left the longest window are evicted at the entity's next write.
        old = dict(ev, event_timestamp=_iso(now - 3 * DAY), amount=1.0)  # late: not stored
        new = dict(ev, event_timestamp=_iso(now), amount=2.0)
        stores.committer().commit("t", [Record(json.dumps(old).encode(), "p:1"),
                                        Record(json.dumps(new).encode(), "p:2")])
        assert read(now)[0] == (9.5, PRESENT, now)
        kept = stores.online.conn.execute(  # type: ignore[attr-defined]
            "SELECT count(*) FROM online_agg_rows WHERE view = 'purchases'").fetchone()[0]
        assert kept == 2


SOURCE = """
[sources.tail]
kind = "file"
path = "events/*.jsonl"
poll_interval = 0.05
"""


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_zero_skew_after_sigkilled_daemon(backend: str, tmp_path: Path,
                                          private_redis: PrivateRedis) -> None:
    seed = int(os.environ.get("ASOF_TEST_SEED", time.time()))
    rng = random.Random(seed)
    online = "sqlite:///data/online.sqlite" if backend == "sqlite" else private_redis.url
    config = make_config(tmp_path, online, batch=150, sources=SOURCE)
    path = tmp_path / "asof.toml"
    keys = 15
    base = now_micros()
    events = random_events(rng, 6000, base, keys)
    (tmp_path / "events").mkdir()
    log_file = tmp_path / "daemon.log"
    written = 0
    fh = (tmp_path / "events" / "app.jsonl").open("ab")
    kills = 0
    while written < len(events):
        proc = cli("--log-level", "INFO", "run", "--config", str(path), log_file=log_file)
        deadline = time.monotonic() + rng.uniform(0.7, 1.5)  # start-up takes ~0.5 s
        while time.monotonic() < deadline and written < len(events):
            for ev in events[written:written + 30]:
                fh.write(json.dumps(ev).encode() + b"\n")
            fh.flush()
            written += 30
            time.sleep(0.03)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if backend == "redis" and kills == 2:
            private_redis.kill()  # Redis restarts empty: healed from the log
            private_redis.start()
    fh.close()
    done = run_cli("run", "--config", str(path), "--until-caught-up")
    assert done.returncode == 0, done.stderr
    assert kills >= 3
    with open_stores(config) as stores:
        rows = all_rows(stores.log)
        ids = {(e["view"], e["event_id"]) for e in events}
        assert len(rows) == len(ids), f"exactly once, seed {seed}"
        catch_up(stores.log, stores.online)
        # the no-window aggregates read folded summaries here (on Redis too, rebuilt
        # after its restart)
        if backend == "sqlite":
            conn = stores.online.conn  # type: ignore[attr-defined]
            assert conn.execute("SELECT count(*) FROM online_agg_summary").fetchone()[0] > 0
        else:
            client = private_redis.client()
            gen = (client.get("{asof}:gen") or b"0").decode()
            assert any(client.scan_iter(match="\\{asof\\}:" + gen + ":s:visits:*"))
            client.close()
        assert_zero_skew(stores, rng, keys, now_micros(), checks=120,
                         note=f"daemon {backend}, seed {seed}")


def test_every_read_path_serves_aggregates(tmp_path: Path) -> None:
    """FeatureStore.get_online_features, /get-online-features and ``asof-stream online``
    all read aggregates at the read time."""
    import httpx

    from asof_stream import FeatureStore
    from tests.server_helpers import running_server

    config = make_config(tmp_path, "sqlite:///data/online.sqlite")
    now = now_micros()
    evs = [{"view": "purchases", "customer_id": "c1", "event_timestamp": _iso(now - k * HOUR),
            "amount": 1.5 * (k + 1), "qty": k, "category": "abc"[k % 3]} for k in range(4)]
    store = FeatureStore(config)
    store.push(evs)
    resp = store.get_online_features(["spend:orders_1d", "spend:amount_1h", "spend:last_cat_1d"],
                                     [{"customer_id": "c1"}, {"customer_id": "zz"}])
    assert resp.to_dict() == {"customer_id": ["c1", "zz"], "orders_1d": [4, 0],
                              "amount_1h": [1.5, 0.0], "last_cat_1d": ["a", None]}
    assert resp.statuses["orders_1d"] == [PRESENT, NOT_FOUND]
    assert resp.event_timestamps["orders_1d"] == [now, None]
    with running_server(config) as url:
        r = httpx.post(url + "/get-online-features", json={
            "features": ["spend:orders_1d", "habits:visits"],
            "entities": {"customer_id": ["c1"]}})
        assert r.status_code == 200, r.text
        body = r.json()["results"]
        assert body[1]["values"] == [4] and body[1]["statuses"] == [PRESENT]
        assert body[2]["values"] == [0] and body[2]["statuses"] == [NOT_FOUND]
    out = run_cli("online", "--config", str(tmp_path / "asof.toml"), "--features",
                  "spend:qty_1d", "--entity", "customer_id=c1", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["features"]["qty_1d"]["value"] == 6, out.stdout


def test_an_aggregation_added_later_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    rng = random.Random(7)
    config = make_config(tmp_path, "sqlite:///data/online.sqlite")
    plain = TOML.split("[aggregations.spend]")[0] % {
        "online": "sqlite:///data/online.sqlite", "batch": 100}
    before = parse_config(plain, tmp_path / "asof.toml")
    base = now_micros()
    with open_stores(before) as stores:  # no aggregations defined: no state kept
        commit_all(stores, random_events(rng, 800, base, 6), rng)
        assert stores.online.agg_fingerprint() == 0
    with open_stores(config) as stores:  # now defined: the state is rebuilt on open
        assert stores.online.agg_fingerprint() != 0
        assert_zero_skew(stores, rng, 6, now_micros(), checks=40, note="added later")


def test_skew_audits_aggregates_against_the_log(tmp_path: Path) -> None:
    rng = random.Random(3)
    config = make_config(tmp_path, "sqlite:///data/online.sqlite")
    with open_stores(config) as stores:
        commit_all(stores, random_events(rng, 600, now_micros(), 5), rng)
    path = str(tmp_path / "asof.toml")
    clean = run_cli("skew", "--config", path, "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    assert report["checked"]["spend"] == 5 and report["checked"]["habits"] == 5
    # Lose one row of the state behind the store's back: the audit names it.
    import sqlite3

    conn = sqlite3.connect(tmp_path / "data" / "online.sqlite")
    conn.execute("DELETE FROM online_agg_rows WHERE view = 'visits' AND entity = 'c2'")
    conn.commit()
    conn.close()
    bad = run_cli("skew", "--config", path, "--json", "--view", "habits")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    diffs = json.loads(bad.stdout)["differences"]
    assert [(d["view"], d["entity"], d["kind"]) for d in diffs] == [
        ("habits", "c2", "different_aggregate")]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_rebuild_reads_sealed_segments_too(backend: str, tmp_path: Path, redis_url: str) -> None:
    """Rows sealed out of the head into Parquet segments still count after a rebuild."""
    from asof_stream.offline.seal import seal_view

    rng = random.Random(11)
    online = "sqlite:///data/online.sqlite" if backend == "sqlite" else redis_url
    config = make_config(tmp_path, online)
    with open_stores(config) as stores:
        commit_all(stores, random_events(rng, 1500, now_micros(), 8), rng)
        high = stores.log.max_seq()
        for view in ("purchases", "visits"):
            seal_view(stores.log, stores.config.defs, view, upto_seq=high - 100)
        assert stores.log.sealed_max_seq() > 0
        t0 = now_micros()
        before = snapshot(stores, t0 + HOUR, 8)
        materialize(stores.log, stores.online)
        assert snapshot(stores, t0 + HOUR, 8) == before
        assert_zero_skew(stores, rng, 8, now_micros(), checks=40, note=f"sealed {backend}")
