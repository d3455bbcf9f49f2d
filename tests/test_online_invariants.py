"""I1 (online = join at +infinity, for any arrival order) and I2 (rebuild = incremental)."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asof_stream.config import Config
from asof_stream.ingest.sources.base import Record
from asof_stream.online.materialize import catch_up, materialize
from asof_stream.stores import open_stores


def latest_by_brute_force(log_rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], tuple[Any, ...]]:
    """The point-in-time join at t = +infinity, written the obvious way."""
    best: dict[tuple[str, str], tuple[Any, ...]] = {}
    for seq, view, entity, ts, features in log_rows:
        k = (view, entity)
        if k not in best or (ts, seq) > (best[k][0], best[k][1]):
            best[k] = (ts, seq, features)
    return best


def snapshot(s: Any) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {(r.view, r.entity): (r.event_ts, r.seq, r.features) for r in s.online.entries()}


def log_rows(s: Any) -> list[tuple[Any, ...]]:
    return list(s.log.conn.execute(
        "SELECT seq, view, entity, event_timestamp, features FROM log"))


events = st.lists(
    st.tuples(st.sampled_from(["c1", "c2", "c3"]), st.integers(0, 5), st.integers(0, 100),
              st.booleans()),
    max_size=40)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(events, st.integers(1, 7), st.randoms(use_true_random=False))
def test_i1_and_i2_for_shuffled_duplicated_batched_arrivals(
        make_config: Any, evs: list[tuple[str, int, int, bool]], batch: int,
        rnd: random.Random) -> None:
    config: Config = make_config()
    config.offline_path.parent.mkdir(parents=True, exist_ok=True)
    for p in config.offline_path.parent.glob("*.sqlite*"):
        p.unlink()
    records = []
    for i, (cid, ts, value, with_id) in enumerate(evs):
        ev: dict[str, Any] = {"view": "customer_stats", "customer_id": cid,
                              "event_timestamp": ts, "orders_7d": value}
        if with_id:
            ev["event_id"] = f"id{value % 7}"
        records.append(Record(json.dumps(ev).encode(), str(i)))
    records += rnd.sample(records, k=len(records) // 3)  # replays and duplicates
    rnd.shuffle(records)
    with open_stores(config) as s:
        committer = s.committer()
        for i in range(0, len(records), batch):
            committer.commit("t", records[i:i + batch])
        incremental = snapshot(s)
        assert incremental == latest_by_brute_force(log_rows(s))  # I1
        materialize(s.log, s.online)
        assert snapshot(s) == incremental  # I2


def test_catch_up_replays_what_the_online_store_missed(config: Config) -> None:
    with open_stores(config) as s:
        c = s.committer()
        for i in range(5):
            c.commit("t", [Record(json.dumps({"view": "customer_stats", "customer_id": f"c{i}",
                                               "event_timestamp": i}).encode(), str(i))])
        before = snapshot(s)
        # Simulate a store that lost its last writes (as Redis can, after a crash).
        s.online.replace_all([], high_seq=2)
        assert catch_up(s.log, s.online) == 3
        assert {k: v for k, v in snapshot(s).items()} == {
            k: v for k, v in before.items() if v[1] > 2}
        materialize(s.log, s.online)
        assert snapshot(s) == before
