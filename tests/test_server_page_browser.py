"""GET / in a real headless Chromium: typing in the search box hides the other rows;
freshness and dead letters are on show; no script error or CSP violation.

Needs /usr/bin/chromium (Debian package ``chromium``; ``.ci/run`` installs it): without
it this test fails, it does not skip.
"""

from __future__ import annotations

from collections.abc import Callable

from asof_stream.config import Config

from .browser import Page, headless_chromium
from .page_helpers import SEEDED_STATUS, page_config, seed
from .server_helpers import running_server

VISIBLE_ROWS = """Array.from(document.querySelectorAll('#registry-table tbody tr[data-search]'))
  .filter(r => r.offsetParent !== null)
  .map(r => r.cells[1].textContent + ':' + r.cells[0].textContent)"""


def _type(page: Page, text: str) -> None:
    """Replace the search box's text by typing ``text`` (real input events)."""
    page.evaluate("(() => { const q = document.getElementById('q'); q.focus(); q.select(); })()")
    if text:
        page.send("Input.insertText", text=text)
    else:
        page.send("Input.dispatchKeyEvent", type="keyDown", key="Backspace", code="Backspace",
                  windowsVirtualKeyCode=8)
        page.send("Input.dispatchKeyEvent", type="keyUp", key="Backspace", code="Backspace",
                  windowsVirtualKeyCode=8)


def test_search_box_filters_rows_in_chromium(make_config: Callable[..., Config]) -> None:
    config = page_config(make_config)
    seed(config)
    with running_server(config) as url, headless_chromium() as page:
        page.navigate(url + "/")
        everything = page.evaluate(VISIBLE_ROWS)
        assert len(everything) == 7

        _type(page, "fraud")
        assert page.evaluate(VISIBLE_ROWS) == ["merchant_risk:risk", "merchant_risk:flagged"]
        assert page.evaluate("document.getElementById('shown').textContent") == "2 of 7 features"
        assert page.evaluate("document.getElementById('no-match').offsetParent === null")

        _type(page, "growth tier")
        assert page.evaluate(VISIBLE_ROWS) == ["customer_stats:tier"]
        _type(page, "no-such-feature")
        assert page.evaluate(VISIBLE_ROWS) == []
        assert page.evaluate("document.getElementById('no-match').offsetParent !== null")
        _type(page, "")
        assert page.evaluate(VISIBLE_ROWS) == everything

        # Freshness: each view's status, shown in its own colour.
        shown = page.evaluate("""Object.fromEntries(Array.from(
            document.querySelectorAll('#freshness-table tbody tr')).map(r => [
              r.dataset.view, [r.querySelector('.status').innerText,
                               getComputedStyle(r.querySelector('.status')).backgroundColor]]))""")
        assert {v: s for v, (s, _) in shown.items()} == SEEDED_STATUS
        colours = {s: c for s, c in shown.values()}
        assert len({colours["OK"], colours["NEAR"], colours["BREACH"]}) == 3
        assert colours["BREACH"] == "rgb(255, 221, 221)"

        # Dead letters: the count and the newest reason, as text (the markup stays inert).
        assert page.evaluate("document.getElementById('dead-letter-count').innerText") == "2"
        reason = page.evaluate("document.querySelector('#dead-letters-table td.reason').innerText")
        assert "<img src=x onerror=alert(1)>" in reason
        assert page.evaluate("document.querySelectorAll('img').length") == 0
        assert page.evaluate("document.querySelectorAll('#drift svg').length") == 1
        assert page.problems() == []

        # Without typing: /?q= filters on the server.
        page.navigate(url + "/?q=churn")
        assert page.evaluate(VISIBLE_ROWS) == ["customer_stats:spend_7d", "customer_stats:orders_7d",
                                               "customer_stats:tier", "customer_clicks:clicks_1h"]
        assert page.evaluate("document.getElementById('q').value") == "churn"
        assert page.problems() == []
