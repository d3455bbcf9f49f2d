"""The Kafka source against a real broker: positions in SQLite, lag, replay --kafka, the fence."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from asof_stream.config import load_config
from asof_stream.daemon import run_daemon
from asof_stream.ingest.commit import PositionConflict
from asof_stream.ingest.sources.base import Record
from asof_stream.offline.log import Position
from asof_stream.stores import open_stores
from tests.daemon_checks import assert_exactly_once, kafka_source, logged_orders, positions
from tests.fixtures_kafka import Broker, event, run_cli, write_config


def caught_up(folder: Path) -> int:
    return asyncio.run(run_daemon(load_config(folder / "asof.toml"), until_caught_up=True))


def test_resumes_from_sqlite_positions_and_reports_lag(kafka_broker: Broker,
                                                        tmp_path: Path) -> None:
    topic = kafka_broker.create_topic(3)
    write_config(tmp_path, kafka_source(kafka_broker, topic), batch_size=400)
    kafka_broker.produce(topic, [event(i) for i in range(3000)])
    assert caught_up(tmp_path) == 0
    assert_exactly_once(tmp_path, set(range(3000)))
    assert sum(positions(tmp_path, "events").values()) == 3000
    kafka_broker.produce(topic, [event(i) for i in range(3000, 3300)])
    assert caught_up(tmp_path) == 0
    assert_exactly_once(tmp_path, set(range(3300)))
    status = json.loads(run_cli("status", "--json", "--config", str(tmp_path / "asof.toml")).stdout)
    src = status["sources"]["events"]
    assert sorted(src["lag"]) == [f"{topic}/{p}" for p in range(3)]
    assert src["lag_total"] == 0
    assert sum(p["next_offset"] for p in src["positions"].values()) == 3300


def test_lag_is_the_recorded_high_watermark_minus_the_position(tmp_path: Path) -> None:
    # What status computes from a stored position (no broker needed).
    write_config(tmp_path, "")
    config = load_config(tmp_path / "asof.toml")
    with open_stores(config) as s:
        s.committer().commit("events", [], [Position("t/0", 40, json.dumps({"highwater": 100}))])
    from asof_stream.monitoring.status import kafka_lag

    with open_stores(config) as s:
        assert kafka_lag(s.log.positions("events")["events"]) == {"lag": {"t/0": 60},
                                                                  "lag_total": 60}


def test_replay_kafka_offset_range(kafka_broker: Broker, tmp_path: Path) -> None:
    topic = kafka_broker.create_topic(3)
    cfg = write_config(tmp_path, "")
    kafka_broker.produce(topic, [event(i) for i in range(900)])  # 300 per partition, in order
    args = ["replay", "--config", str(cfg), "--kafka", topic, "--bootstrap", kafka_broker.bootstrap]
    r = run_cli(*args, "--from-offset", "100", "--to-offset", "200")
    assert r.returncode == 0, r.stderr
    # round-robin: event i is in partition i % 3 at offset i // 3
    expected = {i for i in range(900) if 100 <= i // 3 < 200}
    assert_exactly_once(tmp_path, expected)
    again = run_cli(*args, "--from-offset", "100", "--to-offset", "200")
    assert again.returncode == 0 and "stored 0" in again.stdout
    rest = run_cli(*args, "--from-offset", "200")
    assert rest.returncode == 0, rest.stderr
    assert_exactly_once(tmp_path, {i for i in range(900) if i // 3 >= 100})
    assert positions(tmp_path, f"replay-kafka:{topic}") == {f"{topic}/{p}": 300 for p in range(3)}


def test_a_commit_whose_positions_moved_is_refused(tmp_path: Path) -> None:
    """The fence that keeps a zombie owner (or a second daemon) from doubling a batch."""
    write_config(tmp_path, "")
    with open_stores(load_config(tmp_path / "asof.toml")) as s:
        a, b = s.committer(), s.committer()
        a.commit("events", [Record(event(0), "t/0@0")], [Position("t/0", 1)], expect={"t/0": None})
        with pytest.raises(PositionConflict):
            b.commit("events", [Record(event(0), "t/0@0")], [Position("t/0", 1)],
                     expect={"t/0": None})
        a.commit("events", [Record(event(1), "t/0@1")], [Position("t/0", 2)], expect={"t/0": 1})
    assert_exactly_once(tmp_path, {0, 1})
    assert sum(logged_orders(tmp_path).values()) == 2
