"""asof-stream freshness: ages per view, BREACH/NEAR against the objective, exit codes, gauges."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from asof_stream import metrics
from asof_stream.cli import main
from asof_stream.config import Config
from asof_stream.ingest.sources.base import Record
from asof_stream.monitoring.freshness import (
    BREACH,
    NEAR,
    NO_DATA,
    NO_OBJECTIVE,
    OK,
    check_freshness,
    judge,
    update_metrics,
)
from asof_stream.stores import open_stores
from asof_stream.timestamps import now_micros, to_iso
from tests.conftest import BASIC_TOML

HOUR = 3600 * 1_000_000
OBJECTIVES = """
[views.orders]
entity = "customer"
freshness = "1h"
features = { n = "int64" }
"""


def _with_objective(make_config: Callable[..., Config], orders: str = "1h",
                    customer_stats: str = "2h") -> Config:
    """BASIC_TOML plus a view ``orders``; the objectives of orders and customer_stats."""
    text = OBJECTIVES.replace('"1h"', f'"{orders}"') + BASIC_TOML.replace(
        'ttl = "14d"', f'ttl = "14d"\nfreshness = "{customer_stats}"')
    return make_config(text=text)


def _push(config: Config, view: str, event_ts: int, available_at: int, **features: Any) -> None:
    key: dict[str, Any] = {"merchant_id": 1} if view == "merchant_risk" else {"customer_id": "c1"}
    body = {"view": view, **key, "event_timestamp": to_iso(event_ts), **features}
    with open_stores(config) as s:
        s.committer().commit("t", [Record(json.dumps(body).encode(), "p")], available_at=available_at)


def test_judge() -> None:
    assert judge(None, None) == NO_DATA
    assert judge(5, None) == NO_OBJECTIVE
    assert judge(None, 100) == BREACH  # no data at all misses any objective
    assert judge(101, 100) == BREACH
    assert judge(100, 100) == NEAR  # at the objective: not over it yet
    assert judge(81, 100) == NEAR
    assert judge(80, 100) == OK  # exactly 80% is still OK
    assert judge(-5, 100) == OK  # an event from the future (clock skew) is fresh


def test_ages_and_statuses_at_a_given_now(make_config: Callable[..., Config]) -> None:
    config = _with_objective(make_config)
    now = 1_700_000_000 * 1_000_000  # in the past: not beyond [ingest] max_future
    _push(config, "customer_stats", now - 3 * HOUR, available_at=now - HOUR // 2, spend_7d=1.0)
    _push(config, "orders", now - 50 * 60 * 1_000_000, available_at=now - 60 * 1_000_000, n=1)
    report = {v.view: v for v in check_freshness(config, now)}
    cs = report["customer_stats"]
    assert cs.status == BREACH and cs.event_age_seconds == 3 * 3600
    assert cs.ingest_age_seconds == 1800 and cs.objective_seconds == 7200 and cs.rows == 1
    orders = report["orders"]
    assert orders.status == NEAR and orders.event_age_seconds == 3000
    assert orders.ingest_age_seconds == 60
    mr = report["merchant_risk"]
    assert mr.status == NO_DATA and mr.event_age_seconds is None and mr.rows == 0
    assert {v.view: v.status for v in check_freshness(config, now - 2 * HOUR)} == {
        "orders": OK, "customer_stats": OK, "merchant_risk": NO_DATA}


def _invoke(config: Config, *args: str) -> Any:
    return CliRunner().invoke(main, ["freshness", *args, "--config", str(config.path)])


def test_cli_exit_codes(make_config: Callable[..., Config]) -> None:
    config = _with_objective(make_config)
    now = now_micros()
    minute = 60 * 1_000_000
    # orders (1h) has no data yet: a breach.
    r = _invoke(config, "--json")
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["breach"] is True and out["views"]["orders"]["status"] == BREACH
    _push(config, "orders", now - 10 * minute, available_at=now, n=1)
    _push(config, "customer_stats", now - 100 * minute, available_at=now, spend_7d=1.0)
    r = _invoke(config, "--json")
    assert r.exit_code == 0, r.output  # customer_stats is NEAR (100 min of 2h): shown, exit 0
    out = json.loads(r.stdout)
    assert out["breach"] is False
    assert out["views"]["orders"]["status"] == OK
    assert out["views"]["customer_stats"]["status"] == NEAR
    assert out["views"]["merchant_risk"]["status"] == NO_DATA  # no objective: never fails
    r = _invoke(config)
    assert r.exit_code == 0 and "NEAR" in r.output
    # Tighter objectives on the same data: orders (10 min old) against 5 min breaches.
    r = _invoke(_with_objective(make_config, orders="5m", customer_stats="1d"))
    assert r.exit_code == 1 and "BREACH" in r.output
    assert "orders                   BREACH" in r.output
    # The newest event decides: a fresh customer_stats row makes it OK again.
    _push(config, "customer_stats", now - minute, available_at=now, spend_7d=2.0)
    r = _invoke(_with_objective(make_config, orders="1d", customer_stats="10m"), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["views"]["customer_stats"]["status"] == OK


def test_cli_bad_config(tmp_path: Any) -> None:
    (tmp_path / "asof.toml").write_text('[views.x]\nentity = "nope"\nfeatures = { a = "int64" }\n')
    r = CliRunner().invoke(main, ["freshness", "--config", str(tmp_path / "asof.toml")])
    assert r.exit_code == 1 and "unknown entity 'nope'" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[entities.c]\njoin_keys = { id = "string" }\n'
                   '[views.v]\nentity = "c"\nfreshness = "soon"\nfeatures = { a = "int64" }\n')
    r = CliRunner().invoke(main, ["freshness", "--config", str(bad)])
    assert r.exit_code == 1 and "views.v.freshness" in r.output


@pytest.fixture
def clean_gauges() -> Any:
    yield
    for g in (metrics.FRESHNESS, metrics.INGEST_FRESHNESS):
        for view in ("customer_stats", "merchant_risk", "orders"):
            try:
                g.remove(view)
            except KeyError:
                pass


def _sample(name: str, view: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"view": view})


def test_metrics_gauges(make_config: Callable[..., Config], clean_gauges: Any) -> None:
    config = _with_objective(make_config)
    now = 1_700_000_000 * 1_000_000  # in the past: not beyond [ingest] max_future
    _push(config, "customer_stats", now - 3 * HOUR, available_at=now - HOUR, spend_7d=1.0)
    with open_stores(config) as s:
        update_metrics(config.defs, s.log.view_stats(), now)
    assert _sample("asof_view_freshness_seconds", "customer_stats") == 3 * 3600
    assert _sample("asof_view_ingest_age_seconds", "customer_stats") == 3600
    assert _sample("asof_view_freshness_seconds", "merchant_risk") is None  # no data, no sample
    metrics.FRESHNESS.labels("orders").set(5)  # a stale sample of a view that is now empty
    update_metrics(config.defs, {}, now)
    assert _sample("asof_view_freshness_seconds", "orders") is None
    assert _sample("asof_view_freshness_seconds", "customer_stats") is None
