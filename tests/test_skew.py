"""asof-stream skew: the online store against the log as known now."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.ingest.sources.base import Record
from asof_stream.monitoring.skew import (
    DIFFERENT_ROW,
    DIFFERENT_VALUES,
    KNOWN_LATER,
    MISSING_IN_LOG,
    MISSING_ONLINE,
    audit,
    same_features,
)
from asof_stream.online.base import OnlineRow
from asof_stream.stores import open_stores
from asof_stream.timestamps import now_micros

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, epoch seconds


def _ev(cid: str, t: int, spend: float, tier: str = "gold", **extra: Any) -> Record:
    body = {"view": "customer_stats", "customer_id": cid, "event_timestamp": T0 + t,
            "spend_7d": spend, "tier": tier, **extra}
    return Record(json.dumps(body).encode(), f"{cid}@{t}")


def _load(config: Config) -> None:
    """Out-of-order events, a late older one and a duplicate, in several batches."""
    with open_stores(config) as s:
        c = s.committer()
        c.commit("t", [_ev("c1", 20, 2.0), _ev("c2", 5, 1.5, event_id="e2")], available_at=10**15)
        c.commit("t", [_ev("c1", 10, 1.0), _ev("c3", 7, 9.0)], available_at=10**15 + 1)
        c.commit("t", [_ev("c2", 5, 1.5, event_id="e2"), _ev("c2", 6, 3.0)], available_at=10**15 + 2)
        m = {"view": "merchant_risk", "merchant_id": 4, "event_timestamp": T0, "risk": 0.5,
             "flagged": False}
        c.commit("t", [Record(json.dumps(m).encode(), "m")], available_at=10**15 + 3)


def _audit(config: Config, now: int | None = None) -> Any:
    with open_stores(config, heal=False) as s:
        return audit(s.log, s.online, list(config.defs.views), now_micros() if now is None else now)


def _invoke(config: Config, *args: str) -> Any:
    return CliRunner().invoke(main, ["skew", *args, "--config", str(config.path)])


def test_honest_store_has_no_difference(config: Config) -> None:
    _load(config)
    report = _audit(config)
    assert report.differences == []
    assert report.checked == {"customer_stats": 3, "merchant_risk": 1}
    r = _invoke(config, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["differences_total"] == 0 and out["checked"]["customer_stats"] == 3


def test_sql_update_behind_the_daemons_back_is_found(config: Config) -> None:
    _load(config)
    online_file = config.online_url[len("sqlite:///"):]
    with sqlite3.connect(online_file) as db:
        db.execute("UPDATE online SET features = ? WHERE view = 'customer_stats' AND entity = 'c1'",
                   (json.dumps({"spend_7d": 999.0, "orders_7d": None, "tier": "gold"}),))
    report = _audit(config)
    assert [(d.kind, d.entity) for d in report.differences] == [(DIFFERENT_VALUES, "c1")]
    d = report.differences[0]
    assert "spend_7d" in d.detail
    assert d.online["features"]["spend_7d"] == 999.0 and d.log["features"]["spend_7d"] == 2.0
    r = _invoke(config)
    assert r.exit_code == 1
    assert "different_values" in r.output and "c1" in r.output and "1 difference" in r.output


def test_fabricated_rows_deletes_and_strangers_are_found(config: Config) -> None:
    _load(config)
    with open_stores(config, heal=False) as s:
        high = s.online.applied_seq()
        # A higher (event_timestamp, seq) than anything in the log: the monotonic rule lets it in.
        s.online.apply([OnlineRow("customer_stats", "c2", (T0 + 100) * 10**6, high + 50, 10**15,
                                  json.dumps({"spend_7d": 0.0, "orders_7d": None, "tier": "x"})),
                        OnlineRow("customer_stats", "ghost", T0 * 10**6, 1, 10**15,
                                  json.dumps({"spend_7d": 1.0, "orders_7d": None, "tier": "x"}))],
                       high)
    online_file = config.online_url[len("sqlite:///"):]
    with sqlite3.connect(online_file) as db:
        db.execute("DELETE FROM online WHERE entity = 'c3'")
        db.execute("UPDATE online SET ingest_ts = 5 WHERE view = 'merchant_risk'")
    report = _audit(config)
    kinds = {(d.view, d.entity): d.kind for d in report.differences}
    assert kinds == {("customer_stats", "c2"): DIFFERENT_ROW,
                     ("customer_stats", "ghost"): MISSING_IN_LOG,
                     ("customer_stats", "c3"): MISSING_ONLINE,
                     ("merchant_risk", "4"): DIFFERENT_VALUES}
    assert "ingest_ts" in next(d.detail for d in report.differences if d.view == "merchant_risk")
    r = _invoke(config, "--view", "merchant_risk", "--json")
    assert r.exit_code == 1
    assert [d["entity"] for d in json.loads(r.stdout)["differences"]] == ["4"]


def test_as_known_at_now(config: Config) -> None:
    """A row made available in the future is not known now: the store is ahead of now."""
    _load(config)
    future = now_micros() + 10**12
    with open_stores(config) as s:
        s.committer().commit("t", [_ev("c1", 30, 5.0), _ev("c9", 1, 1.0)], available_at=future)
    report = _audit(config)
    assert {(d.entity, d.kind) for d in report.differences} == {("c1", KNOWN_LATER),
                                                               ("c9", KNOWN_LATER)}
    assert _audit(config, now=future).differences == []  # as known then, all agree


def test_same_features() -> None:
    assert same_features('{"a":1,"b":"x"}', '{"b":"x","a":1}')
    assert same_features('{"a":NaN}', '{"a":NaN}')
    assert not same_features('{"a":1}', '{"a":1.0}')  # int64 1 is not float 1.0
    assert not same_features('{"a":1}', '{"a":1,"b":null}')


def test_cli_bad_input(make_config: Callable[..., Config]) -> None:
    config = make_config()
    r = _invoke(config)
    assert r.exit_code == 1 and "does not exist yet" in r.output
    _load(config)
    r = _invoke(config, "--view", "nope")
    assert r.exit_code == 1
    assert "unknown view 'nope'" in r.output and "customer_stats, merchant_risk" in r.output


def test_differences_gone_on_the_second_read_are_not_reported(config: Config) -> None:
    """A batch landing between the two reads: the recheck reads both stores again."""
    _load(config)
    online_file = config.online_url[len("sqlite:///"):]
    with sqlite3.connect(online_file) as db:
        db.execute("DELETE FROM online WHERE entity IN ('c1', 'c3')")
    from asof_stream.online.materialize import materialize

    with open_stores(config, heal=False) as s:
        def clock() -> int:  # runs after the first pass: the stores come back in line
            materialize(s.log, s.online)
            return now_micros()

        assert len(audit(s.log, s.online, ["customer_stats"], now_micros()).differences) == 2
        assert audit(s.log, s.online, ["customer_stats"], now_micros(), clock=clock).differences == []
        with sqlite3.connect(online_file) as db:
            db.execute("DELETE FROM online WHERE entity = 'c3'")
        kept = audit(s.log, s.online, ["customer_stats"], now_micros(), clock=now_micros)
        assert [(d.entity, d.kind) for d in kept.differences] == [("c3", MISSING_ONLINE)]


def _seal(config: Config) -> None:
    from asof_stream.offline.log import OfflineLog
    from asof_stream.offline.seal import compact

    with OfflineLog(config.offline_path) as log:
        assert compact(log, config.defs).sealed_rows > 0


def test_sealed_rows_are_audited_like_head_rows(config: Config) -> None:
    """After sealing, the audit reads the segments too: an honest store is still honest
    (a sealed row's null orders_7d equals the event's missing one), and rows known later,
    tampering and missing rows are still found, whether the log row is sealed or not."""
    _load(config)
    _seal(config)
    assert _audit(config).differences == []
    assert _audit(config).checked == {"customer_stats": 3, "merchant_risk": 1}
    future = now_micros() + 10**12
    with open_stores(config) as s:
        s.committer().commit("t", [_ev("c1", 30, 5.0), _ev("c9", 1, 1.0)], available_at=future)
    _seal(config)
    assert {(d.entity, d.kind) for d in _audit(config).differences} == {("c1", KNOWN_LATER),
                                                                      ("c9", KNOWN_LATER)}
    assert _audit(config, now=future).differences == []
    online_file = config.online_url[len("sqlite:///"):]
    with sqlite3.connect(online_file) as db:
        db.execute("UPDATE online SET features = ? WHERE view = 'customer_stats' AND entity = 'c3'",
                   (json.dumps({"spend_7d": 9.5, "tier": "gold"}),))
        db.execute("DELETE FROM online WHERE entity = 'c2'")
    report = _audit(config, now=future)
    assert {(d.entity, d.kind) for d in report.differences} == {("c3", DIFFERENT_VALUES),
                                                               ("c2", MISSING_ONLINE)}
    assert "spend_7d" in next(d.detail for d in report.differences if d.entity == "c3")
