"""``asof-stream training-set`` and ``get_historical_features``: outputs, options and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from hypothesis import given
from hypothesis import strategies as st

from asof_stream import FeatureStore
from asof_stream.config import Config
from tests.cli_helpers import push_project, read_csv, run

EVENTS = [
    {"view": "customer_stats", "customer_id": "c1", "event_timestamp": "2026-01-01T00:00:00Z",
     "spend_7d": 1.5, "orders_7d": 1, "tier": "gold"},
    {"view": "customer_stats", "customer_id": "c1", "event_timestamp": "2026-01-03T00:00:00Z",
     "spend_7d": 3.25, "orders_7d": 3},
    {"view": "merchant_risk", "merchant_id": 7, "event_timestamp": "2026-01-02T00:00:00Z",
     "risk": 0.5, "flagged": True},
]
LABELS = ("customer_id,merchant_id,event_timestamp,label\n"
          "c1,7,2026-01-02 05:30:00+05:30,1\n"      # = 2026-01-02T00:00Z: merchant row exactly at t
          "c1,7,2026-01-05T00:00:00Z,0\n"
          "c2,8,2026-01-05T00:00:00Z,1\n"
          "c1,7,2025-12-31T00:00:00Z,0\n")


@pytest.fixture
def project(config: Config) -> Path:
    return push_project(config, EVENTS, LABELS)


def leftovers(project: Path) -> list[str]:
    return sorted(p.name for p in project.iterdir() if p.name.startswith((".out", "out")))


def test_csv_output(project: Path) -> None:
    r = run(project, "training-set", "--labels", str(project / "labels.csv"),
            "--features", "customer_stats:spend_7d,customer_stats:tier",
            "--features", "merchant_risk:flagged", "--out", str(project / "out.csv"))
    assert r.exit_code == 0, r.output
    assert "wrote 4 rows x 7 columns" in r.output
    assert read_csv(project / "out.csv") == [
        ["customer_id", "merchant_id", "event_timestamp", "label", "spend_7d", "tier", "flagged"],
        ["c1", "7", "2026-01-02 05:30:00+05:30", "1", "1.5", "gold", "true"],
        ["c1", "7", "2026-01-05T00:00:00Z", "0", "3.25", "", "true"],
        ["c2", "8", "2026-01-05T00:00:00Z", "1", "", "", ""],
        ["c1", "7", "2025-12-31T00:00:00Z", "0", "", "", ""],
    ]


def test_strict_and_as_known_at(project: Path, config: Config) -> None:
    r = run(project, "training-set", "--labels", str(project / "labels.csv"), "--features",
            "merchant_risk:risk", "--out", str(project / "out.csv"), "--strict")
    assert r.exit_code == 0, r.output
    assert [row[-1] for row in read_csv(project / "out.csv")] == ["risk", "", "0.5", "", ""]
    # Everything was ingested now, long after the label times: as-known-at sees nothing.
    r = run(project, "training-set", "--labels", str(project / "labels.csv"), "--features",
            "merchant_risk:risk", "--out", str(project / "out.csv"), "--as-known-at")
    assert r.exit_code == 0, r.output
    assert [row[-1] for row in read_csv(project / "out.csv")] == ["risk", "", "", "", ""]


@pytest.mark.parametrize("ext", [".jsonl", ".parquet"])
def test_other_formats_agree_with_csv(project: Path, ext: str) -> None:
    args = ["--labels", str(project / "labels.csv"), "--features", "@churn,merchant_risk",
            "--full-feature-names"]
    assert run(project, "training-set", *args, "--out", str(project / "out.csv")).exit_code == 0
    r = run(project, "training-set", *args, "--out", str(project / f"out{ext}"))
    assert r.exit_code == 0, r.output
    if ext == ".jsonl":
        records = [json.loads(line) for line in (project / "out.jsonl").read_text().splitlines()]
    else:
        import pyarrow.parquet as pq

        records = pq.read_table(project / "out.parquet").to_pylist()
    header, *rows = read_csv(project / "out.csv")
    assert list(records[0]) == header == ["customer_id", "merchant_id", "event_timestamp", "label",
                                          "customer_stats__spend_7d", "customer_stats__tier",
                                          "merchant_risk__risk", "merchant_risk__flagged"]
    # label columns keep their types (CSV typed from its cells: training/label_types.py);
    # JSONL keeps the time's text, Parquet makes it a UTC timestamp
    when: object = "2026-01-05T00:00:00Z"
    if ext == ".parquet":
        import datetime as dt

        when = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    assert records[1] == {"customer_id": "c1", "merchant_id": 7,
                          "event_timestamp": when, "label": 0,
                          "customer_stats__spend_7d": 3.25, "customer_stats__tier": None,
                          "merchant_risk__risk": 0.5, "merchant_risk__flagged": True}
    assert len(records) == len(rows) == 4


def test_jsonl_labels_in(project: Path) -> None:
    (project / "labels.jsonl").write_text(
        json.dumps({"merchant_id": 7, "event_timestamp": 1767312000, "meta": {"k": [1]}}) + "\n")
    r = run(project, "training-set", "--labels", str(project / "labels.jsonl"), "--features",
            "merchant_risk", "--out", str(project / "out.csv"))
    assert r.exit_code == 0, r.output
    assert read_csv(project / "out.csv")[1] == ["7", "1767312000", '{"k":[1]}', "0.5", "true"]


def test_timestamp_column_option(project: Path) -> None:
    (project / "l.csv").write_text("customer_id,at\nc1,2026-01-02\n")
    r = run(project, "training-set", "--labels", str(project / "l.csv"), "--features",
            "customer_stats:spend_7d", "--out", str(project / "out.csv"), "--timestamp-column", "at")
    assert r.exit_code == 0, r.output
    assert read_csv(project / "out.csv") == [["customer_id", "at", "spend_7d"], ["c1", "2026-01-02",
                                                                                 "1.5"]]


def assert_fails(r: Result, *needles: str) -> None:
    assert r.exit_code == 1, r.output
    line = r.output.strip()
    assert line.startswith("asof-stream: error: ") and "\n" not in line, line
    for n in needles:
        assert n in line, line


def test_bad_timestamp_leaves_no_file(project: Path) -> None:
    (project / "bad.csv").write_text("customer_id,event_timestamp\nc1,2026-01-02\nc1,2026-13-01\n")
    r = run(project, "training-set", "--labels", str(project / "bad.csv"), "--features",
            "customer_stats", "--out", str(project / "out.csv"))
    assert_fails(r, "bad.csv row 2, column 'event_timestamp'", "2026-13-01")
    assert leftovers(project) == []


def test_failed_write_leaves_no_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asof_stream.training.writers as writers

    def boom(*args: Any) -> None:
        Path(args[1]).write_text("half")
        raise OSError("disk full")

    monkeypatch.setitem(writers.WRITERS, ".csv", boom)
    r = run(project, "training-set", "--labels", str(project / "labels.csv"), "--features",
            "customer_stats", "--out", str(project / "out.csv"))
    assert_fails(r, "disk full")
    assert leftovers(project) == []


def test_bad_input_errors(project: Path) -> None:
    labels = str(project / "labels.csv")
    out = str(project / "out.csv")
    assert_fails(run(project, "training-set", "--labels", labels, "--features", "customer_stats:nope",
                     "--out", out), "customer_stats:spend_7d", "customer_stats:tier")
    assert_fails(run(project, "training-set", "--labels", labels, "--features", "nope",
                     "--out", out), "known views: customer_stats, merchant_risk")
    assert_fails(run(project, "training-set", "--labels", labels, "--features", "@nope",
                     "--out", out), "known services: @churn")
    assert_fails(run(project, "training-set", "--labels", labels, "--features", "customer_stats",
                     "--out", str(project / "out.xlsx")), "unknown output extension '.xlsx'",
                 ".csv, .jsonl, .parquet")
    (project / "nokey.csv").write_text("customer_id,event_timestamp\nc1,2026-01-02\n")
    assert_fails(run(project, "training-set", "--labels", str(project / "nokey.csv"), "--features",
                     "merchant_risk", "--out", out), "missing join key column 'merchant_id'")
    (project / "clash.csv").write_text("customer_id,event_timestamp,tier\nc1,2026-01-02,x\n")
    assert_fails(run(project, "training-set", "--labels", str(project / "clash.csv"), "--features",
                     "customer_stats:tier", "--out", out), "already a label column",
                 "--full-feature-names")
    assert leftovers(project) == []


def test_feature_name_collision(project: Path, make_config: Any) -> None:
    make_config('[views.other]\nentity = "customer"\nfeatures = { tier = "string" }\n')
    args = ["--labels", str(project / "labels.csv"), "--features", "customer_stats:tier,other",
            "--out", str(project / "out.csv")]
    assert_fails(run(project, "training-set", *args), "'tier' is in both customer_stats and other",
                 "--full-feature-names")
    r = run(project, "training-set", *args, "--full-feature-names")
    assert r.exit_code == 0, r.output
    assert read_csv(project / "out.csv")[0][-2:] == ["customer_stats__tier", "other__tier"]


def test_missing_log(config: Config) -> None:
    (config.root / "labels.csv").write_text(LABELS)
    r = run(config.root, "training-set", "--labels", str(config.root / "labels.csv"),
            "--features", "customer_stats", "--out", str(config.root / "out.csv"))
    assert_fails(r, "does not exist yet")


def test_python_api(project: Path, config: Config) -> None:
    import pandas as pd
    frame = pd.DataFrame({"customer_id": ["c1", "c1"], "event_timestamp": pd.to_datetime(
        ["2026-01-02", "2026-01-05"]), "y": [1, 0]})
    with FeatureStore(config) as store:
        ts = store.get_historical_features(frame, ["customer_stats:orders_7d", "customer_stats:tier"])
        df = ts.to_pandas()
        assert list(df.columns) == ["customer_id", "event_timestamp", "y", "orders_7d", "tier"]
        assert str(df["event_timestamp"].dtype).startswith("datetime64")
        assert df["orders_7d"].tolist() == [1, 3] and str(df["orders_7d"].dtype) == "Int64"
        assert df["tier"].tolist() == ["gold", None]
        recs = store.get_historical_features(
            [{"customer_id": "c1", "event_timestamp": "2026-01-03T00:00:00Z"}],
            ["customer_stats:spend_7d"], strict=True).to_records()
        assert recs == [{"customer_id": "c1", "event_timestamp": "2026-01-03T00:00:00Z",
                         "spend_7d": 1.5}]
        from_path = store.get_historical_features(str(project / "labels.csv"), ["@churn"])
        assert from_path.to_records()[1]["spend_7d"] == 3.25


def test_csv_line_copy_equals_the_csv_module(config: Config, tmp_path: Path) -> None:
    """Plain label lines are copied and features appended; the result is what csv.writer
    writes for the parsed cells (quotes, booleans, nulls, floats), CRLF input included."""
    from asof_stream.training.labels import read_labels
    from asof_stream.training.training_set import build_training_set

    with FeatureStore(config) as store:
        store.push([
            {"view": "customer_stats", "customer_id": "c1", "event_timestamp": "2026-01-01",
             "spend_7d": 0.1 + 0.2, "orders_7d": -3, "tier": 'say "hi", then\nleave'},
            {"view": "merchant_risk", "merchant_id": 7, "event_timestamp": "2026-01-01",
             "risk": 1e-300, "flagged": False}])
        (tmp_path / "l.csv").write_bytes(b"customer_id,merchant_id,event_timestamp, note \r\n"
                                         b"c1,7,2026-01-02, x \r\nc2,7,2026-01-02,\r\n\r\n")
        lab = read_labels(tmp_path / "l.csv", config.defs)
        assert lab.lines is not None and lab.rows[1] == ["c2", "7", "2026-01-02", ""]
        ts = build_training_set(store.stores.log, config.defs, lab,
                                ["merchant_risk:flagged", "customer_stats", "merchant_risk:risk"])
        ts.write(tmp_path / "fast.csv")
        lab.lines = None  # the general path: csv.writer over the parsed cells
        ts.write(tmp_path / "slow.csv")
    fast = (tmp_path / "fast.csv").read_bytes()
    assert fast == (tmp_path / "slow.csv").read_bytes()
    assert read_csv(tmp_path / "fast.csv")[1:] == [
        ["c1", "7", "2026-01-02", " x ", "false", "0.30000000000000004", "-3",
         'say "hi", then\nleave', "1e-300"],
        ["c2", "7", "2026-01-02", "", "false", "", "", "", "1e-300"]]


cells = st.one_of(st.none(), st.floats(), st.integers(), st.booleans(), st.text(max_size=5))


@given(st.one_of(st.lists(cells, max_size=12),
                 st.lists(st.one_of(st.none(), st.floats()), max_size=12),
                 st.lists(st.one_of(st.none(), st.integers()), max_size=12),
                 st.lists(st.one_of(st.none(), st.text(alphabet='ab,"\r\n', max_size=4)),
                          max_size=12)))
def test_csv_column_renders_each_cell_as_csv_cell(values: list[Any]) -> None:
    """The column-at-a-time renderer's fast paths give what the cell renderer gives."""
    from asof_stream.training.writers import csv_cell, csv_column

    assert csv_column(list(values)) == [csv_cell(v) for v in values]


