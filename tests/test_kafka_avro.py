"""Avro values on a Kafka source: plain Avro and the Confluent wire format, same rules as JSON."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest

from asof_stream.config import ConfigError, load_config
from asof_stream.daemon import run_daemon
from tests.daemon_checks import assert_exactly_once, kafka_source
from tests.fixtures_kafka import Broker, write_config

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def schema(ts: Any, tier: str = "string") -> dict[str, Any]:
    return {"type": "record", "name": "CustomerStats", "fields": [
        {"name": "customer_id", "type": "string"},
        {"name": "event_timestamp", "type": ts},
        {"name": "spend_7d", "type": "double"},
        {"name": "orders_7d", "type": "long"},
        {"name": "tier", "type": tier}]}


MICROS = schema({"type": "long", "logicalType": "timestamp-micros"})
MILLIS = schema({"type": "long", "logicalType": "timestamp-millis"})
TEXT = schema("string")
INT_TIER = schema({"type": "long", "logicalType": "timestamp-micros"}, tier="long")


def avro(sch: dict[str, Any], rec: dict[str, Any], schema_id: int | None = None) -> bytes:
    buf = io.BytesIO()
    if schema_id is not None:
        buf.write(b"\0" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(sch), rec)
    return buf.getvalue()


def rec(i: int, ts: Any, tier: Any = None) -> dict[str, Any]:
    return {"customer_id": f"c{i % 7}", "event_timestamp": ts, "spend_7d": i / 4,
            "orders_7d": i, "tier": tier if tier is not None else ("gold" if i % 2 else "silver")}


def write_schemas(folder: Path, **schemas: dict[str, Any]) -> None:
    (folder / "schemas").mkdir(parents=True, exist_ok=True)
    for name, sch in schemas.items():
        (folder / "schemas" / f"{name}.avsc").write_text(json.dumps(sch))


def source(broker: Broker, topic: str, avro_keys: str) -> str:
    return kafka_source(broker, topic, extra=f'value_format = "avro"\n{avro_keys}\n')


def stored(folder: Path) -> dict[int, tuple[int, str]]:
    """orders_7d -> (event_timestamp, features JSON) of the logged rows."""
    with sqlite3.connect(folder / "data" / "offline.sqlite") as c:
        rows = c.execute("SELECT event_timestamp, features FROM log").fetchall()
    return {json.loads(f)["orders_7d"]: (ts, f) for ts, f in rows}


def dead(folder: Path) -> dict[str, tuple[bytes, str]]:
    with sqlite3.connect(folder / "data" / "offline.sqlite") as c:
        return {p: (bytes(r), why) for p, r, why in
                c.execute("SELECT position, raw, reason FROM dead_letters")}


def test_confluent_wire_format_with_schema_ids(kafka_broker: Broker, tmp_path: Path) -> None:
    topic = kafka_broker.create_topic(1)
    write_schemas(tmp_path, micros=MICROS, millis=MILLIS, int_tier=INT_TIER)
    write_config(tmp_path, source(kafka_broker, topic, 'avro_schemas = { 1 = "schemas/micros.avsc",'
                                  ' 2 = "schemas/millis.avsc", 3 = "schemas/int_tier.avsc" }'))
    at = T0 + timedelta(microseconds=123457)
    good = [avro(MICROS, rec(i, at + timedelta(seconds=i)), 1) for i in range(5)]
    good += [avro(MILLIS, rec(i, T0 + timedelta(milliseconds=i)), 2) for i in range(5, 10)]
    bad = {
        "unknown id": avro(MICROS, rec(100, T0), 9),
        "no magic": avro(MICROS, rec(101, T0)),
        "truncated": avro(MICROS, rec(102, T0), 1)[:-3],
        "typing": avro(INT_TIER, rec(103, T0, tier=5), 3),
        "trailing": avro(MICROS, rec(104, T0), 1) + b"\x02\x04",
        "far future": avro(MICROS, rec(105, 2**62), 1),  # a long, but past the year 9999
    }
    kafka_broker.produce(topic, good + list(bad.values()), partitions=1)
    assert asyncio.run(run_daemon(load_config(tmp_path / "asof.toml"), until_caught_up=True)) == 0
    assert_exactly_once(tmp_path, set(range(10)))
    rows = stored(tmp_path)
    us = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert rows[0][0] == us and rows[3][0] == us + 3_000_000  # timestamp-micros, exact
    assert rows[7][0] == (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) + 7000
    assert json.loads(rows[1][1]) == {"spend_7d": 0.25, "orders_7d": 1, "tier": "gold"}
    letters = dead(tmp_path)
    by_offset = {int(p.rpartition("@")[2]): v for p, v in letters.items()}
    assert len(by_offset) == len(bad)
    reasons = {name: by_offset[10 + k] for k, name in enumerate(bad)}
    assert reasons["unknown id"] == (bad["unknown id"], "unknown Avro schema id 9 (known: 1, 2, 3)")
    assert reasons["no magic"][0] == bad["no magic"]
    assert "Confluent wire format" in reasons["no magic"][1]
    assert reasons["truncated"][0] == bad["truncated"] and "truncated" in reasons["truncated"][1]
    assert reasons["trailing"][0] == bad["trailing"]
    assert "2 bytes after the record" in reasons["trailing"][1]
    assert "outside the years 1 to 9999" in reasons["far future"][1]
    # decoded, then refused by the same typing rules as JSON (dead letter holds the JSON form)
    raw, why = reasons["typing"]
    assert why == "feature 'tier' (string): expected string, got 5"
    assert json.loads(raw)["tier"] == 5


def test_plain_avro_with_one_schema_and_text_timestamps(kafka_broker: Broker,
                                                        tmp_path: Path) -> None:
    topic = kafka_broker.create_topic(2)
    write_schemas(tmp_path, text=TEXT)
    write_config(tmp_path, source(kafka_broker, topic, 'avro_schema = "schemas/text.avsc"'))
    values = [avro(TEXT, rec(i, f"2026-01-05T10:00:{i:02d}+05:30")) for i in range(40)]
    values.append(avro(TEXT, rec(40, "yesterday")))  # not a time: dead letter, as in JSON
    kafka_broker.produce(topic, values, partitions=2)
    assert asyncio.run(run_daemon(load_config(tmp_path / "asof.toml"), until_caught_up=True)) == 0
    assert_exactly_once(tmp_path, set(range(40)))
    assert stored(tmp_path)[0][0] == (datetime(2026, 1, 5, 4, 30, tzinfo=UTC)
                                      - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 10**6
    [(raw, why)] = dead(tmp_path).values()
    assert "bad event_timestamp" in why and "yesterday" in why


def test_avro_settings_are_checked_at_load(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir(parents=True)
    (tmp_path / "schemas" / "bad.avsc").write_text(json.dumps(
        {"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}))
    cases = {
        'avro_schema = "schemas/missing.avsc"': "avro_schema 'schemas/missing.avsc': no such file",
        'avro_schema = "schemas/bad.avsc"': "not a valid Avro schema",
        "": "needs exactly one of avro_schema",
        'avro_schemas = { x = "schemas/bad.avsc" }': "avro_schemas",
    }
    for keys, expected in cases.items():
        cfg = write_config(tmp_path, source(Broker("127.0.0.1:1"), "t", keys))
        with pytest.raises(ConfigError) as err:
            load_config(cfg)
        assert expected in str(err.value), (keys, str(err.value))
