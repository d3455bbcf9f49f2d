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
        statuses = out["__statuses__"][0]
        assert statuses["spend_7d"] == ["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
        assert out["__event_timestamps__"][0]["spend_7d"][0] == now - 10**6


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
