"""A seeded project for the web-page tests, and a small parser for the page's tables."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser

from asof_stream import FeatureStore
from asof_stream.config import Config
from asof_stream.monitoring.drift import build_report, default_report_dir, write_report
from asof_stream.timestamps import now_micros, to_iso
from tests.toml_parts import MERCHANT, PRELUDE, described_customer_stats

EVIL = '<script>alert("owned")</script>'

PAGE_TOML = PRELUDE + MERCHANT + described_customer_stats(f"Spend over 7 days {EVIL}") + """
[views.customer_clicks]
entity = "customer"
freshness = "1h"
owner = "web"
tags = ["churn"]
features = { clicks_1h = "int64" }

[views.merchant_risk]
entity = "merchant"
freshness = "1d"
owner = "risk"
tags = ["fraud"]
features = { risk = "float64", flagged = "bool" }

[views.merchant_info]
entity = "merchant"
features = { country = "string" }

[services.churn]
features = ["customer_stats:spend_7d", "customer_stats:tier", "customer_clicks"]
"""

#: The freshness status each view has after :func:`seed`.
SEEDED_STATUS = {"customer_stats": "OK", "customer_clicks": "NEAR", "merchant_risk": "BREACH",
                 "merchant_info": "NO_OBJECTIVE"}
#: The rows :func:`seed` pushes that become dead letters, oldest first.
BAD_ROWS = [
    {"view": "customer_stats", "customer_id": "c9", "event_timestamp": "yesterday"},
    {"view": "customer_stats", "customer_id": "c9", "event_timestamp": "2026-01-01",
     "<img src=x onerror=alert(1)>": 1},
]


def page_config(make_config: Callable[..., Config]) -> Config:
    return make_config(text=PAGE_TOML)


def seed(config: Config, *, drift: bool = True) -> None:
    """Rows giving every freshness status, two dead letters and (``drift``) a drift report."""
    now = now_micros()
    minute = 60 * 10**6
    rows = [{"view": "customer_stats", "customer_id": f"c{i}",
             "event_timestamp": to_iso(now - minute - i * 10**6), "spend_7d": float(i % 3),
             "orders_7d": i, "tier": "gold"} for i in range(5)]
    rows += [{"view": "customer_clicks", "customer_id": "c1",
              "event_timestamp": to_iso(now - 55 * minute), "clicks_1h": 4},
             {"view": "merchant_risk", "merchant_id": 7, "event_timestamp": "2020-01-01",
              "risk": 0.25, "flagged": True},
             {"view": "merchant_info", "merchant_id": 7, "event_timestamp": "2020-01-01",
              "country": "FR"}]
    with FeatureStore(config) as store:
        r = store.push(rows)
        assert (r.stored, r.rejected) == (len(rows), 0)
        for bad in BAD_ROWS:  # one at a time: the second is the newer dead letter
            assert store.push([bad]).rejected == 1
    if drift:
        reference = config.root / "train.csv"
        reference.write_text("customer_id,event_timestamp,customer_stats__spend_7d\n" + "".join(
            f"c{i},2026-01-01,{10 + i}\n" for i in range(40)), encoding="utf-8")
        report = build_report(config, reference, "online", ["customer_stats:spend_7d"])
        assert report["flagged"] == ["customer_stats:spend_7d"]
        write_report(report, default_report_dir(config))


class Tables(HTMLParser):
    """Cell texts of every ``<table id=...>`` (text pieces joined by one space), rows with
    their attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[dict[str, str | None], list[str]]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
            self.tables[self._table].append((dict(attrs), self._row))
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join(" ".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def body_rows(self, table: str) -> list[tuple[dict[str, str | None], list[str]]]:
        """The rows with ``<td>`` cells (the header row left out)."""
        return [(a, cells) for a, cells in self.tables[table][1:]]
