"""GET / in a real headless Chromium: typing in the search box hides the other rows;
freshness and dead letters are on show; on /timeline, moving the label time moves the
chosen row; no script error or CSP violation.

Needs /usr/bin/chromium (Debian package ``chromium``; ``.ci/run`` installs it): without
it this test fails, it does not skip.
"""

from __future__ import annotations

from collections.abc import Callable

from asof_stream.config import Config
from asof_stream.timestamps import to_iso

from .browser import Page, headless_chromium
from .page_helpers import SEEDED_STATUS, page_config, seed
from .server_helpers import running_server
from .timeline_helpers import seed_timeline

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


CHOSEN = """[document.querySelector('#tl-rows-0 tr.chosen')?.dataset.seq ?? null,
  Array.from(document.querySelectorAll('#tl-svg circle.chosen')).map(c => c.dataset.seq),
  Array.from(document.querySelectorAll('#tl-svg circle.future')).map(c => c.dataset.seq),
  document.getElementById('tl-choice-0').dataset.chosen]"""


def _slide(page: Page, t: int) -> None:
    """Move the label-time slider to ``t`` as a drag does (value, then an input event)."""
    page.evaluate(f"""(() => {{ const r = document.getElementById('tl-range');
      r.value = '{t}'; r.dispatchEvent(new Event('input', {{bubbles: true}})); }})()""")


def _type_time(page: Page, text: str) -> None:
    page.evaluate("(() => { const b = document.getElementById('tl-time'); b.focus(); b.select(); })()")
    page.send("Input.insertText", text=text)


def test_timeline_slider_moves_the_chosen_row_in_chromium(
        make_config: Callable[..., Config]) -> None:
    config = page_config(make_config)
    times = seed_timeline(config)
    t1, t2, t3 = times["t1"], times["t2"], times["t3"]
    with running_server(config) as url, headless_chromium() as page:
        # From the main page's form to the timeline.
        page.navigate(url + "/")
        page.evaluate("""(() => { document.getElementById('tl-refs').value = 'customer_stats';
          document.getElementById('tl-entity').value = 'c1'; })()""")
        page.events = [e for e in page.events if e["method"] != "Page.loadEventFired"]
        page.evaluate("document.querySelector('#timeline form').submit()")
        page.wait_event("Page.loadEventFired")
        assert page.evaluate("location.pathname") == "/timeline"
        assert page.evaluate(CHOSEN) == ["4", ["4"], [], "4"]  # default: the newest event

        _slide(page, t2 + 10**6)  # the tie at t2: the greater seq wins
        assert page.evaluate(CHOSEN) == ["3", ["3"], ["4"], "3"]
        assert page.evaluate("document.getElementById('tl-time').value") == to_iso(t2 + 10**6)
        x = page.evaluate("+document.querySelector('#tl-svg line.tl-label').getAttribute('x1')")
        _slide(page, t1)
        assert page.evaluate(CHOSEN) == ["1", ["1"], ["4"], "1"]
        assert page.evaluate(
            "+document.querySelector('#tl-svg line.tl-label').getAttribute('x1')") < x
        _type_time(page, to_iso(t1 - 10**6) or "")
        assert page.evaluate(CHOSEN) == [None, [], ["4"], ""]
        assert "no row qualifies" in page.evaluate("document.getElementById('tl-choice-0').innerText")
        _type_time(page, "not a time")
        assert page.evaluate("document.getElementById('tl-time-error').hidden") is False
        _type_time(page, to_iso(t3) or "")
        assert page.evaluate(CHOSEN) == ["4", ["4"], [], "4"]
        # The naive row is coloured from the future, the chosen one ringed (CSS under the CSP).
        _slide(page, t2)
        colours = page.evaluate("""[getComputedStyle(document.querySelector(
            '#tl-svg circle.future')).fill, getComputedStyle(document.querySelector(
            '#tl-svg circle.chosen')).stroke]""")
        assert colours == ["rgb(214, 39, 40)", "rgb(44, 160, 44)"]
        assert page.evaluate("document.body.innerText").count("<b>gold</b>") >= 1

        # Strict: at exactly t2 the rows at t2 are not usable.
        page.navigate(url + f"/timeline?refs=customer_stats&entity=c1&strict=1&t={to_iso(t2)}")
        assert page.evaluate(CHOSEN) == ["1", ["1"], ["4"], "1"]
        _slide(page, t2 + 1)
        assert page.evaluate(CHOSEN) == ["3", ["3"], ["4"], "3"]
        assert page.evaluate("document.querySelectorAll('b').length") == 0

        # As known at: every row was ingested just now, so none is usable at t3 ...
        page.navigate(url + f"/timeline?refs=customer_stats&entity=c1&known=1&t={to_iso(t3)}")
        assert page.evaluate(CHOSEN) == [None, [], ["4"], ""]
        # ... until the label time passes their ingest times (the slider's right end).
        page.evaluate("""(() => { const r = document.getElementById('tl-range');
          r.value = r.max; r.dispatchEvent(new Event('input', {bubbles: true})); })()""")
        assert page.evaluate(CHOSEN) == ["4", ["4"], [], "4"]
        assert page.problems() == []
