"""The Python API (FeatureStore) over the SQLite online store."""

from __future__ import annotations

from typing import Any

import pytest

from asof_stream import Entity, FeatureStore, FeatureView, Field
from asof_stream.config import Config
from asof_stream.timestamps import now_micros, to_iso


def test_push_then_read_with_statuses(config: Config) -> None:
    now = now_micros()
    with FeatureStore(config) as store:
        r = store.push([
            {"view": "customer_stats", "customer_id": "c1", "event_timestamp": to_iso(now - 10**6),
             "spend_7d": 12.5, "tier": "gold"},
            {"view": "customer_stats", "customer_id": "c2", "event_timestamp": "2020-01-01",
             "spend_7d": 1.0},
            {"view": "customer_stats", "customer_id": "c3", "event_timestamp": "never"},
        ])
        assert (r.stored, r.rejected) == (2, 1)
        assert "bad event_timestamp" in r.rejects[0][1]
        out = store.get_online_features(["@churn"], [{"customer_id": "c1"}, {"customer_id": "c2"},
                                                     {"customer_id": "zz"}])
        assert out["customer_id"] == ["c1", "c2", "zz"]
        assert out["spend_7d"] == [12.5, None, None]
        assert out["tier"] == ["gold", None, None]
        statuses = out.statuses
        assert statuses["spend_7d"] == ["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
        assert out.event_timestamps["spend_7d"][0] == now - 10**6


def test_full_feature_names_and_collisions(make_config: Any) -> None:
    cfg = make_config("""
[views.other_stats]
entity = "customer"
features = { tier = "string" }
""")
    with FeatureStore(cfg) as store:
        with pytest.raises(ValueError, match="full_feature_names"):
            store.get_online_features(["customer_stats:tier", "other_stats:tier"],
                                      [{"customer_id": "c"}])
        out = store.get_online_features(["customer_stats:tier", "other_stats:tier"],
                                        [{"customer_id": "c"}], full_feature_names=True)
        assert "customer_stats__tier" in out and "other_stats__tier" in out


def test_bad_entity_rows(config: Config) -> None:
    with FeatureStore(config) as store:
        with pytest.raises(ValueError, match="missing join key 'merchant_id'"):
            store.get_online_features(["merchant_risk:risk"], [{"customer_id": "c"}])
        with pytest.raises(ValueError, match="int64"):
            store.get_online_features(["merchant_risk:risk"], [{"merchant_id": "7"}])
        with pytest.raises(ValueError, match="known views"):
            store.get_online_features(["nope:x"], [{"merchant_id": 7}])


def test_definitions_from_python_match_toml(config: Config) -> None:
    entity = Entity(name="customer", join_keys=["customer_id"])
    view = FeatureView(name="customer_stats", entity="customer", ttl="14d",
                       features=[Field(name="spend_7d", dtype="float64"),
                                 Field(name="orders_7d", dtype="int64"),
                                 Field(name="tier", dtype="string")])
    assert entity.join_keys == config.defs.entities["customer"].join_keys
    assert view == config.defs.views["customer_stats"]


def test_feast_shaped_calls(tmp_path: Any, config: Config) -> None:
    """repo_path, OnlineResponse.to_dict/to_df, to_df on training sets, push of a
    DataFrame and of an Arrow table, feature services as objects."""
    import pandas as pd
    import pyarrow as pa

    now = now_micros()
    store = FeatureStore(repo_path=config.path.parent)
    with store:
        frame = pd.DataFrame({"customer_id": ["c1", "c2"],
                              "event_timestamp": pd.to_datetime([now - 10**6, now - 2 * 10**6],
                                                                unit="us"),
                              "spend_7d": [1.5, None], "orders_7d": [3, 4], "tier": ["a", "b"]})
        r = store.push(frame, view="customer_stats")
        assert (r.stored, r.rejected) == (2, 0), r.rejects
        table = pa.table({"customer_id": ["c3"], "event_timestamp": [to_iso(now - 10**6)],
                          "spend_7d": [2.0]})
        assert store.push(table, view="customer_stats").stored == 1
        with pytest.raises(TypeError, match="pyarrow Table"):
            store.push({"customer_id": "c1"})
        service = store.get_feature_service("churn")
        with pytest.raises(ValueError, match="known services: churn"):
            store.get_feature_service("nope")
        out = store.get_online_features([service], [{"customer_id": "c1"}, {"customer_id": "c2"},
                                                    {"customer_id": "c3"}])
        assert out.to_dict() == {"customer_id": ["c1", "c2", "c3"], "spend_7d": [1.5, None, 2.0],
                                 "tier": ["a", "b", None]}
        assert out.to_dict(include_event_timestamps=True)["spend_7d__ts"][0] == now - 10**6
        assert list(out.to_df().columns) == ["customer_id", "spend_7d", "tier"]
        assert out.statuses["spend_7d"] == ["PRESENT", "PRESENT", "PRESENT"]
        labels = pd.DataFrame({"customer_id": ["c1"],
                               "event_timestamp": pd.to_datetime([now], unit="us")})
        df = store.get_historical_features(labels, features=[service]).to_df()
        assert df["spend_7d"].tolist() == [1.5]
    with pytest.raises(ValueError, match="not both"):
        FeatureStore(config.path, repo_path=config.path.parent)


def test_readme_python_example_runs(tmp_path: Any, monkeypatch: Any) -> None:
    """The README's Python API block, run as written in a fresh `asof-stream init` project."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = re.search(r"### Python API.*?```python\n(.*?)```", readme, re.S)
    assert block is not None
    FeatureStore.init(tmp_path / "proj")
    monkeypatch.chdir(tmp_path / "proj")
    scope: dict[str, Any] = {}
    exec(compile(block.group(1), "README.md", "exec"), scope)
    online = scope["online"]
    assert online["spend_7d"] == [12.5] and online.statuses["spend_7d"] == ["PRESENT"]
    assert len(scope["training"]) > 0
