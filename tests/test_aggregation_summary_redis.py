"""The running summaries of no-window aggregations on the Redis online store
(asof_stream.online.redis_fold): an entity's sorted set keeps only the rows its longest
finite window needs beside one summary, reads equal the brute-force oracle over the log
through crashes between the state write and the applied mark (replays of the log tail,
of already applied rows too), late events and rebuilds."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asof_stream.config import Config, parse_config
from asof_stream.ingest.commit import Committer
from asof_stream.ingest.sources.base import Record
from asof_stream.online.aggstate import unmember
from asof_stream.online.base import OnlineUnavailable, from_log_row, newest_per_key
from asof_stream.online.lookup import read_online
from asof_stream.online.materialize import catch_up, materialize
from asof_stream.online.redis import RedisOnlineStore
from asof_stream.online.redis_fold import MARK, fold_due
from asof_stream.stores import Stores, open_stores
from asof_stream.timestamps import now_micros
from tests.aggregation_oracle import all_rows, oracle, same
from tests.fixtures_redis import redis_base_url
from tests.test_aggregation_summary import DAY, FEATURES, HOUR, TOML, _events
from tests.test_aggregations_online import _iso

PAIRS = [("life", f) for f in FEATURES]


def redis_config(folder: Path, url: str) -> Config:
    folder.mkdir(parents=True, exist_ok=True)
    body = TOML.replace('"sqlite:///data/online.sqlite"', f'"{url}"')
    (folder / "asof.toml").write_text(body, encoding="utf-8")
    return parse_config(body, folder / "asof.toml")


def state(store: RedisOnlineStore) -> tuple[dict[str, bytes], dict[str, list[bytes]]]:
    """The live generation's summaries and sorted sets, by entity (view purchases)."""
    c = store.client
    gen = (c.get(store.prefix + "gen") or b"0").decode()
    base = f"{store.prefix}{gen}:"
    sums = {k.decode()[len(base) + len("s:purchases:"):]: c.get(k)
            for k in c.scan_iter(match=base.replace("{", "\\{").replace("}", "\\}")
                                 + "s:purchases:*")}
    sets = {k.decode()[len(base) + len("a:purchases:"):]: c.zrange(k, 0, -1)
            for k in c.scan_iter(match=base.replace("{", "\\{").replace("}", "\\}")
                                 + "a:purchases:*")}
    return sums, sets


def check(stores: Stores, t: int, ents: list[str]) -> list[Any]:
    """Online reads at ``t`` equal the oracle over every logged row."""
    defs = stores.config.defs
    rows = all_rows(stores.log, defs)
    got = read_online(defs, stores.online, PAIRS, [{"customer_id": e} for e in ents], now=t)
    for ent, values in zip(ents, got, strict=True):
        for (_, feat), fv in values.items():
            fn = defs.aggregations["life"].feature(feat).fn
            want = oracle(defs, rows, "life", feat, ent, t)
            assert same(fn, fv.value, want), (feat, ent, t, fv, want)
    return [sorted(d.items()) for d in got]


def commit(committer: Committer, events: list[dict[str, Any]], tag: str) -> None:
    committer.commit("t", [Record(json.dumps(e).encode(), f"p:{tag}:{j}")
                           for j, e in enumerate(events)])


