"""GET /timeline over HTTP: the chosen row is the join's, the page is escaped and under CSP,
bad input is named; the main page links to it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx

from asof_stream.config import Config
from asof_stream.offline.log import open_log
from asof_stream.timestamps import to_iso
from asof_stream.training.asof import asof_join
from asof_stream.training.join import JoinMode

from .page_helpers import page_config
from .server_helpers import running_server
from .timeline_helpers import seed_timeline

CHOSEN_ROW = re.compile(r'<tr data-view="customer_stats" data-seq="(\d+)" class="chosen[ "]')


def test_timeline_page_chooses_the_joins_row(make_config: Callable[..., Config]) -> None:
    config = page_config(make_config)
    times = seed_timeline(config)
    probes = [times["t1"] - 1, times["t1"], times["t2"], times["t2"] + 5, times["t3"] + 5]
    with open_log(config.offline_path, readonly=True) as log:
        want = {strict: asof_join(log, config.defs, {"customer_stats": ["c1"] * len(probes)},
                                  probes, JoinMode(strict=strict))["customer_stats"].seqs
                for strict in (False, True)}
    assert want == {False: [None, 1, 3, 3, 4], True: [None, None, 1, 3, 4]}
    with running_server(config) as url:
        for strict, seqs in want.items():
            for t, seq in zip(probes, seqs, strict=True):
                r = httpx.get(url + "/timeline", params={
                    "refs": "customer_stats", "entity": "c1", "t": to_iso(t),
                    "strict": "1" if strict else ""})
                assert r.status_code == 200
                assert CHOSEN_ROW.findall(r.text) == ([] if seq is None else [str(seq)])


def test_timeline_page_is_escaped_embedded_and_bounded(make_config: Callable[..., Config]) -> None:
    config = page_config(make_config)
    seed_timeline(config)
    with running_server(config) as url:
        r = httpx.get(url + "/timeline", params={"refs": "@churn", "entity": "c1"})
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        assert "script-src 'nonce-" in csp and "unsafe-inline" not in csp
        assert "<b>gold</b>" not in r.text and "&lt;b&gt;gold&lt;/b&gt;" in r.text
        data = json.loads(r.text.split('<script type="application/json" id="tl-data">')[1]
                          .split("</script>")[0])
        views = {v["view"]: v for v in data["views"]}
        assert set(views) == {"customer_stats", "customer_clicks"}
        assert [row[0] for row in views["customer_stats"]["rows"]] == [1, 2, 3, 4]
        assert views["customer_stats"]["last"] == 4 and views["customer_clicks"]["rows"] == []
        # Default label time: the newest event, where the naive row is the chosen one.
        assert CHOSEN_ROW.findall(r.text) == ["4"]
        evil = '<script>alert(1)</script>'
        for params, status, words in [
                ({"refs": "nope", "entity": evil}, 400, "unknown view"),
                ({"refs": "customer_stats", "entity": "c1", "t": evil}, 400, "timestamp"),
                ({"refs": "customer_stats,merchant_risk", "entity": "c1"}, 400, "several entities"),
                ({"refs": "customer_stats"}, 400, "entity")]:
            r = httpx.get(url + "/timeline", params=params)
            assert r.status_code == status and words in r.text, (params, r.text)
            assert evil not in r.text
        r = httpx.get(url + "/timeline")
        assert r.status_code == 200 and 'id="tl-form"' in r.text and 'id="tl-data"' not in r.text
        page = httpx.get(url + "/").text
        assert '<form method="get" action="/timeline">' in page
