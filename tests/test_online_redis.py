"""The Redis online store against the real Redis: monotonic rule, healing, I1 and I2."""

from __future__ import annotations

import json
import multiprocessing
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from asof_stream import FeatureStore
from asof_stream.cli import main
from asof_stream.config import Config, load_config
from asof_stream.online.base import OnlineRow
from asof_stream.online.materialize import catch_up, materialize
from asof_stream.online.redis import RedisOnlineStore
from asof_stream.stores import open_stores
from asof_stream.timestamps import MAX_US, MIN_US, now_micros, to_iso


def _row(entity: str, ts: int, seq: int, value: Any = None, view: str = "v") -> OnlineRow:
    return OnlineRow(view, entity, ts, seq, 1, json.dumps({"x": value if value is not None else seq}))


def _snapshot(config: Config) -> tuple[dict[tuple[str, str], OnlineRow], dict[tuple[str, str], OnlineRow]]:
    """(latest log row per key as OnlineRow, online rows), for I1 checks."""
    with open_stores(config, heal=False) as stores:
        latest = {(r.view, r.entity): OnlineRow(r.view, r.entity, r.event_ts, r.seq, r.ingest_ts,
                                                r.features)
                  for r in stores.log.latest_rows()}
        online = {(r.view, r.entity): r for r in stores.online.entries()}
    return latest, online


def test_monotonic_rule(redis_url: str) -> None:
    store = RedisOnlineStore(redis_url)
    try:
        store.apply([_row("a", 100, 5), _row("b", MAX_US, 1), _row("c", MIN_US, 2)], 5)
        store.apply([_row("a", 99, 9), _row("b", MAX_US - 1, 7), _row("c", MIN_US + 1, 8)], 9)
        store.apply([_row("a", 100, 4)], 9)  # same time, lower seq: loses
        a, b, c = store.get("v", ["a", "b", "c"])
        assert (a and a.seq, b and b.seq, c and c.seq) == (5, 1, 8)
        store.apply([_row("a", 100, 6, "new")], 9)  # same time, higher seq: wins
        got = store.get("v", ["a", "zz"])
        assert got[0] == OnlineRow("v", "a", 100, 6, 1, '{"x": "new"}') and got[1] is None
        assert store.count("v") == 3 and store.count("other") == 0
        assert sorted(r.entity for r in store.entries()) == ["a", "b", "c"]
    finally:
        store.close()


def test_applied_seq_only_advances_over_contiguous_batches(redis_url: str) -> None:
    store = RedisOnlineStore(redis_url)
    try:
        store.apply([_row("a", 1, 3)], 3, low_seq=1)
        assert store.applied_seq() == 3
        store.apply([_row("b", 1, 9)], 10, low_seq=8)  # 4..7 not applied yet
        store.apply([_row("c", 1, 12)], 12, low_seq=11)
        assert store.applied_seq() == 3
        store.apply([_row("d", 1, 6)], 7, low_seq=4)  # fills the gap: runs on to 12
        assert store.applied_seq() == 12
        store.apply([_row("e", 1, 13)], 13)  # a replay of the tail (no low_seq)
        assert store.applied_seq() == 13
    finally:
        store.close()


def test_prefixes_do_not_mix(redis_url: str) -> None:
    other_url = redis_url.replace("prefix=", "prefix=other-")
    a, b = RedisOnlineStore(redis_url), RedisOnlineStore(other_url)
    try:
        a.apply([_row("k", 1, 1, "a")], 1)
        b.apply([_row("k", 1, 1, "b")], 1)
        assert a.get("v", ["k"])[0].features == '{"x": "a"}'  # type: ignore[union-attr]
        assert b.get("v", ["k"])[0].features == '{"x": "b"}'  # type: ignore[union-attr]
        b.replace_all([], 0)
        assert a.count("v") == 1 and b.count("v") == 0
    finally:
        for key in a.client.scan_iter(match=b.prefix + "*"):
            a.client.unlink(key)
        a.close()
        b.close()


def _apply_shuffled(url: str, rows: list[OnlineRow], seed: int) -> None:
    store = RedisOnlineStore(url)
    random.Random(seed).shuffle(rows)
    for i in range(0, len(rows), 37):
        store.apply(rows[i:i + 37], 0)
    store.close()


