"""Label columns keep their types in Parquet and JSONL training sets (CSV typed from text)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from asof_stream import FeatureStore
from asof_stream.config import Config
from asof_stream.training.label_types import infer_column

CSV = """customer_id,event_timestamp,churned,score,flag,code,note,merchant_id
c1,2026-01-05T10:00:00Z,0,1.5,true,007,hello,12
c2,2026-01-06T10:00:00Z,1,-2e3,false,12,,7
c3,2026-01-07,,,,,x,3
"""


def test_csv_label_columns_are_typed_in_parquet_and_jsonl(config: Config, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(CSV, encoding="utf-8")
    with FeatureStore(config) as store:
        ts = store.get_historical_features(str(labels), ["customer_stats:tier",
                                                         "merchant_risk:risk"])
        ts.write(tmp_path / "train.parquet")
        ts.write(tmp_path / "train.jsonl")
    table = pq.read_table(tmp_path / "train.parquet")
    types = {f.name: f.type for f in table.schema}
    assert types["event_timestamp"] == pa.timestamp("us", tz="UTC")
    assert types["churned"] == pa.int64() and types["score"] == pa.float64()
    assert types["flag"] == pa.bool_()
    assert types["code"] == pa.string()  # "007" stays text
    assert types["customer_id"] == pa.string() and types["merchant_id"] == pa.int64()
    assert table.column("churned").to_pylist() == [0, 1, None]
    assert table.column("score").to_pylist() == [1.5, -2000.0, None]
    assert table.column("flag").to_pylist() == [True, False, None]
    assert table.column("event_timestamp").to_pylist()[2].isoformat() == "2026-01-07T00:00:00+00:00"
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert [r["churned"] for r in rows] == [0, 1, None]
    assert [r["flag"] for r in rows] == [True, False, None]
    assert [r["code"] for r in rows] == ["007", "12", ""]
    assert [r["event_timestamp"] for r in rows] == ["2026-01-05T10:00:00Z",
                                                    "2026-01-06T10:00:00Z", "2026-01-07"]
    assert [r["merchant_id"] for r in rows] == [12, 7, 3]


def test_parquet_label_types_are_kept(config: Config, tmp_path: Path) -> None:
    src = pa.table({"customer_id": ["c1"], "event_timestamp": pa.array(
        [1_767_607_200_000_000], pa.timestamp("us", tz="UTC")), "churned": pa.array([1], pa.int8())})
    pq.write_table(src, tmp_path / "labels.parquet")
    with FeatureStore(config) as store:
        store.get_historical_features(str(tmp_path / "labels.parquet"),
                                      ["customer_stats:tier"]).write(tmp_path / "out.parquet")
    types = {f.name: f.type for f in pq.read_table(tmp_path / "out.parquet").schema}
    assert types["churned"] == pa.int8() and types["event_timestamp"] == src.schema[1].type


@given(st.lists(st.one_of(st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=False,
                                                                           allow_infinity=False)
                          .map(repr), st.sampled_from(["", "true", "false", "007", "+1", "nan",
                                                       "x", "1_0", " 1"])), max_size=8))
def test_inference_never_changes_a_value(cells: list[str]) -> None:
    kind, values = infer_column(cells)
    for cell, v in zip(cells, values, strict=True):
        if kind == "string":
            assert v == cell
        elif cell == "":
            assert v is None
        elif kind == "int64":
            assert str(v) == cell
        elif kind == "float64":
            assert v == float(cell)
        else:
            assert v == (cell == "true")
