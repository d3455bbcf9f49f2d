"""asof-stream features: the registry of features with metadata, versions, data and users."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner

from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.ingest.sources.base import Record
from asof_stream.monitoring.registry import format_seconds, list_features
from asof_stream.stores import open_stores
from asof_stream.versions import view_version
from tests.toml_parts import MERCHANT, PRELUDE, described_customer_stats

META_TOML = PRELUDE + MERCHANT + described_customer_stats("Spend over 7 days") + """
[views.merchant_risk]
entity = "merchant"
owner = "risk"
tags = ["fraud"]
features = { risk = "float64", flagged = "bool" }

[services.churn]
features = ["customer_stats:spend_7d", "customer_stats:tier"]

[services.everything]
features = ["customer_stats", "@churn"]
"""


def _event(**kw: Any) -> Record:
    return Record(json.dumps(kw).encode(), kw.get("event_id", "p"))


def _load(config: Config) -> None:
    with open_stores(config) as s:
        s.committer().commit("t", [
            _event(view="customer_stats", customer_id="c1", event_timestamp="2026-01-02T00:00:00Z",
                   spend_7d=1.0),
            _event(view="customer_stats", customer_id="c2", event_timestamp="2026-01-05T00:00:00Z",
                   spend_7d=2.0),
            _event(view="customer_stats", customer_id="c1", event_timestamp="2026-01-01T00:00:00Z",
                   spend_7d=3.0),
        ], available_at=1_000_000)


def _invoke(config: Config, *args: str) -> Any:
    return CliRunner().invoke(main, ["features", *args, "--config", str(config.path)])


def test_every_feature_with_metadata_rows_and_services(make_config: Callable[..., Config]) -> None:
    config = make_config(text=META_TOML)
    _load(config)
    feats = {f["ref"]: f for f in list_features(config)}
    assert list(feats) == ["customer_stats:spend_7d", "customer_stats:orders_7d",
                           "customer_stats:tier", "merchant_risk:risk", "merchant_risk:flagged"]
    spend = feats["customer_stats:spend_7d"]
    assert spend["type"] == "float64" and spend["description"] == "Spend over 7 days"
    assert spend["owner"] == "growth" and spend["tags"] == ["pii-free", "churn"]
    assert spend["ttl_seconds"] == 14 * 86400 and spend["freshness_objective_seconds"] == 3600
    assert spend["version"] == view_version(config.defs, "customer_stats")
    assert spend["version_first_seen"] is not None  # recorded by the first commit
    assert spend["rows"] == 3
    assert spend["first_event_timestamp"] == "2026-01-01T00:00:00Z"
    assert spend["last_event_timestamp"] == "2026-01-05T00:00:00Z"
    assert spend["services"] == ["churn", "everything"]
    assert feats["customer_stats:orders_7d"]["services"] == ["everything"]
    assert feats["merchant_risk:risk"]["services"] == []
    risk = feats["merchant_risk:risk"]
    assert risk["rows"] == 0 and risk["first_event_timestamp"] is None
    assert risk["ttl_seconds"] is None and risk["freshness_objective_seconds"] is None


def test_works_before_any_data(make_config: Callable[..., Config]) -> None:
    config = make_config(text=META_TOML)
    feats = list_features(config)
    assert len(feats) == 5 and all(f["rows"] == 0 and f["version_first_seen"] is None for f in feats)
    assert not config.offline_path.exists()  # listing does not create the log


def test_filters(make_config: Callable[..., Config]) -> None:
    config = make_config(text=META_TOML)
    assert [f["name"] for f in list_features(config, tag="fraud")] == ["risk", "flagged"]
    assert [f["name"] for f in list_features(config, owner="growth", view="customer_stats")] == [
        "spend_7d", "orders_7d", "tier"]
    assert list_features(config, owner="risk", tag="churn") == []  # both exist, match nothing


def test_cli_json_and_text(make_config: Callable[..., Config]) -> None:
    config = make_config(text=META_TOML)
    _load(config)
    r = _invoke(config, "--json", "--tag", "churn")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [f["name"] for f in data] == ["spend_7d", "orders_7d", "tier"]
    r = _invoke(config)
    assert r.exit_code == 0, r.output
    assert "customer_stats" in r.output and "rows 3" in r.output and "@churn,@everything" in r.output
    assert "freshness 1h" in r.output and "ttl 14d" in r.output


def test_cli_bad_filters_list_valid_names(make_config: Callable[..., Config]) -> None:
    config = make_config(text=META_TOML)
    r = _invoke(config, "--view", "nope")
    assert r.exit_code == 1
    assert "unknown view 'nope'" in r.output and "customer_stats, merchant_risk" in r.output
    r = _invoke(config, "--tag", "nope")
    assert r.exit_code == 1 and "churn, fraud, pii-free" in r.output
    r = _invoke(config, "--owner", "nobody")
    assert r.exit_code == 1 and "growth, risk" in r.output
    r = _invoke(config, "--owner", "risk", "--tag", "churn")
    assert r.exit_code == 0 and "no features match" in r.output


def test_format_seconds() -> None:
    assert format_seconds(None) == "-"
    assert format_seconds(14 * 86400) == "14d"
    assert format_seconds(90 * 60) == "90m"
    assert format_seconds(5400.5) == "1.5h"
    assert format_seconds(3 * 86400 + 7250.5) == "3.1d"
    assert format_seconds(12.0) == "12s"
    assert format_seconds(-30.0) == "-30s"


def test_version_follows_schema_not_metadata(make_config: Callable[..., Config]) -> None:
    config = make_config(text=META_TOML)
    _load(config)
    before = list_features(config, view="customer_stats")[0]
    relabelled = make_config(text=META_TOML.replace("Spend over 7 days", "Seven-day spend"))
    same = list_features(relabelled, view="customer_stats")[0]
    assert same["version"] == before["version"]
    assert same["version_first_seen"] == before["version_first_seen"]
    changed = make_config(text=META_TOML.replace('ttl = "14d"', 'ttl = "7d"'))
    new = list_features(changed, view="customer_stats")[0]
    assert new["version"] != before["version"] and new["version_first_seen"] is None
