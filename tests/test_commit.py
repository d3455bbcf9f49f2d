from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from asof_stream.config import Config
from asof_stream.ingest.sources.base import Record
from asof_stream.offline.log import Position
from asof_stream.stores import open_stores


def rec(i: int, **over: Any) -> Record:
    ev = {"view": "customer_stats", "customer_id": f"c{i % 3}",
          "event_timestamp": 1_767_600_000 + i, "spend_7d": float(i), **over}
    return Record(json.dumps(ev).encode(), f"test:{i}")


def test_batch_rows_dead_letters_and_positions_commit_together(config: Config) -> None:
    with open_stores(config) as s:
        records = [rec(i) for i in range(5)] + [Record(b"garbage", "test:5")]
        r = s.committer().commit("src", records, [Position("p0", 6, "d")])
        assert (r.stored, r.duplicates, r.rejected) == (5, 0, 1)
        assert s.log.max_seq() == 5
        assert s.log.positions("src") == {"src": {"p0": Position("p0", 6, "d")}}
        raw, reason, pos = s.log.conn.execute(
            "SELECT raw, reason, position FROM dead_letters").fetchone()
        assert (raw, pos) == (b"garbage", "test:5") and "not JSON" in reason
        assert s.log.view_stats()["customer_stats"]["rows"] == 5
        assert s.online.count("customer_stats") == 3


def test_a_failed_commit_leaves_nothing(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_stores(config) as s:
        committer = s.committer()
        committer.commit("src", [rec(0)], [Position("p0", 1)])

        def boom(*a: Any, **k: Any) -> None:
            raise sqlite3.IntegrityError("injected failure while writing the online store")

        monkeypatch.setattr(s.online, "write_in_transaction", boom)
        with pytest.raises(Exception, match="injected"):
            committer.commit("src", [rec(1), Record(b"bad", "x")], [Position("p0", 3)])
        assert s.log.max_seq() == 1
        assert s.log.dead_letter_count() == 0
        assert s.log.positions("src")["src"]["p0"].next_offset == 1


def test_event_id_dedupe_across_and_within_batches(config: Config) -> None:
    with open_stores(config) as s:
        c = s.committer()
        r1 = c.commit("src", [rec(1, event_id="a"), rec(2, event_id="a"), rec(3)])
        assert (r1.stored, r1.duplicates) == (2, 1)
        r2 = c.commit("src", [rec(1, event_id="a"), rec(4, event_id="b")])
        assert (r2.stored, r2.duplicates) == (1, 1)
        # The same event_id in another view is a different event.
        r3 = c.commit("src", [Record(json.dumps({"view": "merchant_risk", "merchant_id": 1,
                                                  "event_timestamp": 5, "event_id": "a"}).encode(),
                                      "m")])
        assert r3.stored == 1
        assert s.log.view_stats()["customer_stats"]["duplicates"] == 2


def test_a_repeat_refused_by_the_insert_is_skipped_without_a_trace(config: Config) -> None:
    """A committer that has seen no repeat inserts first; the head's unique index refuses
    a logged event_id, the transaction is rolled back and the batch committed again with
    the ids looked up: no seq gap, no online upsert of the repeat."""
    with open_stores(config) as s:
        s.committer().commit("src", [rec(1, event_id="a"), rec(2, event_id="b")])
        fresh = s.committer()
        assert fresh._look_first == 0
        r = fresh.commit("src", [rec(5, event_id="b"), rec(6, event_id="c")],
                         [Position("p0", 7)])
        assert (r.stored, r.duplicates, r.high_seq) == (1, 1, 3)
        assert s.log.conn.execute("SELECT seq, event_id FROM log ORDER BY seq").fetchall() == [
            (1, "a"), (2, "b"), (3, "c")]
        (row,) = s.online.get("customer_stats", ["c2"])  # rec(2)'s, not the repeat rec(5)'s
        assert row is not None and (row.seq, row.event_ts) == (2, 1_767_600_002_000_000)
        assert s.log.positions("src")["src"]["p0"].next_offset == 7
        assert s.log.view_stats()["customer_stats"]["duplicates"] == 1
        assert fresh._look_first > 0  # the next batches look first


def test_the_log_is_append_only(config: Config) -> None:
    with open_stores(config) as s:
        s.committer().commit("src", [rec(1)])
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            s.log.conn.execute("UPDATE log SET features = '{}'")


def test_available_at_sets_ingest_ts(config: Config) -> None:
    with open_stores(config) as s:
        s.committer().commit("src", [rec(1)], available_at=42)
        assert s.log.conn.execute("SELECT ingest_ts FROM log").fetchone()[0] == 42


def test_view_stats_track_rows_and_time_range(config: Config) -> None:
    with open_stores(config) as s:
        c = s.committer()
        c.commit("src", [rec(5), rec(2), rec(9)])
        c.commit("src", [rec(1), Record(b"x", "bad")], available_at=77)
        st = s.log.view_stats()["customer_stats"]
        base = 1_767_600_000 * 1_000_000
        assert (st["rows"], st["earliest_event_timestamp"], st["latest_event_timestamp"]) == (
            4, base + 1_000_000, base + 9_000_000)
        assert st["latest_ingest_ts"] > 77  # max over batches, not the last one
