"""Aggregated features through the CLI and the Python API: CSV, JSONL and Parquet cells,
``--full-feature-names``, services, the sidecar and ``rebuild``, the leakage report and
the ``features`` registry."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from asof_stream import FeatureStore
from asof_stream.config import Config
from tests.cli_helpers import push_project, read_csv, run
from tests.toml_parts import CUSTOMER_SPEND

AGG = CUSTOMER_SPEND + """
spend_2d = { fn = "sum", of = "amount", window = "2d" }
qty_2d = { fn = "sum", of = "qty", window = "2d" }
orders_2d = { fn = "count", window = "2d" }
max_2d = { fn = "max", of = "amount", window = "2d" }
mean_all = { fn = "mean", of = "amount" }
last_category = { fn = "last", of = "category" }

[services.spend]
features = ["customer_spend:spend_2d", "customer_stats:tier"]
"""

EVENTS = [
    {"view": "purchases", "customer_id": "c1", "event_timestamp": "2026-01-01T00:00:00Z",
     "amount": 1.5, "qty": 2, "category": "food"},
    {"view": "purchases", "customer_id": "c1", "event_timestamp": "2026-01-02T00:00:00Z",
     "amount": 0.25, "qty": 1, "category": "toys,\"x\""},
    {"view": "purchases", "customer_id": "c1", "event_timestamp": "2026-01-04T00:00:00Z",
     "amount": 10.0, "qty": 5},
    {"view": "customer_stats", "customer_id": "c1", "event_timestamp": "2026-01-01T00:00:00Z",
     "spend_7d": 1.0, "orders_7d": 1, "tier": "gold"},
]
# t = Jan 3: (Jan 1, Jan 3] holds Jan 2 only (Jan 1 is exactly t - 2d, excluded);
# the last category skips the null of Jan 4.
LABELS = ("customer_id,event_timestamp,label\n"
          "c1,2026-01-03T00:00:00Z,1\n"
          "c1,2026-01-04T00:00:00Z,0\n"
          "c2,2026-01-04T00:00:00Z,1\n"
          "c1,2025-12-31T00:00:00Z,0\n")
NAMES = ["spend_2d", "qty_2d", "orders_2d", "max_2d", "mean_all", "last_category"]
WANT = [  # per label row, as CSV cells
    ["0.25", "1", "1", "0.25", "0.875", 'toys,"x"'],
    ["10.0", "5", "1", "10.0", repr(11.75 / 3), 'toys,"x"'],  # Jan 2 = t - 2d: out
    ["0.0", "0", "0", "", "", ""],
    ["0.0", "0", "0", "", "", ""],
]


@pytest.fixture
def project(make_config: Callable[..., Config]) -> Path:
    return push_project(make_config(AGG), EVENTS, LABELS)


def training_set(project: Path, out: str, *extra: str) -> Path:
    r = run(project, "training-set", "--labels", str(project / "labels.csv"),
            "--features", "customer_spend", "--out", str(project / out), *extra)
    assert r.exit_code == 0, r.output
    return project / out


def test_csv_cells_and_full_names(project: Path) -> None:
    rows = read_csv(training_set(project, "out.csv"))
    assert rows[0] == ["customer_id", "event_timestamp", "label", *NAMES]
    assert [r[3:] for r in rows[1:]] == WANT
    rows = read_csv(training_set(project, "full.csv", "--full-feature-names"))
    assert rows[0][3:] == [f"customer_spend__{n}" for n in NAMES]
    assert [r[3:] for r in rows[1:]] == WANT


def test_parquet_and_jsonl_types(project: Path) -> None:
    table = pq.read_table(training_set(project, "out.parquet", "--full-feature-names"))
    types = {f.name: str(f.type) for f in table.schema}
    assert types["customer_spend__spend_2d"] == "double"
    assert types["customer_spend__qty_2d"] == "int64"
    assert types["customer_spend__orders_2d"] == "int64"
    assert types["customer_spend__last_category"] == "string"
    assert table.column("customer_spend__qty_2d").to_pylist() == [1, 5, 0, 0]
    assert table.column("customer_spend__max_2d").to_pylist() == [0.25, 10.0, None, None]
    lines = training_set(project, "out.jsonl").read_text().splitlines()
    first = json.loads(lines[2])
    assert first["spend_2d"] == 0.0 and first["qty_2d"] == 0 and first["max_2d"] is None


def test_strict_and_as_known_at(project: Path) -> None:
    rows = read_csv(training_set(project, "strict.csv", "--strict"))
    # strict at Jan 4: (Jan 2, Jan 4) is empty; at Jan 3: (Jan 1, Jan 3) holds Jan 2
    assert [r[3:6] for r in rows[1:3]] == [["0.25", "1", "1"], ["0.0", "0", "0"]]
    rows = read_csv(training_set(project, "known.csv", "--as-known-at"))
    assert [r[3:6] for r in rows[1:]] == [["0.0", "0", "0"]] * 4  # ingested long after


def test_service_mixing_a_view_and_the_api(project: Path) -> None:
    r = run(project, "training-set", "--labels", str(project / "labels.csv"),
            "--features", "@spend", "--out", str(project / "svc.csv"))
    assert r.exit_code == 0, r.output
    rows = read_csv(project / "svc.csv")
    assert rows[0][3:] == ["spend_2d", "tier"]
    assert [r[3:] for r in rows[1:]] == [["0.25", "gold"], ["10.0", "gold"], ["0.0", ""],
                                         ["0.0", ""]]
    with FeatureStore(project / "asof.toml") as store:
        ts = store.get_historical_features(str(project / "labels.csv"),
                                           ["customer_spend:orders_2d"])
        assert ts.to_arrow().column("orders_2d").to_pylist() == [1, 1, 0, 0]


def test_sidecar_records_the_aggregation_and_rebuild_is_identical(project: Path) -> None:
    out = training_set(project, "train.parquet")
    original = out.read_bytes()
    spec = json.loads((project / "train.parquet.json").read_text())
    assert spec["aggregations"]["customer_spend"]["definition"]["source"] == "purchases"
    assert "purchases" in spec["views"]
    toml = project / "asof.toml"  # a new window in asof.toml: the rebuild uses the recorded one
    toml.write_text(toml.read_text().replace('window = "2d"', 'window = "5d"'))
    r = run(project, "rebuild", str(project / "train.parquet.json"), "--out",
            str(project / "again.parquet"))
    assert r.exit_code == 0, r.output
    assert (project / "again.parquet").read_bytes() == original


def test_features_registry_lists_aggregations(project: Path) -> None:
    r = run(project, "features", "--json", "--view", "customer_spend")
    assert r.exit_code == 0, r.output
    rows = {f["name"]: f for f in json.loads(r.stdout)}
    assert list(rows) == NAMES
    assert rows["spend_2d"]["definition"] == {"fn": "sum", "of": "amount", "source": "purchases",
                                              "window_seconds": 172800.0}
    assert rows["orders_2d"]["type"] == "int64" and rows["mean_all"]["type"] == "float64"
    assert rows["spend_2d"]["services"] == ["spend"] and rows["spend_2d"]["rows"] == 3
    assert rows["mean_all"]["definition"]["window_seconds"] is None
    r = run(project, "features")
    assert r.exit_code == 0, r.output
    assert "customer_spend  (aggregation of purchases" in r.output
    assert "= sum(amount) over 2d" in r.output and "= count(*) over 2d" in r.output


def test_drift_between_training_sets_with_aggregations(project: Path) -> None:
    from asof_stream.monitoring.drift import DriftInputError, build_report

    ref = training_set(project, "ref.csv")
    cur = training_set(project, "cur.parquet", "--full-feature-names")
    with FeatureStore(project / "asof.toml") as store:
        report = build_report(store.config, ref, str(cur))
        names = [f["feature"] for f in report["features"]]
        assert names == [f"customer_spend:{n}" for n in NAMES]
        assert all(f["psi"] is None or f["psi"] == pytest.approx(0.0) for f in report["features"])
        with pytest.raises(DriftInputError, match="computed features are not stored"):
            build_report(store.config, ref, "online", ["customer_spend:spend_2d"])


def test_leakage_cli_over_aggregations(project: Path) -> None:
    r = run(project, "leakage", "--labels", str(project / "labels.csv"), "--features",
            "customer_spend:orders_2d,customer_stats:tier")
    assert r.exit_code == 0, r.output
    # c1 has 3 purchases; labels at Jan 3 and Dec 31 are before the last ones
    assert "label rows it fills from the future: 2 " in r.output
    assert "orders_2d: 1 | 3  <- from the future" in r.output
