"""The as-of join on hand-made histories: each rule of contract section 5 on its own."""

from __future__ import annotations

from asof_stream.offline.log import OfflineLog
from asof_stream.training.asof import asof_join
from asof_stream.training.join import JoinMode, asof_view
from asof_stream.training.labels import labels_from_any
from asof_stream.training.training_set import build_training_set
from tests.join_helpers import BASE, S, commit, event, join_config, label_rows, memory_log

CFG = join_config()
STRICT = JoinMode(strict=True)
KNOWN = JoinMode(as_known_at=True)


def x_values(log: OfflineLog, keys: list[str], times: list[int], mode: JoinMode = JoinMode(),
             view: str = "cs") -> list[object]:
    return asof_view(log, CFG.defs, view, keys, times, mode).column("x")


def test_latest_row_at_or_before_t_and_ties_by_seq() -> None:
    log, c = memory_log(CFG)
    commit(c, [event("cs", BASE + 2 * S, customer_id="a", x=2),
               event("cs", BASE, customer_id="a", x=0),
               event("cs", BASE + 2 * S, customer_id="a", x=3),  # same time, later seq: wins
               event("cs", BASE + 4 * S, customer_id="a", x=4)])
    t = [BASE - 1, BASE, BASE + S, BASE + 2 * S, BASE + 3 * S, BASE + 4 * S]
    assert x_values(log, ["a"] * 6, t) == [None, 0, 0, 3, 3, 4]
    assert x_values(log, ["a"] * 6, t, STRICT) == [None, None, 0, 0, 3, 3]
    assert x_values(log, ["b"], [BASE + 4 * S]) == [None]  # no history: nulls


def test_ttl_edges() -> None:
    log, c = memory_log(CFG)
    commit(c, [event("cs", BASE, customer_id="a", x=1), event("cm", BASE, customer_id="a", y=1)])
    t = [BASE + 5 * S, BASE + 5 * S + 1]  # ttl is 5s: exactly ttl is in, one microsecond more is out
    assert x_values(log, ["a", "a"], t) == [1, None]
    assert asof_view(log, CFG.defs, "cm", ["a", "a"], t).column("y") == [1, 1]  # cm has no ttl
    # The ttl counts from the chosen row: x=1 is too old at +8s, x=2 is exactly 5s old.
    commit(c, [event("cs", BASE + 3 * S, customer_id="a", x=2)])
    assert x_values(log, ["a", "a"], [BASE + 8 * S, BASE + 8 * S + 1]) == [2, None]


def test_as_known_at_uses_ingest_time() -> None:
    log, c = memory_log(CFG)
    commit(c, [event("cs", BASE, customer_id="a", x=1)], available_at=BASE)
    # A late correction: event time BASE + 1s, only known at BASE + 4s.
    commit(c, [event("cs", BASE + S, customer_id="a", x=2)], available_at=BASE + 4 * S)
    t = [BASE + 2 * S, BASE + 4 * S - 1, BASE + 4 * S]
    assert x_values(log, ["a"] * 3, t) == [2, 2, 2]
    assert x_values(log, ["a"] * 3, t, KNOWN) == [1, 1, 2]
    assert x_values(log, ["a"], [BASE + 4 * S], JoinMode(strict=True, as_known_at=True)) == [2]


def test_several_views_and_entities_in_label_order() -> None:
    log, c = memory_log(CFG)
    commit(c, [event("cs", BASE, customer_id="b", x=5, s="bee"),
               event("mr", BASE, merchant_id=-3, r=1.5, f=True),
               event("pr", BASE, customer_id="b", merchant_id=-3, z=9)])
    rows = label_rows([("b", -3, BASE), ("a", -3, BASE), ("b", 1, BASE), ("b", -3, BASE - 1),
                       ("b", -3, BASE)])
    lab = labels_from_any(rows, CFG.defs)
    out = asof_join(log, CFG.defs, {v: lab.entity_keys(v) for v in ("cs", "mr", "pr")}, lab.times)
    assert out["cs"].column("s") == ["bee", None, "bee", None, "bee"]
    assert out["mr"].column("f") == [True, True, None, None, True]
    assert out["pr"].column("z") == [9, None, None, None, 9]
    assert out["cs"].event_ts == [BASE, None, BASE, None, BASE]


def test_features_missing_from_old_rows_are_null() -> None:
    log, c = memory_log(CFG)
    commit(c, [event("cs", BASE, customer_id="a", x=1)])
    log.conn.execute("INSERT INTO log (view, entity, event_timestamp, ingest_ts, source, features)"
                     " VALUES ('cs', 'b', ?, ?, 'old', '{\"x\": 7}')", (BASE, BASE))
    view = asof_view(log, CFG.defs, "cs", ["a", "b"], [BASE, BASE])
    assert view.column("s") == [None, None] and view.column("x") == [1, 7]


def test_the_log_is_read_as_of_one_seq() -> None:
    log, c = memory_log(CFG)
    commit(c, [event("cs", BASE, customer_id="a", x=1)])
    upto = log.max_seq()
    commit(c, [event("cs", BASE + S, customer_id="a", x=2)])  # appended while joining
    got = asof_view(log, CFG.defs, "cs", ["a"], [BASE + 2 * S], upto_seq=upto)
    assert got.column("x") == [1]
    assert asof_view(log, CFG.defs, "cs", ["a"], [BASE + 2 * S]).column("x") == [2]


def test_empty_labels_and_temp_tables_are_dropped() -> None:
    log, c = memory_log(CFG)
    commit(c, [event("cs", BASE, customer_id="a", x=1)])
    assert asof_view(log, CFG.defs, "cs", [], []).values == []
    temps = log.conn.execute("SELECT name FROM sqlite_temp_master").fetchall()
    assert temps == []


def test_training_set_rows_and_projection() -> None:
    log, c = memory_log(CFG)
    commit(c, [event("cs", BASE, customer_id="a", x=1, s="p"),
               event("cm", BASE, customer_id="a", y=2, x=0.5),
               event("mr", BASE, merchant_id=1, r=2.0, f=False)])
    lab = labels_from_any(label_rows([("a", 1, BASE), ("z", 1, BASE)]), CFG.defs)
    ts = build_training_set(log, CFG.defs, lab, ["mr:f", "cs", "cm:y"])
    assert ts.columns == ["customer_id", "merchant_id", "event_timestamp", "row", "f", "x", "s",
                          "y"]
    rows = list(ts.rows())
    assert rows[0][4:] == [False, 1, "p", 2]
    assert rows[1][4:] == [False, None, None, None]
    assert ts.features[0] == [False, False]