def test_the_redis_state_is_bounded_and_rebuilt_to_the_same_values(tmp_path: Path,
                                                                   redis_url: str) -> None:
    config = redis_config(tmp_path, redis_url)
    rng = random.Random(11)
    now = now_micros()
    ents = [f"c{i}" for i in range(6)]
    with open_stores(config) as stores:
        online = stores.online
        assert isinstance(online, RedisOnlineStore) and online.folds_aggregations
        events = _events(2000, now, rng)
        committer = stores.committer()
        committer.clock = lambda: now
        commit(committer, events, "a")
        # Each entity was folded at its first write (after the batch was marked
        # applied): its sorted set holds only the rows inside the 2 h window.
        sums, sets = state(online)
        assert sorted(sums) == [f"c{i}" for i in range(5)]
        kept = [m for ms in sets.values() for m in ms]
        in_window = sum(1 for e in events if e["event_timestamp"] > _iso(now - 2 * HOUR))
        assert len(kept) == in_window  # the memory bound: nothing older than the window
        assert all(int(v[:MARK]) == online.applied_seq() for v in sums.values())
        check(stores, now, ents)

        # A late event far below the fold stays a row until the entity's next fold (not
        # due yet: at most once per 2h/16) and is counted exactly meanwhile.
        late = dict(events[0], event_id="late", amount=0.1, qty=2**40, category="z")
        committer.clock = lambda: now + 60_000_000
        commit(committer, [late], "late")
        sets = state(online)[1]
        assert sum(len(ms) for ms in sets.values()) == in_window + 1
        check(stores, now + 60_000_000, ents)
        # Past 2h/16 the entity's next write folds it.
        again = dict(events[1], event_id="again", customer_id=late["customer_id"],
                     event_timestamp=_iso(now + HOUR))
        committer.clock = lambda: now + HOUR
        commit(committer, [again], "again")
        sets = state(online)[1]
        rows = [unmember(m) for m in sets[late["customer_id"]]]
        assert all(ts > now + HOUR - 2 * HOUR for ts, _, _ in rows)
        assert not any('"z"' in text for _, _, text in rows)
        before = check(stores, now + HOUR, ents)
        materialize(stores.log, online)  # I2: rebuilt, the same values exactly
        assert sorted(state(online)[0]) == [f"c{i}" for i in range(5)]
        assert check(stores, now + HOUR, ents) == before


def _batch(rng: random.Random, now: int, n: int) -> list[dict[str, Any]]:
    """Events around the 2 h window's edge, late ones far below it, ties at one instant."""
    out = []
    tie = now - rng.randrange(3 * HOUR)
    for _ in range(n):
        r = rng.random()
        ts = (now - rng.randrange(30 * DAY) if r < 0.25 else tie if r < 0.4
              else now - rng.randrange(3 * HOUR))
        out.append({"view": "purchases", "customer_id": f"c{rng.randrange(3)}",
                    "event_timestamp": _iso(ts), "event_id": uuid.uuid4().hex,
                    "amount": None if rng.random() < 0.1 else rng.choice(
                        [0.1, 0.2, 1e-300, -0.0, 1e15, round(rng.uniform(-5, 500), 3)]),
                    "qty": None if rng.random() < 0.1 else rng.randrange(-2**40, 2**40),
                    "category": None if rng.random() < 0.2 else rng.choice("abc")})
    return out


def _prefix_keys(client: redis.Redis, prefix: str) -> Iterator[bytes]:
    yield from client.scan_iter(match="{" + prefix + "}:*", count=1000)


def _exact_counts(stores: Stores, online: RedisOnlineStore) -> None:
    """Every logged row is in its entity's sorted set or its summary, exactly once."""
    sums, sets = state(online)
    per: dict[str, int] = {}
    for r in all_rows(stores.log, stores.config.defs):
        per[r.entity] = per.get(r.entity, 0) + 1
    for ent, n in per.items():
        folded = 0 if ent not in sums else json.loads(sums[ent][MARK:])["rows"]
        assert folded + len(sets.get(ent, [])) == n, (ent, folded, len(sets.get(ent, [])), n)


OPS = st.lists(st.tuples(st.sampled_from(["commit", "commit", "crash", "replay", "replay",
                                          "catch_up", "tick", "reset"]),
                         st.integers(0, 2**32)), min_size=1, max_size=12)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=OPS)
