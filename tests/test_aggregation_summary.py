"""The running summaries of no-window aggregations (asof_stream.online.aggsummary): a
summary of any subset of an entity's rows, folded in any order and grouping (late rows
included, ties at one instant broken by seq), with the other rows on top, reads exactly
the brute-force oracle over all the rows; and the SQLite store keeps only the rows a
window still needs plus one summary per entity, rebuilt from the log to the same values."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asof_stream.config import parse_config
from asof_stream.events import dumps_values
from asof_stream.ingest.sources.base import Record
from asof_stream.offline.log import LogRow
from asof_stream.online.aggread import AggReader, ListRows
from asof_stream.online.aggstate import AggBatch
from asof_stream.online.aggsummary import Summary
from asof_stream.online.lookup import read_online
from asof_stream.online.materialize import materialize
from asof_stream.online.sqlite import SqliteOnlineStore
from asof_stream.stores import open_stores
from asof_stream.timestamps import now_micros
from tests.aggregation_oracle import all_rows, oracle, same
from tests.test_aggregations_online import _iso
from tests.toml_parts import PRELUDE, PURCHASES

HOUR = 3_600_000_000
DAY = 24 * HOUR

TOML = PRELUDE + PURCHASES + """
[aggregations.life]
source = "purchases"

[aggregations.life.features]
orders = { fn = "count" }
amounts = { fn = "count", of = "amount" }
spend = { fn = "sum", of = "amount" }
qty = { fn = "sum", of = "qty" }
mean_amount = { fn = "mean", of = "amount" }
mean_qty = { fn = "mean", of = "qty" }
min_qty = { fn = "min", of = "qty" }
max_amount = { fn = "max", of = "amount" }
last_cat = { fn = "last", of = "category" }
last_amount = { fn = "last", of = "amount" }
std_amount = { fn = "stddev", of = "amount" }
std_qty = { fn = "stddev", of = "qty" }
spend_2h = { fn = "sum", of = "amount", window = "2h" }
"""

FEATURES = ["orders", "amounts", "spend", "qty", "mean_amount", "mean_qty", "min_qty",
            "max_amount", "last_cat", "last_amount", "std_amount", "std_qty", "spend_2h"]

amounts = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False),
                    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e150,
                              max_value=1e150),
                    st.sampled_from([0.1, 0.2, 0.3, 1e-300, -0.0, 5e-324]))
rows_st = st.lists(st.tuples(st.integers(0, 40), amounts,
                             st.one_of(st.none(), st.integers(-2**40, 2**40)),
                             st.one_of(st.none(), st.sampled_from("abc"))),
                   min_size=0, max_size=40)


def defs_of(tmp: Path) -> Any:
    return parse_config(TOML, tmp / "asof.toml").defs


@settings(max_examples=300, deadline=None)
@given(rows=rows_st, data=st.data())
def test_summary_plus_rows_equals_the_oracle(tmp_path_factory: Any, rows: list[Any],
                                             data: st.DataObject) -> None:
    defs = defs_of(tmp_path_factory.mktemp("d"))
    base = 10 * DAY
    logged = [LogRow(seq, "purchases", "c1", base + ts * HOUR // 8, 0,
                     dumps_values({"amount": a, "qty": q, "category": c}))
              for seq, (ts, a, q, c) in enumerate(rows, start=1)]
    # Any subset folded (late rows and ties included), in a random order and grouping,
    # through a JSON round trip between the groups; the rest stay rows.
    folded = [r for r in logged if data.draw(st.booleans())]
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    rng.shuffle(folded)
    reader = AggReader(defs, "life")
    summary: Summary | None = None
    i = 0
    while i < len(folded):
        k = rng.randrange(1, 6)
        s = Summary() if summary is None else Summary.loads(summary.dumps())
        reader.folder.fold(s, [(r.event_ts, r.seq, r.features) for r in folded[i:i + k]])
        summary = s
        i += k
    # a store folds only rows out of the longest finite window (2 h) as of its clock,
    # and reads at or after it
    now = max([base] + [r.event_ts + 2 * HOUR for r in folded]) + data.draw(
        st.integers(0, 6 * HOUR))
    ids = {r.seq for r in folded}
    # what a store holds besides: the rows not folded, those up to now are read
    rest = sorted((r.event_ts, r.seq, r.features) for r in logged
                  if r.seq not in ids and r.event_ts <= now)
    got = reader.evaluate_on(FEATURES, ListRows(rest), now,
                             None if summary is None else Summary.loads(summary.dumps()))
    for name in FEATURES:
        fn = defs.aggregations["life"].feature(name).fn
        want = oracle(defs, logged, "life", name, "c1", now)
        assert same(fn, got[name][0], want), (name, got[name], want)
        if name != "spend_2h":  # the newest counted row's event time
            counted = [r for r in logged if r.event_ts <= now and (
                defs.aggregations["life"].feature(name).of is None
                or json.loads(r.features).get(defs.aggregations["life"].feature(name).of)
                is not None)]
            assert got[name][1] == (max(r.event_ts for r in counted) if counted else None)


def _events(n: int, now: int, rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        ts = now - rng.randrange(30 * DAY) if rng.random() < 0.7 else now - rng.randrange(HOUR)
        out.append({"view": "purchases", "customer_id": f"c{rng.randrange(5)}",
                    "event_timestamp": _iso(ts), "event_id": f"e{i}",
                    "amount": None if rng.random() < 0.1 else round(rng.uniform(-5, 500), 3),
                    "qty": rng.randrange(-3, 40),
                    "category": None if rng.random() < 0.2 else rng.choice("abc")})
    return out


def test_the_sqlite_state_is_bounded_and_rebuilt_to_the_same_values(tmp_path: Path) -> None:
    (tmp_path / "asof.toml").write_text(TOML, encoding="utf-8")
    config = parse_config(TOML, tmp_path / "asof.toml")
    rng = random.Random(7)
    now = now_micros()
    with open_stores(config) as stores:
        events = _events(2000, now, rng)
        committer = stores.committer()
        committer.clock = lambda: now
        committer.commit("t", [Record(json.dumps(e).encode(), f"p:{j}")
                               for j, e in enumerate(events)])
        conn = stores.online.conn  # type: ignore[attr-defined]
        defs = stores.config.defs
        pairs = [("life", f) for f in FEATURES]
        ents = [{"customer_id": f"c{i}"} for i in range(6)]
        out_of_window = ("SELECT count(*) FROM online_agg_rows WHERE event_timestamp <= ?",
                         (now - 2 * HOUR,))

        def check(t: int) -> list[Any]:
            rows = all_rows(stores.log, defs)
            got = read_online(defs, stores.online, pairs, ents, now=t)
            for ent, values in zip(ents, got, strict=True):
                for (_, feat), fv in values.items():
                    fn = defs.aggregations["life"].feature(feat).fn
                    want = oracle(defs, rows, "life", feat, ent["customer_id"], t)
                    assert same(fn, fv.value, want), (feat, ent, fv, want)
            return [sorted(d.items()) for d in got]

        # Each entity was folded at its first write: only the rows inside the 2 h window
        # stay rows, beside one summary per entity.
        assert conn.execute(*out_of_window).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM online_agg_summary").fetchone()[0] == 5
        in_window = sum(1 for e in events if e["event_timestamp"] > _iso(now - 2 * HOUR))
        assert conn.execute("SELECT count(*) FROM online_agg_rows").fetchone()[0] == in_window
        check(now)

        # A late event far below the fold stays a row until the entity's next fold (not
        # due yet: at most once per 2h/16) and is counted exactly meanwhile.
        late = dict(events[0], event_id="late", amount=0.1, qty=2**40, category="z")
        committer.clock = lambda: now + 60_000_000
        committer.commit("t", [Record(json.dumps(late).encode(), "p:late")])
        assert conn.execute(*out_of_window).fetchone()[0] == 1
        check(now + 60_000_000)
        # Past 2h/16 the entity's next write folds it.
        again = dict(events[1], event_id="again", customer_id=late["customer_id"],
                     event_timestamp=_iso(now + HOUR))
        committer.clock = lambda: now + HOUR
        committer.commit("t", [Record(json.dumps(again).encode(), "p:again")])
        assert conn.execute(*out_of_window).fetchone()[0] == 0
        before = check(now + HOUR)
        materialize(stores.log, stores.online)  # I2: rebuilt, the same values exactly
        assert conn.execute(*out_of_window).fetchone()[0] == 0
        assert check(now + HOUR) == before


def test_a_sqlite_read_sees_a_concurrent_fold_whole(tmp_path: Path) -> None:
    """Another process folds an entity while a read of its no-window features runs: the
    rows and the summary are read from one snapshot, so no row is lost or counted twice
    (the fold commits between the read's first statement on the state and the rest)."""
    (tmp_path / "asof.toml").write_text(TOML, encoding="utf-8")
    config = parse_config(TOML, tmp_path / "asof.toml")
    rng = random.Random(11)
    now = now_micros()
    with open_stores(config) as stores:
        events = [dict(e, customer_id="c1") for e in _events(200, now, rng)]
        committer = stores.committer()
        # an old clock: nothing is out of the 2 h window yet, every row stays a row
        committer.clock = lambda: now - 40 * DAY
        committer.commit("t", [Record(json.dumps(e).encode(), f"p:{j}")
                               for j, e in enumerate(events)])
        online = stores.online
        assert isinstance(online, SqliteOnlineStore) and online.agg_plan is not None
        conn = online.conn
        assert conn.execute("SELECT count(*) FROM online_agg_summary").fetchone()[0] == 0
        other = SqliteOnlineStore(online.path)
        other.agg_plan = online.agg_plan
        folded: list[int] = []

        def fold_once(sql: str) -> None:
            if not folded and "online_agg" in sql:
                folded.append(1)  # another connection folds c1's rows out of the window
                other.apply([], online.applied_seq(),
                            agg=AggBatch([], evict=[("purchases", "c1", now - 2 * HOUR)]))

        defs = stores.config.defs
        pairs = [("life", f) for f in FEATURES]
        conn.set_trace_callback(fold_once)
        try:
            got = read_online(defs, online, pairs, [{"customer_id": "c1"}], now=now)[0]
        finally:
            conn.set_trace_callback(None)
        other.close()
        assert folded
        assert conn.execute("SELECT count(*) FROM online_agg_summary").fetchone()[0] == 1
        rows = all_rows(stores.log, defs)
        for (_, feat), fv in got.items():
            fn = defs.aggregations["life"].feature(feat).fn
            want = oracle(defs, rows, "life", feat, "c1", now)
            assert same(fn, fv.value, want), (feat, fv, want)


def test_a_store_with_the_clustered_state_layout_is_rebuilt(tmp_path: Path) -> None:
    """An online store written when the aggregation rows were a WITHOUT ROWID table
    clustered by entity is rebuilt from the log into the seq-keyed table when opened."""
    (tmp_path / "asof.toml").write_text(TOML, encoding="utf-8")
    config = parse_config(TOML, tmp_path / "asof.toml")
    now = now_micros()
    events = _events(300, now, random.Random(3))
    with open_stores(config) as stores:
        stores.committer().commit("t", [Record(json.dumps(e).encode(), f"p:{j}")
                                        for j, e in enumerate(events)])
        path = stores.online.path  # type: ignore[attr-defined]
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP TABLE online_agg_rows; DELETE FROM online_agg_summary;"
        "CREATE TABLE online_agg_rows (view TEXT NOT NULL, entity TEXT NOT NULL,"
        " event_timestamp INTEGER NOT NULL, seq INTEGER NOT NULL, ingest_ts INTEGER NOT"
        " NULL, features TEXT NOT NULL, PRIMARY KEY (view, entity, event_timestamp, seq))"
        " WITHOUT ROWID;"
        "INSERT INTO online_agg_rows VALUES ('purchases', 'c1', 1, 1, 1, '{\"qty\": 99}');")
    conn.close()
    with open_stores(config) as stores:
        sql = stores.online.conn.execute(  # type: ignore[attr-defined]
            "SELECT sql FROM sqlite_master WHERE name = 'online_agg_rows'").fetchone()[0]
        assert "WITHOUT ROWID" not in sql
        defs = stores.config.defs
        rows = all_rows(stores.log, defs)
        ents = [{"customer_id": f"c{i}"} for i in range(5)]
        got = read_online(defs, stores.online, [("life", f) for f in FEATURES], ents, now=now)
        for ent, values in zip(ents, got, strict=True):
            for (_, feat), fv in values.items():
                fn = defs.aggregations["life"].feature(feat).fn
                want = oracle(defs, rows, "life", feat, ent["customer_id"], now)
                assert same(fn, fv.value, want), (feat, ent, fv, want)
