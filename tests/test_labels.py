"""Label tables: formats, time parsing (naive = UTC), entity keys, and errors by row and column."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asof_stream.config import Config
from asof_stream.events import entity_key
from asof_stream.timestamps import TimestampError, cell_to_micros, parse_iso
from asof_stream.training.labels import LabelError, cells_to_micros, labels_from_any, read_labels
from tests.join_helpers import join_config

T0 = parse_iso("2026-01-05T10:00:00Z")


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_csv_keeps_cells_and_parses_every_time_form(tmp_path: Path, config: Config) -> None:
    p = write(tmp_path, "l.csv", "customer_id,event_timestamp,label,note\n"
              "c1,2026-01-05T10:00:00Z,1,\n"
              "c2,2026-01-05 15:30:00+05:30,0,\"a, b\"\n"
              "c3,2026-01-05T10:00:00,1,x\n"
              "c4,1767607200,0,y\n"
              "c5,1767607200.5,0,y\n"
              "c6,2026-01-05,0,z\n"
              "c7,2026-01-05T10:00:00.123456789Z,0,z\n")
    lab = read_labels(p, config.defs)
    assert lab.columns == ["customer_id", "event_timestamp", "label", "note"]
    assert lab.rows[1] == ["c2", "2026-01-05 15:30:00+05:30", "0", "a, b"]
    day = parse_iso("2026-01-05")
    assert lab.times == [T0, T0, T0, T0, T0 + 500_000, day, T0 + 123456]
    assert lab.entity_keys("customer_stats") == ["c1", "c2", "c3", "c4", "c5", "c6", "c7"]


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.sampled_from(["Z", "+05:30", "-08:00", "+00:00", ""]),
       st.sampled_from(["seconds", "milliseconds", "microseconds"]))
def test_bulk_cell_parse_equals_cell_to_micros(dt: datetime, suffix: str, spec: str) -> None:
    cells = [dt.isoformat(timespec=spec) + suffix, dt.isoformat(sep=" ") + suffix]
    try:
        want = [cell_to_micros(c) for c in cells]
    except TimestampError:
        with pytest.raises(TimestampError):
            cells_to_micros(cells)
        return
    assert cells_to_micros(cells) == want
    assert cells_to_micros(cells[:1]) == want[:1]


def test_bulk_parse_rejects_what_the_rules_reject() -> None:
    for bad in ["2026-02-30T10:00:00Z", "0000-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00",
                "2026-W01-1T10:00:00Z"]:
        with pytest.raises(TimestampError):
            cells_to_micros(["2026-01-05T10:00:00Z", bad])


def test_bad_timestamp_names_row_and_column(tmp_path: Path, config: Config) -> None:
    p = write(tmp_path, "l.csv", "customer_id,ts\nc1,2026-01-05T10:00:00Z\nc2,yesterday\n")
    with pytest.raises(LabelError, match=r"l\.csv row 2, column 'ts': bad timestamp.*yesterday"):
        read_labels(p, config.defs, timestamp_column="ts")
    p = write(tmp_path, "e.csv", "customer_id,event_timestamp\nc1,\n")
    with pytest.raises(LabelError, match=r"row 1, column 'event_timestamp': bad timestamp.*empty"):
        read_labels(p, config.defs)


def test_jsonl_errors_name_the_line(tmp_path: Path, config: Config) -> None:
    p = write(tmp_path, "l.jsonl", '{"customer_id": "c1", "event_timestamp": 1767607200}\n\n'
              '{"customer_id": "c2", "event_timestamp": true}\n')
    with pytest.raises(LabelError, match=r"l\.jsonl line 3, column 'event_timestamp'"):
        read_labels(p, config.defs)
    p = write(tmp_path, "m.jsonl", '{"customer_id": "c1", "event_timestamp": 1}\n{"customer_id"\n')
    with pytest.raises(LabelError, match=r"m\.jsonl line 2: not JSON"):
        read_labels(p, config.defs)
    p = write(tmp_path, "n.jsonl", '{"customer_id": "c1", "event_timestamp": 1}\n'
              '{"customer_id": "c2"}\n')
    with pytest.raises(LabelError, match=r"n\.jsonl line 2, column 'event_timestamp': missing"):
        read_labels(p, config.defs)


def test_jsonl_values_keep_their_types(tmp_path: Path, config: Config) -> None:
    p = write(tmp_path, "l.jsonl", json.dumps({"merchant_id": 7, "event_timestamp":
                                               "2026-01-05T10:00:00Z", "w": [1, 2]}) + "\n")
    lab = read_labels(p, config.defs)
    assert lab.rows == [[7, "2026-01-05T10:00:00Z", [1, 2]]]
    assert lab.entity_keys("merchant_risk") == ["7"]


def test_missing_columns(tmp_path: Path, config: Config) -> None:
    p = write(tmp_path, "l.csv", "customer_id,when\nc1,2026-01-05\n")
    with pytest.raises(LabelError, match=r"missing timestamp column 'event_timestamp'; "
                                         r"columns: customer_id, when"):
        read_labels(p, config.defs)
    lab = read_labels(p, config.defs, timestamp_column="when")
    with pytest.raises(LabelError, match=r"missing join key column 'merchant_id' needed by view "
                                         r"'merchant_risk'"):
        lab.entity_keys("merchant_risk")


def test_bad_and_empty_keys_name_row_and_column(tmp_path: Path, config: Config) -> None:
    p = write(tmp_path, "l.csv", "merchant_id,customer_id,event_timestamp\n"
              "7,c1,2026-01-05\n x12,,2026-01-05\n")
    lab = read_labels(p, config.defs)
    with pytest.raises(LabelError, match=r"row 2, column 'merchant_id': join key 'merchant_id' "
                                         r"is int64, got ' x12'"):
        lab.entity_keys("merchant_risk")
    with pytest.raises(LabelError, match=r"row 2, column 'customer_id': missing join key value"):
        lab.entity_keys("customer_stats")
    big = write(tmp_path, "b.csv", "merchant_id,event_timestamp\n9223372036854775808,2026-01-05\n")
    with pytest.raises(LabelError, match="row 1, column 'merchant_id'.*int64"):
        read_labels(big, config.defs).entity_keys("merchant_risk")
    typed = labels_from_any([{"merchant_id": "7", "event_timestamp": "2026-01-05"}], config.defs)
    with pytest.raises(LabelError, match="row 1, column 'merchant_id'.*int64, got '7'"):
        typed.entity_keys("merchant_risk")


def test_ragged_csv_and_bad_files(tmp_path: Path, config: Config) -> None:
    p = write(tmp_path, "l.csv", "customer_id,event_timestamp\nc1,2026-01-05\nc2\n")
    with pytest.raises(LabelError, match=r"row 2 \(line 3\): 1 cells, the header has 2"):
        read_labels(p, config.defs)
    with pytest.raises(LabelError, match=r"unknown label file extension '\.txt'"):
        read_labels(write(tmp_path, "l.txt", ""), config.defs)
    with pytest.raises(LabelError, match="empty file"):
        read_labels(write(tmp_path, "e.csv", ""), config.defs)
    with pytest.raises(LabelError, match="no such label file"):
        read_labels(tmp_path / "nope.csv", config.defs)
    with pytest.raises(LabelError, match="appears twice"):
        read_labels(write(tmp_path, "d.csv", "a,a,event_timestamp\n"), config.defs)


def test_several_join_keys_use_the_canonical_key() -> None:
    cfg = join_config()
    lab = labels_from_any([{"customer_id": "c,1", "merchant_id": 7, "event_timestamp": 0}],
                          cfg.defs)
    entity = cfg.defs.entities["pair"]
    assert lab.entity_keys("pr") == [entity_key(entity, ["c,1", 7])]
    assert lab.times == [0]


def test_parquet_times_naive_is_utc(tmp_path: Path, config: Config) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    naive = datetime(2026, 1, 5, 10, 0, 0)
    table = pa.table({
        "customer_id": ["c1", "c2"],
        "event_timestamp": pa.array([naive, naive + timedelta(microseconds=7)],
                                    pa.timestamp("us")),
        "aware": pa.array([naive, naive], pa.timestamp("ns", tz="Asia/Kolkata")),
        "text": ["2026-01-05T15:30:00+05:30", "2026-01-05T10:00:00Z"],
    })
    pq.write_table(table, tmp_path / "l.parquet")
    assert read_labels(tmp_path / "l.parquet", config.defs).times == [T0, T0 + 7]
    # An aware column is stored as UTC instants: 10:00 naive given as UTC stays 10:00Z.
    assert read_labels(tmp_path / "l.parquet", config.defs, "aware").times == [T0, T0]
    assert read_labels(tmp_path / "l.parquet", config.defs, "text").times == [T0, T0]
    nulls = pa.table({"customer_id": ["c1"], "event_timestamp": pa.array([None],
                                                                         pa.timestamp("us"))})
    pq.write_table(nulls, tmp_path / "n.parquet")
    with pytest.raises(LabelError, match="row 1, column 'event_timestamp': missing timestamp"):
        read_labels(tmp_path / "n.parquet", config.defs)


def test_pandas_frames(config: Config) -> None:
    import pandas as pd
    naive = pd.DataFrame({"customer_id": ["c1"], "event_timestamp": [pd.Timestamp(
        "2026-01-05 10:00:00")]})
    assert labels_from_any(naive, config.defs).times == [T0]
    aware = pd.DataFrame({"customer_id": ["c1"], "event_timestamp": [pd.Timestamp(
        "2026-01-05 15:30:00", tz="Asia/Kolkata")]})
    assert labels_from_any(aware, config.defs).times == [T0]
    text = pd.DataFrame({"customer_id": ["c1", "c2"], "event_timestamp": ["2026-01-05T10:00:00Z",
                                                                          "soon"]})
    with pytest.raises(LabelError, match="row 2, column 'event_timestamp': bad timestamp"):
        labels_from_any(text, config.defs)
    nat = pd.DataFrame({"customer_id": ["c1"], "event_timestamp": [pd.NaT]}).astype(
        {"event_timestamp": "datetime64[ns]"})
    with pytest.raises(LabelError, match="row 1, column 'event_timestamp': missing timestamp"):
        labels_from_any(nat, config.defs)


def test_records_accept_datetimes(config: Config) -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    lab = labels_from_any([
        {"customer_id": "c1", "event_timestamp": datetime(2026, 1, 5, 10)},
        {"customer_id": "c1", "event_timestamp": datetime(2026, 1, 5, 15, 30, tzinfo=ist)},
        {"customer_id": "c1", "event_timestamp": datetime(2026, 1, 5, 10, tzinfo=UTC)},
    ], config.defs)
    assert lab.times == [T0, T0, T0]
    with pytest.raises(LabelError, match="must be a file path"):
        labels_from_any(42, config.defs)


@given(st.lists(st.one_of(
    st.text(alphabet="0123456789-T:.Z+ ", max_size=26),
    st.sampled_from(["2026-01-05T10:00:00Z", "2026-01-05T10:00:00.123456+05:30",
                     "2026-01-05T10:00:00.1234567Z", "2026-1-05T10:00:00Z", "١٢٣٤-01-05T10:00:00Z"])),
    min_size=1, max_size=8))
def test_shape_check_equals_matching_every_cell(cells: list[str]) -> None:
    """Checking the distinct digit shapes says what matching each cell says."""
    from asof_stream.training.labels import _FAST_ISO, _all_plain_iso

    assert _all_plain_iso(cells) == all(_FAST_ISO.fullmatch(c) for c in cells)