def test_concurrent_writers_never_move_a_key_backward(redis_url: str) -> None:
    rng = random.Random(7)
    rows = [_row(f"k{k}", rng.randrange(1000), seq) for seq, k in
            enumerate((rng.randrange(50) for _ in range(4000)), start=1)]
    best: dict[str, OnlineRow] = {}
    for r in rows:
        if r.entity not in best or (r.event_ts, r.seq) > (best[r.entity].event_ts, best[r.entity].seq):
            best[r.entity] = r
    threads = [threading.Thread(target=_apply_shuffled, args=(redis_url, rows[i::4], i))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = RedisOnlineStore(redis_url)
    try:
        assert {r.entity: r for r in store.entries("v")} == best
    finally:
        store.close()


def _push_worker(config_path: str, worker: int, events: list[dict[str, Any]]) -> None:
    cfg = load_config(config_path)
    with FeatureStore(cfg) as store:
        for i in range(0, len(events), 25):
            r = store.push(events[i:i + 25], source=f"w{worker}")
            assert r.rejected == 0, r.rejects


def test_concurrent_pushes_from_processes_end_with_the_newest(redis_config: Config) -> None:
    rng = random.Random(11)
    base = now_micros() - 10**9
    newest: dict[str, int] = {}
    events = []
    for n in range(1200):
        key = f"c{rng.randrange(40)}"
        ts = base + rng.randrange(10**6) * 1000 + n  # distinct times
        newest[key] = max(newest.get(key, ts), ts)
        events.append({"view": "customer_stats", "customer_id": key, "event_timestamp": to_iso(ts),
                       "orders_7d": ts})
    rng.shuffle(events)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_push_worker, args=(str(redis_config.path), w, events[w::4]))
             for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with FeatureStore(redis_config) as store:
        keys = sorted(newest)
        out = store.get_online_features(["customer_stats:orders_7d"],
                                        [{"customer_id": k} for k in keys])
    assert out["orders_7d"] == [newest[k] for k in keys]
    latest, online = _snapshot(redis_config)
    assert online == latest  # I1
    with open_stores(redis_config) as stores:
        assert stores.online.applied_seq() == stores.log.max_seq() == 1200


def test_i1_and_i2_over_redis(redis_config: Config) -> None:
    rng = random.Random(3)
    events = [{"view": "customer_stats", "customer_id": f"c{rng.randrange(30)}",
               "event_timestamp": 1_700_000_000 + rng.randrange(500),  # ties on purpose
               "spend_7d": rng.random(), "event_id": f"e{rng.randrange(900)}"}
              for _ in range(1000)]
    events += [{"view": "merchant_risk", "merchant_id": rng.randrange(10),
                "event_timestamp": 1_700_000_000 + rng.randrange(50), "risk": 0.5}
               for _ in range(100)]
    rng.shuffle(events)
    with FeatureStore(redis_config) as store:
        for i in range(0, len(events), 90):
            store.push(events[i:i + 90])
    latest, online = _snapshot(redis_config)
    assert online == latest and len(online) == 40  # I1
    with open_stores(redis_config, heal=False) as stores:
        assert materialize(stores.log, stores.online) == 40
        rebuilt = {(r.view, r.entity): r for r in stores.online.entries()}
        assert stores.online.count("customer_stats") == 30
    assert rebuilt == online  # I2
    # The command rebuilds a wiped store from the log too.
    with open_stores(redis_config, heal=False) as stores:
        assert isinstance(stores.online, RedisOnlineStore)
        stores.online.replace_all([], 0)
        assert stores.online.count("customer_stats") == 0
    result = CliRunner().invoke(main, ["materialize", "--config", str(redis_config.path)])
    assert result.exit_code == 0, result.output
    assert "materialized 40 online rows" in result.output
    assert _snapshot(redis_config)[1] == rebuilt


def test_catch_up_rebuilds_a_store_ahead_of_the_log(redis_config: Config) -> None:
    with FeatureStore(redis_config) as store:
        store.push([{"view": "customer_stats", "customer_id": "c1", "event_timestamp": 1}])
        # A row the log never got (say, the log was restored from an older backup).
        store.stores.online.apply([OnlineRow("customer_stats", "ghost", 5, 99, 5, "{}")], 99)
        assert store.stores.online.applied_seq() == 99
        assert catch_up(store.stores.log, store.stores.online) == 0
        assert store.stores.online.get("customer_stats", ["ghost"]) == [None]
        assert store.stores.online.applied_seq() == 1


def test_materialize_never_shows_a_half_empty_store(redis_config: Config) -> None:
    keys = [f"c{i}" for i in range(300)]
    with FeatureStore(redis_config) as store:
        store.push([{"view": "customer_stats", "customer_id": k, "event_timestamp": 5} for k in keys])
    reader = RedisOnlineStore(redis_config.online_url)
    stop = threading.Event()
    missing: list[int] = []
    reads = [0]

    def read() -> None:
        while not stop.is_set():
            rows = reader.get("customer_stats", keys)
            missing.append(sum(r is None for r in rows))
            reads[0] += 1

    t = threading.Thread(target=read)
    t.start()
    try:
        with open_stores(redis_config) as stores:
            for _ in range(4):
                materialize(stores.log, stores.online)
    finally:
        stop.set()
        t.join()
        reader.close()
    assert reads[0] > 0 and max(missing) == 0
    keys_left = RedisOnlineStore(redis_config.online_url)
    try:  # the old generations are gone
        gens = {k.split(b":")[1] for k in keys_left.client.scan_iter(match=keys_left.prefix + "*")}
        assert gens - {b"gen", b"gencounter"} == {keys_left.client.get(keys_left.prefix + "gen")}
    finally:
        keys_left.close()


