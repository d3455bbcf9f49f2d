"""Drift: PSI and KS by hand and against scipy, the report, the command and its bad input."""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.ingest.sources.base import Record
from asof_stream.monitoring.drift import build_report, latest_report, parse_window, write_report
from asof_stream.monitoring.drift_stats import (
    EPSILON,
    categorical_psi,
    decile_edges,
    kolmogorov_sf,
    ks_2samp,
    ks_pvalue_asymptotic,
    ks_pvalue_exact,
    ks_statistic_counts,
    numeric_psi,
    psi_from_counts,
)
from asof_stream.stores import open_stores

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


# --- PSI -------------------------------------------------------------------------------


def test_categorical_psi_by_hand() -> None:
    b = categorical_psi(["a"] * 50 + ["b"] * 50, ["a"] * 25 + ["b"] * 75)
    assert b.labels == ["a", "b"] and b.reference == [50, 50] and b.current == [25, 75]
    assert b.psi == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5), abs=1e-12)
    # An unseen category gets its own bin, its reference share smoothed to epsilon.
    u = categorical_psi(["a"] * 100, ["a"] * 90 + ["c"] * 10)
    assert u.labels == ["a", "c"] and u.reference == [100, 0] and u.current == [90, 10]
    expected = (0.9 - 1.0) * math.log(0.9) + (0.1 - EPSILON) * math.log(0.1 / EPSILON)
    assert u.psi == pytest.approx(expected, abs=1e-12)
    assert categorical_psi(["x", "y"], ["y", "x"]).psi == 0.0


def test_numeric_psi_by_hand() -> None:
    ref = [float(i) for i in range(1, 11)]
    assert decile_edges(ref) == pytest.approx([1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1])
    b = numeric_psi(ref, [10.0] * 20)
    assert b.reference == [1] * 10 and b.current == [0] * 9 + [20]
    expected = 9 * (EPSILON - 0.1) * math.log(EPSILON / 0.1) + (1 - 0.1) * math.log(1 / 0.1)
    assert b.psi == pytest.approx(expected, abs=1e-12)
    assert b.labels[0] == "(-inf, 1.9]" and b.labels[-1] == "(9.1, +inf)"
    assert numeric_psi(ref, ref).psi == 0.0


def test_ties_merge_edges_and_values_on_an_edge_go_below() -> None:
    ref = [0.0] * 60 + [float(i) for i in range(1, 41)]
    edges = decile_edges(ref)
    assert edges == sorted(set(edges)) and edges[0] == 0.0 and len(edges) == 5
    b = numeric_psi(ref, [0.0, 0.0, 40.0])
    assert b.reference[0] == 60 and b.current[0] == 2  # every zero in the bin (-inf, 0]
    assert sum(b.reference) == 100 and sum(b.current) == 3
    constant = numeric_psi([5.0] * 10, [5.0, 6.0])
    assert constant.labels == ["(-inf, 5]", "(5, +inf)"] and constant.current == [1, 1]


def test_psi_against_numpy_on_random_data() -> None:
    rng = np.random.default_rng(7)
    for shift in (0.0, 0.3, 1.0):
        ref = rng.normal(0, 1, 1000)
        cur = rng.normal(shift, 1.3, 700)
        edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10))  # numpy's linear quantiles
        r = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1) / len(ref)
        c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1) / len(cur)
        r, c = np.maximum(r, EPSILON), np.maximum(c, EPSILON)
        expected = float(np.sum((c - r) * np.log(c / r)))
        got = numeric_psi(ref.tolist(), cur.tolist())
        assert decile_edges(ref.tolist()) == pytest.approx(edges.tolist(), abs=1e-12)
        assert got.psi == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_psi_needs_matching_bins() -> None:
    with pytest.raises(ValueError):
        psi_from_counts([1, 2], [1])


# --- KS --------------------------------------------------------------------------------