def test_folding_on_redis_survives_crashes_and_replays(tmp_path_factory: Any,
                                                       ops: list[tuple[str, int]]) -> None:
    """Commits, crashes between the state write and the applied mark, replays of any log
    tail (already applied and folded rows too), catch-ups, resets and a clock that moves
    on: after a catch-up the reads equal the oracle over the log, and every row is in
    the sorted set or the summary exactly once."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    base = redis_base_url()
    client = redis.Redis.from_url(base, socket_connect_timeout=3)
    sep = "&" if "?" in base else "?"
    config = redis_config(tmp_path_factory.mktemp("h"), f"{base}{sep}prefix={prefix}")
    clock = [now_micros()]
    try:
        with open_stores(config) as stores:
            online = stores.online
            assert isinstance(online, RedisOnlineStore)
            committer = stores.committer()
            committer.clock = lambda: clock[0]
            for i, (op, seed) in enumerate(ops):
                rng = random.Random(seed)
                if op in ("commit", "crash"):
                    events = _batch(rng, clock[0], rng.randrange(1, 30))
                    if op == "crash":  # the state is written, the batch not marked applied
                        def crash(*_a: Any) -> None:
                            raise OnlineUnavailable("crashed before the applied mark")
                        online._apply_rows = crash  # type: ignore[method-assign]
                    try:
                        commit(committer, events, str(i))
                    finally:
                        online.__dict__.pop("_apply_rows", None)
                        committer._online_retry_at = committer._online_backoff = 0.0
                elif op == "replay":  # rows written again from any seq (a slow writer)
                    high = stores.log.max_seq()
                    prev = rng.randrange(0, high + 1) // rng.choice([1, 2, 4])
                    plan = online.agg_plan
                    assert plan is not None
                    for chunk in stores.log.rows_after(prev):
                        agg = plan.batch([(r.view, r.entity, r.event_ts, r.seq, r.ingest_ts,
                                           r.features) for r in chunk], clock[0])
                        online.apply(newest_per_key([from_log_row(r) for r in chunk]),
                                     chunk[-1].seq, low_seq=prev + 1, agg=agg)
                        prev = chunk[-1].seq
                elif op == "catch_up":
                    catch_up(stores.log, online)
                elif op == "tick":
                    clock[0] += rng.randrange(3 * HOUR)
                else:  # Redis reset: rebuilt from the log (as the healer does)
                    keys = list(_prefix_keys(client, prefix))
                    if keys:
                        client.unlink(*keys)
                    materialize(stores.log, online)
            catch_up(stores.log, online)
            _exact_counts(stores, online)
            for t in (clock[0], clock[0] + HOUR, clock[0] + 3 * HOUR):
                check(stores, t, ["c0", "c1", "c2"])
    finally:
        keys = list(_prefix_keys(client, prefix))
        if keys:
            client.unlink(*keys)
        client.close()


def test_a_fold_raced_by_another_writer_is_left_for_later(tmp_path: Path,
                                                         redis_url: str) -> None:
    """Two writers fold the same entities from the same read: the second one's script
    finds the summaries changed and the members gone, and leaves the entities as they
    are (no row counted twice)."""
    config = redis_config(tmp_path, redis_url)
    rng = random.Random(5)
    now = now_micros()
    with open_stores(config) as stores:
        a = stores.online
        assert isinstance(a, RedisOnlineStore)
        committer = stores.committer()
        committer.clock = lambda: now
        commit(committer, _batch(rng, now, 40), "a")
        # late rows far below the fold: rows until the entities' next fold
        late = [dict(e, event_timestamp=_iso(now - 20 * DAY - i)) for i, e in
                enumerate(_batch(rng, now, 20))]
        committer.clock = lambda: now + 60_000_000
        commit(committer, late, "late")
        b = RedisOnlineStore(redis_url)
        b.agg_plan = a.agg_plan
        due = [("purchases", f"c{i}", now - 2 * HOUR) for i in range(3)]
        real = a._fold
        folded_by_b: list[int] = []

        def raced(**kw: Any) -> Any:
            folded_by_b.append(fold_due(b, due))  # b folds between a's read and script
            return real(**kw)

        a._fold = raced  # type: ignore[assignment]
        assert fold_due(a, due) == 0
        assert folded_by_b == [3]
        b.close()
        _exact_counts(stores, a)
        sets = state(a)[1]
        assert all(unmember(m)[0] > now - 2 * HOUR for ms in sets.values() for m in ms)
        check(stores, now + 60_000_000, ["c0", "c1", "c2"])
