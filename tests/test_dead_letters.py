"""Bad input: every malformed record becomes exactly one dead letter, every valid event
lands, the daemon keeps running; dead-letters lists them and re-queues the ones the
fixed definitions accept."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.daemon_checks import assert_exactly_once, logged_orders, reaped
from tests.fixtures_kafka import Broker, cli, event, run_cli, write_config


def bad_records() -> dict[str, bytes]:
    base = {"view": "customer_stats", "customer_id": "c1", "event_timestamp": 1_767_600_000}

    def js(**over: object) -> bytes:
        return json.dumps({**base, **over}).encode()

    return {
        "not JSON": b"this is not json {",
        "JSON but not an object": b"[1, 2, 3]",
        "wrong type": js(orders_7d="seven"),
        "bool for int": js(orders_7d=True),
        "int64 out of range": js(orders_7d=2**70),
        "unknown view": json.dumps({**base, "view": "promo_stats", "discount": 0.5}).encode(),
        "unknown field": js(discount=0.25),
        "bad timestamp": js(event_timestamp="yesterday"),
        "timestamp out of range": js(event_timestamp="10000-01-01T00:00:00Z"),
        "missing timestamp": json.dumps({"view": "customer_stats", "customer_id": "c1"}).encode(),
        "missing join key": json.dumps({"view": "customer_stats",
                                        "event_timestamp": 1_767_600_000}).encode(),
        "NaN": b'{"view": "customer_stats", "customer_id": "c1", "event_timestamp": 1, '
               b'"spend_7d": NaN}',
        "Infinity": b'{"view": "customer_stats", "customer_id": "c1", "event_timestamp": 1, '
                    b'"spend_7d": Infinity}',
        "oversized": js(tier="x" * 4000),
        "non-UTF-8": b'{"view": "customer_stats", "customer_id": "\xff\xfe", "event_timestamp": 1}',
    }


def valid(i: int) -> bytes:
    return event(i, view="customer_stats")


def dead_letters(folder: Path) -> list[tuple[bytes, str, str, int | None]]:
    conn = sqlite3.connect(folder / "data" / "offline.sqlite")
    try:
        return [(bytes(r), why, pos, rq) for r, why, pos, rq in conn.execute(
            "SELECT raw, reason, position, requeued_ts FROM dead_letters ORDER BY id")]
    finally:
        conn.close()


def wait_for(cond: Callable[[], bool], daemon: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        assert daemon.poll() is None, "the daemon stopped"
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_bad_records_become_dead_letters_and_can_be_requeued(kafka_broker: Broker,
                                                             tmp_path: Path) -> None:
    topic = kafka_broker.create_topic(1, "bad")
    source = f"""
[sources.events]
kind = "kafka"
bootstrap = "{kafka_broker.bootstrap}"
topics = ["{topic}"]
group = ""
"""
    config = write_config(tmp_path, source, batch_size=50, batch_timeout_ms=50,
                          max_event_bytes=2048)
    bad = bad_records()
    stream: list[bytes] = []
    for i, raw in enumerate(bad.values()):
        stream += [valid(2 * i), raw, valid(2 * i + 1)]
    kafka_broker.produce(topic, stream, partitions=1)
    daemon = cli("--log-level", "INFO", "run", "--config", str(config),
                 log_file=tmp_path / "daemon.log")
    with reaped(daemon):
        n_valid = 2 * len(bad)
        wait_for(lambda: len(logged_orders(tmp_path)) == n_valid, daemon)
        # It keeps running: later valid events land too.
        kafka_broker.produce(topic, [valid(i) for i in range(n_valid, n_valid + 20)], partitions=1)
        wait_for(lambda: len(logged_orders(tmp_path)) == n_valid + 20, daemon)
        assert daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    assert_exactly_once(tmp_path, set(range(n_valid + 20)))
    letters = dead_letters(tmp_path)
    assert sorted(r for r, *_ in letters) == sorted(bad.values())  # exactly one per bad record
    offsets = {raw: i for i, raw in enumerate(stream)}
    for raw, why, pos, requeued in letters:
        assert pos == f"{topic}/0@{offsets[raw]}" and requeued is None and why
    reasons = {raw: why for raw, why, *_ in letters}
    assert "not JSON" in reasons[bad["not JSON"]]
    assert "oversized" in reasons[bad["oversized"]]
    assert "UTF-8" in reasons[bad["non-UTF-8"]]
    assert "NaN" in reasons[bad["NaN"]]
    assert "unknown view" in reasons[bad["unknown view"]]
    assert "unknown field" in reasons[bad["unknown field"]]

    listed = run_cli("dead-letters", "--json", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert shown["count"] == len(bad) == shown["open"]
    assert {d["position"] for d in shown["dead_letters"]} == {p for _, _, p, _ in letters}
    assert all(d["reason"] and d["time"] and "raw_preview" in d for d in shown["dead_letters"])
    human = run_cli("dead-letters", "--limit", "3", "--config", str(config))
    assert human.stdout.count("reason:") == 3

    # Fix the definitions: a promo_stats view, and a discount feature on customer_stats.
    config.write_text(config.read_text().replace(
        'features = { spend_7d = "float64", orders_7d = "int64", tier = "string" }',
        'features = { spend_7d = "float64", orders_7d = "int64", tier = "string",'
        ' discount = "float64" }\n\n[views.promo_stats]\nentity = "customer"\n'
        'features = { discount = "float64" }'))
    requeued = run_cli("dead-letters", "--requeue", "--json", "--config", str(config))
    assert requeued.returncode == 0, requeued.stderr
    assert json.loads(requeued.stdout) == {"examined": len(bad), "requeued": 2,
                                           "still_bad": len(bad) - 2, "stored": 2,
                                           "duplicates": 0}
    after = {raw: (why, rq) for raw, why, _, rq in dead_letters(tmp_path)}
    assert len(after) == len(bad)  # re-queue never adds dead letters
    assert after[bad["unknown view"]][1] is not None and after[bad["unknown field"]][1] is not None
    assert all(rq is None for raw, (_, rq) in after.items()
               if raw not in (bad["unknown view"], bad["unknown field"]))
    conn = sqlite3.connect(tmp_path / "data" / "offline.sqlite")
    views = dict(conn.execute("SELECT view, count(*) FROM log GROUP BY view").fetchall())
    conn.close()
    assert views == {"customer_stats": n_valid + 20 + 1, "promo_stats": 1}
    again = run_cli("dead-letters", "--requeue", "--json", "--config", str(config))
    assert json.loads(again.stdout)["requeued"] == 0
    assert json.loads(run_cli("dead-letters", "--json", "--config",
                              str(config)).stdout)["count"] == len(bad) - 2
