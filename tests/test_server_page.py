"""GET / over a real socket: registry, freshness, dead letters, drift; ?q=; escaping."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from asof_stream import FeatureStore
from asof_stream.config import Config
from asof_stream.monitoring.drift import default_report_dir
from asof_stream.monitoring.registry import list_features
from asof_stream.server.page import DEAD_LETTER_LIMIT

from .page_helpers import EVIL, SEEDED_STATUS, Tables, page_config, seed
from .server_helpers import running_server


def _get(config: Config, path: str = "/") -> httpx.Response:
    with running_server(config) as url:
        return httpx.get(url + path, timeout=10)


def _registry_names(page: Tables) -> list[str]:
    return [f"{cells[1]}:{cells[0]}" for attrs, cells in page.body_rows("registry-table")
            if "data-search" in attrs]


def test_page_shows_registry_freshness_dead_letters_and_drift(
        make_config: Callable[..., Config]) -> None:
    config = page_config(make_config)
    seed(config)
    r = _get(config)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = Tables(r.text)

    # The registry: one row per feature, each value as list_features gives it.
    expected = list_features(config)
    rows = [cells for attrs, cells in page.body_rows("registry-table") if "data-search" in attrs]
    assert len(rows) == len(expected) == 7
    for f, cells in zip(expected, rows, strict=True):
        name, view, dtype, desc, owner, tags, version, n, first, last, services = cells
        assert (name, view, dtype, owner, version) == (f["name"], f["view"], f["type"], f["owner"],
                                                       f["version"])
        assert desc == " ".join(f"{f['description']} {f['view_description']}".split())
        assert tags == " ".join(f["tags"])
        assert int(n) == f["rows"]
        assert first == (f["first_event_timestamp"] or "-")
        assert last == (f["last_event_timestamp"] or "-")
        assert services == (", ".join(f["services"]) or "-")
    spend = rows[0]
    assert spend[:2] == ["spend_7d", "customer_stats"] and spend[7] == "5"
    assert spend[10] == "churn"
    assert rows[-1][:2] == ["country", "merchant_info"] and rows[-1][10] == "-"
    assert re.search(r'<span id="shown" data-total="7">7 of 7 features</span>', r.text)

    # Freshness: every status, visibly marked.
    fresh = {attrs["data-view"]: cells[1] for attrs, cells in page.body_rows("freshness-table")}
    assert fresh == SEEDED_STATUS
    for status in ("OK", "NEAR", "BREACH", "NO_OBJECTIVE"):
        assert f'<span class="status status-{status}">{status}</span>' in r.text
    assert '<span class="status status-BREACH">1 BREACH</span>' in r.text

    # Dead letters: the count and the newest reasons first.
    assert '<strong id="dead-letter-count">2</strong> open dead letters' in r.text
    dead = [cells for _, cells in page.body_rows("dead-letters-table")]
    assert [int(c[0]) for c in dead] == [2, 1]
    assert "unknown field" in dead[0][5] and "<img src=x onerror=alert(1)>" in dead[0][5]
    assert dead[0][4] == "<img src=x onerror=alert(1)>"  # the offending field, escaped
    assert "yesterday" in dead[1][5] and dead[1][4] == "event_timestamp"

    # Drift: the latest report and its chart.
    drift = [cells for _, cells in page.body_rows("drift-table")]
    assert drift[0][0] == "customer_stats:spend_7d" and drift[0][7] == "psi, ks"
    assert "1 of 1 features flagged" in r.text
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in r.text
    assert 'aria-label="distribution of customer_stats:spend_7d"' in r.text


def test_empty_store_shows_empty_sections(make_config: Callable[..., Config]) -> None:
    config = page_config(make_config)
    r = _get(config)
    assert r.status_code == 200, r.text
    page = Tables(r.text)
    rows = [cells for attrs, cells in page.body_rows("registry-table") if "data-search" in attrs]
    assert len(rows) == 7
    assert all(c[7] == "0" and c[8] == "-" and c[9] == "-" for c in rows)
    fresh = {attrs["data-view"]: cells[1] for attrs, cells in page.body_rows("freshness-table")}
    assert fresh == {"customer_stats": "BREACH", "customer_clicks": "BREACH",
                     "merchant_risk": "BREACH", "merchant_info": "NO_DATA"}
    assert '<strong id="dead-letter-count">0</strong> open dead letters (0 in all' in r.text
    assert "dead-letters-table" not in r.text
    assert 'id="no-drift"' in r.text and "No drift report yet" in r.text
    assert "<code>asof-stream drift --reference TRAINING_SET --current online</code>" in r.text
    assert "drift-table" not in r.text


def test_no_features_and_an_unreadable_drift_report(make_config: Callable[..., Config]) -> None:
    config = make_config(text='[store]\noffline = "data/offline.sqlite"\n'
                              'online = "sqlite:///data/online.sqlite"\n')
    report = default_report_dir(config) / "drift.json"
    report.parent.mkdir(parents=True)
    report.write_text('{"features": 1}', encoding="utf-8")  # JSON, but not a report
    r = _get(config)
    assert r.status_code == 200, r.text
    assert "0 of 0 features" in r.text and "no features are defined" in r.text
    assert "no views are defined" in r.text
    assert "cannot be read" in r.text


def test_query_filters_on_the_server(make_config: Callable[..., Config]) -> None:
    config = page_config(make_config)
    seed(config, drift=False)
    cases = {
        "spend": ["customer_stats:spend_7d"],                           # name
        "fraud": ["merchant_risk:risk", "merchant_risk:flagged"],        # tag
        "GROWTH": ["customer_stats:spend_7d", "customer_stats:orders_7d",
                   "customer_stats:tier"],                               # owner, any case
        "merchant_info": ["merchant_info:country"],                      # view
        "churn web": ["customer_clicks:clicks_1h"],                      # every term
        "  ": [f["ref"] for f in list_features(config)],                 # blank: all
        "nothing-like-this": [],
    }
    with running_server(config) as url, httpx.Client(base_url=url, timeout=10) as client:
        for q, want in cases.items():
            r = client.get("/", params={"q": q})
            assert r.status_code == 200, r.text
            page = Tables(r.text)
            assert _registry_names(page) == want, q
            assert f"{len(want)} of 7 features" in r.text
            no_match = [a for a, _ in page.body_rows("registry-table") if a.get("id") == "no-match"]
            assert len(no_match) == 1 and ("hidden" in no_match[0]) == bool(want), q
            # The other sections are not filtered.
            assert len(page.body_rows("freshness-table")) == 4
        r = client.get("/", params={"q": "fraud"})
        assert 'value="fraud"' in r.text and '<a href="/">clear the filter</a>' in r.text


def test_every_value_is_escaped(make_config: Callable[..., Config]) -> None:
    config = page_config(make_config)
    seed(config, drift=False)
    evil_q = '"><script>alert(2)</script>'
    with running_server(config) as url, httpx.Client(base_url=url, timeout=10) as client:
        r = client.get("/")
        searched = client.get("/", params={"q": evil_q})
    text = r.text
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in text  # a description
    assert "&lt;img src=x onerror=alert(1)&gt;" in text                    # a dead letter
    assert EVIL not in text and "<img" not in text
    # The one script on the page is ours, and the CSP lets only it run.
    nonce = re.search(r"script-src 'nonce-([^']+)'", r.headers["content-security-policy"])
    assert nonce is not None
    assert re.findall(r"<script[^>]*>", text) == [f'<script nonce="{nonce.group(1)}">']
    # The search text is echoed escaped.
    assert searched.status_code == 200
    assert 'value="&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"' in searched.text
    assert "<script>alert(2)" not in searched.text


def test_dead_letter_list_is_bounded(make_config: Callable[..., Config]) -> None:
    config = page_config(make_config)
    with FeatureStore(config) as store:
        assert store.push([{"view": "nope", "i": i} for i in range(DEAD_LETTER_LIMIT + 5)]
                          ).rejected == DEAD_LETTER_LIMIT + 5
    r = _get(config)
    page = Tables(r.text)
    ids = [int(cells[0]) for _, cells in page.body_rows("dead-letters-table")]
    assert ids == list(range(DEAD_LETTER_LIMIT + 5, 5, -1))
    assert f'<strong id="dead-letter-count">{DEAD_LETTER_LIMIT + 5}</strong>' in r.text