def test_feature_store_reads_over_both_backends(any_config: Config) -> None:
    now = now_micros()
    with FeatureStore(any_config) as store:
        store.push([
            {"view": "customer_stats", "customer_id": "c1", "event_timestamp": to_iso(now - 10**6),
             "spend_7d": 12.5, "tier": "gold"},
            {"view": "customer_stats", "customer_id": "c2", "event_timestamp": "2020-01-01",
             "spend_7d": 1.0},
            {"view": "merchant_risk", "merchant_id": 3, "event_timestamp": "2020-01-01", "risk": 1.0},
        ])
        out = store.get_online_features(["@churn"], [{"customer_id": c} for c in ("c1", "c2", "zz")])
        assert out["spend_7d"] == [12.5, None, None]
        assert out.statuses["spend_7d"] == ["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
        assert out.event_timestamps["tier"] == [now - 10**6, 1577836800 * 10**6, None]
        out = store.get_online_features(["merchant_risk:risk"], [{"merchant_id": 3}])
        assert out["risk"] == [1.0] and out.statuses["risk"] == ["PRESENT"]
        with pytest.raises(ValueError, match="int64"):
            store.get_online_features(["merchant_risk:risk"], [{"merchant_id": "3"}])


STUCK_WRITER = """
import json, sys, time
from asof_stream.ingest.commit import Committer
from asof_stream.ingest.sources.base import Record
from asof_stream.config import load_config
from asof_stream.events import EventDecoder
from asof_stream.offline.log import open_log
from asof_stream.online.redis import RedisOnlineStore


class StuckAfterLogCommit(RedisOnlineStore):
    # The log transaction has committed when apply() is called: stop right there.
    def apply(self, rows, high_seq, low_seq=None):
        print("LOG-COMMITTED", low_seq, high_seq, flush=True)
        time.sleep(600)


cfg = load_config(sys.argv[1])
committer = Committer(open_log(cfg.offline_path), StuckAfterLogCommit(cfg.online_url),
                      EventDecoder(cfg.defs))
events = [{"view": "customer_stats", "customer_id": f"c{i}", "event_timestamp": int(sys.argv[2]),
           "tier": "killed-batch"} for i in range(5)]
committer.commit("kill-test", [Record(json.dumps(e).encode(), f"k:{i}")
                               for i, e in enumerate(events)])
print("NOT REACHED", flush=True)
"""


def test_sigkill_between_log_commit_and_redis_write_heals_on_restart(
        redis_config: Config, tmp_path: Path) -> None:
    def batch(tier: str, ts: int, ids: range) -> list[dict[str, Any]]:
        return [{"view": "customer_stats", "customer_id": f"c{i}", "event_timestamp": ts,
                 "tier": tier} for i in ids]

    def tiers(store: FeatureStore) -> list[Any]:
        out = store.get_online_features(["customer_stats:tier"],
                                        [{"customer_id": f"c{i}"} for i in range(8)])
        return list(out["tier"])

    base = now_micros() // 10**6 - 1000  # recent: inside the view's ttl
    store = FeatureStore(redis_config)
    try:
        store.push(batch("first", base, range(8)))  # seqs 1..8, applied
        script = tmp_path / "stuck_writer.py"
        script.write_text(STUCK_WRITER)
        proc = subprocess.Popen([sys.executable, str(script), str(redis_config.path), str(base + 500)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.split() == ["LOG-COMMITTED", "9", "13"], line
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        # Another writer goes on meanwhile: seqs 14..15 land in Redis, above the gap.
        store.push(batch("later", base + 900, range(6, 8)))
        assert tiers(store) == ["first"] * 6 + ["later"] * 2  # the killed batch is missing
        assert store.stores.online.applied_seq() == 8  # and Redis knows it has a gap
        assert store.stores.log.max_seq() == 15
    finally:
        store.close()
    # Restart: open_stores replays the log tail above the contiguous applied seq.
    with FeatureStore(redis_config) as store:
        assert tiers(store) == ["killed-batch"] * 5 + ["first"] + ["later"] * 2
        assert store.stores.online.applied_seq() == 15
    latest, online = _snapshot(redis_config)
    assert online == latest


def test_materialize_command_rejects_unknown_view(redis_config: Config,
                                                  make_config: Callable[..., Config]) -> None:
    result = CliRunner().invoke(main, ["materialize", "--config", str(redis_config.path),
                                       "--view", "nope"])
    assert result.exit_code != 0 and "unknown view 'nope'" in result.output
