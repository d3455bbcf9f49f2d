"""Shared test fixtures. Service fixtures live in their own plugin modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from asof_stream.config import Config, parse_config
from tests.toml_parts import MERCHANT, PRELUDE

pytest_plugins = ["tests.fixtures_kafka", "tests.fixtures_redis"]

BASIC_TOML = PRELUDE + MERCHANT + """
[views.customer_stats]
entity = "customer"
ttl = "14d"
features = { spend_7d = "float64", orders_7d = "int64", tier = "string" }

[views.merchant_risk]
entity = "merchant"
features = { risk = "float64", flagged = "bool" }

[services.churn]
features = ["customer_stats:spend_7d", "customer_stats:tier"]
"""


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """Write an asof.toml (BASIC_TOML plus extra text) into tmp_path and load it."""

    def make(extra: str = "", text: str | None = None) -> Config:
        body = (BASIC_TOML if text is None else text) + extra
        path = tmp_path / "asof.toml"
        path.write_text(body, encoding="utf-8")
        return parse_config(body, path)

    return make


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()