def test_ks_by_hand() -> None:
    # Fully separated samples of 3: D = 1, and 2 of the C(6, 3) = 20 orderings are as extreme.
    r = ks_2samp([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert r.statistic == 1.0 and r.pvalue == pytest.approx(0.1, abs=1e-15) and r.method == "exact"
    # Ties across samples are passed together: the CDFs meet at 2.
    k, m, n = ks_statistic_counts([1.0, 2.0, 2.0, 3.0], [2.0, 2.0])
    assert (k, m, n) == (2, 4, 2)  # D = 2 / 8: after 1, F_a = 1/4 and F_b = 0
    assert ks_2samp([1.0, 2.0], [1.0, 2.0]).pvalue == 1.0
    assert kolmogorov_sf(0.0) == 1.0
    # Q_KS(1.36) is the textbook 5% point.
    assert kolmogorov_sf(1.3581) == pytest.approx(0.05, abs=1e-4)
    with pytest.raises(ValueError):
        ks_2samp([], [1.0])


def test_kolmogorov_sf_matches_scipy() -> None:
    for lam in (0.2, 0.5, 0.8, 1.0, 1.17, 1.19, 1.5, 2.0, 3.0):
        assert kolmogorov_sf(lam) == pytest.approx(stats.kstwobign.sf(lam), rel=1e-9, abs=1e-15)


def test_ks_exact_matches_scipy_on_random_small_samples() -> None:
    rng = random.Random(11)
    for trial in range(30):
        m, n = rng.randint(1, 60), rng.randint(1, 60)
        a = [rng.gauss(0, 1) for _ in range(m)]
        b = [rng.gauss(rng.choice([0.0, 0.5, 1.5]), 1) for _ in range(n)]
        if trial % 3 == 0:  # heavy ties
            a, b = [float(round(x)) for x in a], [float(round(x)) for x in b]
        want = stats.ks_2samp(a, b, method="exact")
        k, mm, nn = ks_statistic_counts(a, b)
        assert k / (mm * nn) == pytest.approx(want.statistic, abs=1e-12)
        assert ks_pvalue_exact(k, mm, nn) == pytest.approx(want.pvalue, abs=1e-9)


def test_ks_asymptotic_close_to_scipy_on_random_large_samples() -> None:
    rng = np.random.default_rng(3)
    for m, n, shift in [(400, 600, 0.0), (800, 500, 0.1), (1500, 2000, 0.05), (300, 300, 0.2)]:
        a, b = rng.normal(0, 1, m), rng.normal(shift, 1, n)
        want = stats.ks_2samp(a, b, method="asymp")
        got = ks_2samp(a.tolist(), b.tolist())
        assert got.method == "asymptotic"
        assert got.statistic == pytest.approx(want.statistic, abs=1e-12)
        # scipy uses the exact one-sample law at round(ne); Stephens' formula is within ~2%.
        assert got.pvalue == pytest.approx(want.pvalue, rel=0.03, abs=2e-3)
        d = want.statistic
        assert ks_pvalue_asymptotic(d, m, n) == pytest.approx(got.pvalue, rel=1e-12)


# --- the report ------------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def _reference(tmp_path: Path, n: int = 300, seed: int = 1) -> Path:
    """A training set as `training-set` writes it: label columns, then features."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append([f"c{i}", "2026-01-05T00:00:00Z", rng.choice([0, 1]),
                     repr(rng.gauss(10, 2)), rng.choice(["gold", "silver"]), i % 7,
                     "true" if i % 2 else "false"])
    return _write_csv(tmp_path / "ref.csv", ["customer_id", "event_timestamp", "label", "spend_7d",
                                             "tier", "orders_7d", "merchant_risk__flagged"], rows)


def _push_current(config: Config, n: int = 300, shift: float = 0.0, seed: int = 2,
                  tiers: tuple[str, ...] = ("gold", "silver")) -> None:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        body = {"view": "customer_stats", "customer_id": f"c{i}", "event_timestamp": T0 + i,
                "spend_7d": rng.gauss(10 + shift, 2), "tier": rng.choice(tiers), "orders_7d": i % 7}
        records.append(Record(json.dumps(body).encode(), str(i)))
    with open_stores(config) as s:
        s.committer().commit("t", records, available_at=10**15)


def _by_feature(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["feature"]: r for r in report["features"]}


def test_report_against_online_flags_shifted_features(config: Config, tmp_path: Path) -> None:
    ref = _reference(tmp_path)
    _push_current(config, shift=3.0, tiers=("gold", "platinum"))
    report = build_report(config, ref, "online")
    feats = _by_feature(report)
    assert list(feats) == ["customer_stats:spend_7d", "customer_stats:orders_7d",
                           "customer_stats:tier", "merchant_risk:flagged"]
    spend = feats["customer_stats:spend_7d"]
    assert spend["kind"] == "numeric" and spend["reference_count"] == 300
    assert spend["current_count"] == 300 and spend["flags"] == ["psi", "ks"]
    assert spend["psi"] > 1 and spend["ks_pvalue"] < 1e-10 and spend["ks_method"] == "asymptotic"
    tier = feats["customer_stats:tier"]
    assert tier["kind"] == "categorical" and tier["ks_pvalue"] is None and tier["flags"] == ["psi"]
    assert [b["bin"] for b in tier["bins"]][-1] == "platinum"  # unseen: its own bin
    orders = feats["customer_stats:orders_7d"]
    assert orders["psi"] == pytest.approx(0.0, abs=1e-3) and orders["flags"] == []
    flagged = feats["merchant_risk:flagged"]  # nothing online for this view: nothing to compare
    assert flagged["current_count"] == 0 and flagged["psi"] is None and "no current values" in \
        flagged["note"]
    assert report["flagged"] == ["customer_stats:spend_7d", "customer_stats:tier"]
    json_path, html_path = write_report(report, tmp_path / "out")
    assert latest_report(tmp_path / "out") == json.loads(json_path.read_text())
    page = html_path.read_text()
    assert page.count("<svg") == 2 and "<script" not in page
    for chunk in page.split("<svg")[1:]:  # each chart is well-formed XML with two bars per bin
        svg = ElementTree.fromstring("<svg" + chunk.split("</svg>")[0] + "</svg>")
        rects = svg.findall("{http://www.w3.org/2000/svg}rect")
        assert len(rects) >= 2 + 2 * 2
    assert "customer_stats:spend_7d" in page and "platinum" in page


def test_same_data_no_flags_and_window(config: Config, tmp_path: Path) -> None:
    ref = _reference(tmp_path)
    report = build_report(config, ref, str(ref), ["customer_stats:spend_7d", "customer_stats:tier"])
    assert report["flagged"] == []
    assert all(r["psi"] == 0.0 for r in report["features"])
    assert _by_feature(report)["customer_stats:spend_7d"]["ks_pvalue"] == 1.0
    _push_current(config, n=100, shift=3.0)
    # The window holds the events with T0 + 10 <= t < T0 + 30: 20 rows.
    window = f"window:{T0 + 10}..2026-01-01T00:00:30Z"
    w = _by_feature(build_report(config, ref, window, ["customer_stats:spend_7d"]))
    assert w["customer_stats:spend_7d"]["current_count"] == 20
    assert w["customer_stats:spend_7d"]["ks_method"] == "exact"
    assert _by_feature(build_report(config, ref, "window:..", ["customer_stats"]))[
        "customer_stats:tier"]["current_count"] == 100
    empty = build_report(config, ref, "window:2030-01-01..", ["customer_stats:spend_7d"])
    assert empty["features"][0]["current_count"] == 0 and empty["flagged"] == []


def test_readers_full_names_jsonl_parquet_and_missing_values(config: Config, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"customer_stats__spend_7d": v, "merchant_risk__flagged": f, "merchant_risk__risk": r}
            for v, f, r in [(1.0, True, 0.5), (None, False, None), (3, None, float("nan")),
                            (4.5, True, 1.0)]]
    jl = tmp_path / "ref.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ref.parquet")
    for path in (jl, tmp_path / "ref.parquet"):
        report = build_report(config, path, str(jl))
        feats = _by_feature(report)
        assert list(feats) == ["customer_stats:spend_7d", "merchant_risk:risk", "merchant_risk:flagged"]
        assert feats["customer_stats:spend_7d"]["reference_count"] == 3
        assert feats["customer_stats:spend_7d"]["reference_missing"] == 1
        assert feats["merchant_risk:risk"]["reference_missing"] == 2  # null and NaN
        assert [b["bin"] for b in feats["merchant_risk:flagged"]["bins"]] == ["true", "false"]
        assert report["flagged"] == []


def test_empty_data_gives_an_empty_report(config: Config, tmp_path: Path) -> None:
    empty_jsonl = tmp_path / "empty.jsonl"
    empty_jsonl.write_text("")
    report = build_report(config, empty_jsonl, "online")
    assert report["features"] == [] and report["flagged"] == []
    header_only = _write_csv(tmp_path / "h.csv", ["customer_id", "spend_7d"], [])
    report = build_report(config, header_only, "online")
    assert [r["reference_count"] for r in report["features"]] == [0]
    assert report["features"][0]["note"].startswith("no reference values")
    write_report(report, tmp_path / "o")  # renders with nothing to chart
    assert "<svg" not in (tmp_path / "o" / "drift.html").read_text()


def test_parse_window() -> None:
    assert parse_window("2026-01-01..2026-01-02") == (T0 * 10**6, (T0 + 86400) * 10**6)
    assert parse_window("..") == (None, None)
    for bad in ("2026-01-01", "yesterday..", "2026-01-02..2026-01-01"):
        with pytest.raises(ValueError):
            parse_window(bad)


# --- the command -----------------------------------------------------------------------


def _invoke(config: Config, *args: str) -> Any:
    return CliRunner().invoke(main, ["drift", *args, "--config", str(config.path)])


def test_cli_writes_report_and_exit_codes(config: Config, tmp_path: Path) -> None:
    ref = _reference(tmp_path)
    _push_current(config, shift=3.0)
    out = tmp_path / "report"
    r = _invoke(config, "--reference", str(ref), "--current", "online", "--out", str(out))
    assert r.exit_code == 0, r.output  # drift is information
    assert "customer_stats:spend_7d" in r.output and "PSI,KS" in r.output
    assert json.loads((out / "drift.json").read_text())["flagged"] == ["customer_stats:spend_7d"]
    r = _invoke(config, "--reference", str(ref), "--current", "online", "--out", str(out),
                "--fail-on-drift", "--features", "customer_stats:spend_7d,customer_stats:tier")
    assert r.exit_code == 1
    r = _invoke(config, "--reference", str(ref), "--current", "online", "--json",
                "--fail-on-drift", "--features", "@churn")  # default folder beside the config
    assert r.exit_code == 1
    assert json.loads(r.stdout)["flagged"] == ["customer_stats:spend_7d"]
    assert (config.root / "reports" / "drift" / "drift.json").is_file()
    r = _invoke(config, "--reference", str(ref), "--current", str(ref), "--fail-on-drift",
                "--out", str(out))
    assert r.exit_code == 0, r.output


def test_cli_bad_input(config: Config, tmp_path: Path) -> None:
    ref = _reference(tmp_path)
    base = ["--reference", str(ref), "--out", str(tmp_path / "o")]
    cases = [
        (["--current", "online", "--features", "customer_stats:nope"],
         ["unknown feature 'customer_stats:nope'", "valid features:", "merchant_risk:risk"]),
        (["--current", "online", "--features", "nope"], ["unknown view", "customer_stats:spend_7d"]),
        (["--current", "online", "--features", "merchant_risk:risk"],
         ["has no column for merchant_risk:risk", "its columns: customer_id"]),
        (["--current", "window:tomorrow..", "--features", "customer_stats"], ["window 'tomorrow..'"]),
        (["--current", "latest"], ["expected 'online', 'window:START..END' or a training set"]),
        (["--current", str(tmp_path / "missing.csv")], ["no such training-set file"]),
    ]
    for args, messages in cases:
        r = _invoke(config, *base, *args)
        assert r.exit_code == 1, (args, r.output)
        for m in messages:
            assert m in r.output, (args, r.output)
    r = _invoke(config, "--reference", str(tmp_path / "nope.txt"), "--current", "online")
    assert r.exit_code == 1 and "unknown training-set extension '.txt'" in r.output
    labels_only = _write_csv(tmp_path / "labels.csv", ["customer_id", "label"], [["c1", "1"]])
    r = _invoke(config, "--reference", str(labels_only), "--current", "online")
    assert r.exit_code == 1 and "has no feature columns" in r.output
    bad_value = _write_csv(tmp_path / "bad.csv", ["spend_7d"], [["1.5"], ["lots"]])
    r = _invoke(config, "--reference", str(bad_value), "--current", "online")
    assert r.exit_code == 1 and "row 2" in r.output and "'lots' is not a number" in r.output
    current_missing = _write_csv(tmp_path / "cur.csv", ["tier"], [["gold"]])
    r = _invoke(config, *base, "--current", str(current_missing), "--features", "customer_stats")
    assert r.exit_code == 1 and "the current training set" in r.output
    assert "no column for customer_stats:spend_7d, customer_stats:orders_7d" in r.output
    r = _invoke(config, "--current", "online")
    assert r.exit_code == 2 and "--reference" in r.output


def test_ambiguous_bare_column(make_config: Callable[..., Config], tmp_path: Path) -> None:
    config = make_config("""
[views.other]
entity = "customer"
features = { tier = "string" }
""")
    ref = _write_csv(tmp_path / "r.csv", ["tier"], [["gold"]])
    with pytest.raises(ValueError, match="could be any of customer_stats:tier, other:tier"):
        build_report(config, ref, "online")
    assert build_report(config, ref, "online", ["other:tier"])["features"][0]["feature"] == "other:tier"


def test_window_reads_sealed_segments_too(config: Config, tmp_path: Path) -> None:
    """A window counts the rows sealed into segments as well as those in the head, with
    the same values: the report is the same before and after sealing."""
    from asof_stream.offline.log import OfflineLog
    from asof_stream.offline.seal import compact

    ref = _reference(tmp_path)
    _push_current(config, n=100, shift=3.0)
    window = f"window:{T0 + 10}..2026-01-01T00:00:30Z"
    before = build_report(config, ref, window, ["customer_stats"])
    with OfflineLog(config.offline_path) as log:
        assert compact(log, config.defs).sealed_rows == 100
    _push_current(config, n=25, shift=3.0, seed=3)  # and more in the head: rows 0..24 again
    after = build_report(config, ref, window, ["customer_stats"])
    counts = {r["feature"]: r["current_count"] for r in after["features"]}
    assert counts["customer_stats:spend_7d"] == 20 + 15
    with OfflineLog(config.offline_path) as log:
        compact(log, config.defs)
    assert build_report(config, ref, window, ["customer_stats"])["features"] == after["features"]
    assert before["features"][0]["current_count"] == 20