def test_grouped_and_regrouped_columns_render_alike(project: Path) -> None:
    """Features grouped by view take the column renderer; interleaved ones the row
    renderer; the cells are the same."""
    grouped = run(project, "training-set", "--labels", str(project / "labels.csv"),
                  "--features", "customer_stats,merchant_risk", "--out", str(project / "g.csv"))
    mixed = run(project, "training-set", "--labels", str(project / "labels.csv"), "--features",
                "merchant_risk:risk,customer_stats,merchant_risk:flagged",
                "--out", str(project / "m.csv"))
    assert grouped.exit_code == 0 and mixed.exit_code == 0, grouped.output + mixed.output
    g, m = read_csv(project / "g.csv"), read_csv(project / "m.csv")
    by_name = [dict(zip(g[0], r, strict=True)) for r in g[1:]]
    assert by_name == [dict(zip(m[0], r, strict=True)) for r in m[1:]]
    assert [r[4:] for r in g[1:]] == [["1.5", "1", "gold", "0.5", "true"],
                                      ["3.25", "3", "", "0.5", "true"],
                                      ["", "", "", "", ""], ["", "", "", "", ""]]


def test_sealed_log_writes_the_same_file_and_sidecar(project: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a sealed log, training-set takes the columnar fast path (plain CSV labels,
    string keys) and writes what the general path wrote over the head, sidecar included;
    with an int join key (merchant_risk) it takes the general path over both tiers."""
    from asof_stream.offline.log import OfflineLog
    from asof_stream.offline.seal import compact
    from asof_stream.training import columnar

    labels = str(project / "labels.csv")
    config = project / "asof.toml"
    for refs, name in (("customer_stats", "a"), ("customer_stats:tier,merchant_risk", "b")):
        assert run(project, "training-set", "--labels", labels, "--features", refs,
                   "--out", str(project / f"out-{name}-head.csv")).exit_code == 0
    from asof_stream.config import load_config

    with OfflineLog(load_config(config).offline_path) as log:
        assert compact(log, load_config(config).defs).sealed_rows == 3
    used: list[bool] = []
    real = columnar.columnar_csv

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        used.append(result is not None)
        return result

    monkeypatch.setattr("asof_stream.training.pipeline.columnar_csv", spy)
    for refs, name in (("customer_stats", "a"), ("customer_stats:tier,merchant_risk", "b")):
        r = run(project, "training-set", "--labels", labels, "--features", refs,
                "--out", str(project / f"out-{name}-sealed.csv"))
        assert r.exit_code == 0, r.output
        head, sealed = (project / f"out-{name}-head.csv"), (project / f"out-{name}-sealed.csv")
        assert sealed.read_bytes() == head.read_bytes()
        a, b = (json.loads(Path(f"{p}.json").read_text()) for p in (head, sealed))
        different = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        assert different <= {"out", "created_at", "output", "built_at", "duration_s"}, different
    assert used == [True, False]


def test_row_groups_read_ahead_of_the_config_are_the_ones_used(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """training-set starts decoding the first segment's row groups from its guess at the
    raw TOML before the config loads; the fast path takes them when it reads those very
    groups (and the file is the one it would have written anyway); groups read with
    other columns are not taken."""
    from asof_stream.offline.log import OfflineLog
    from asof_stream.offline.seal import compact
    from asof_stream.training import segment_ahead

    labels = str(project / "labels.csv")
    assert run(project, "training-set", "--labels", labels, "--features", "customer_stats",
               "--out", str(project / "out-head.csv")).exit_code == 0
    from asof_stream.config import load_config

    with OfflineLog(load_config(project / "asof.toml").offline_path) as log:
        assert compact(log, load_config(project / "asof.toml").defs).sealed_rows == 3
    taken: list[bool] = []
    real = segment_ahead.take

    def spy(*args: Any) -> Any:
        got = real(*args)
        taken.append(got is not None)
        return got

    monkeypatch.setattr("asof_stream.training.columnar.take_ahead", spy)
    r = run(project, "training-set", "--labels", labels, "--features", "customer_stats",
            "--out", str(project / "out-sealed.csv"))
    assert r.exit_code == 0, r.output
    assert taken == [True]
    assert (project / "out-sealed.csv").read_bytes() == (project / "out-head.csv").read_bytes()
    taken.clear()
    segment_ahead.read_ahead(project / "asof.toml", ["customer_stats:tier"], as_known_at=False)
    r = run(project, "training-set", "--labels", labels, "--features", "customer_stats",
            "--out", str(project / "out-again.csv"))
    assert r.exit_code == 0, r.output
    assert taken == [False]  # other columns were read ahead: the fast path read its own
    assert (project / "out-again.csv").read_bytes() == (project / "out-head.csv").read_bytes()
