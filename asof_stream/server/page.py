"""The web page at ``GET /``: registry, freshness, dead letters and the latest drift report.

Plain server-rendered HTML, every value through :func:`html.escape`; no build step and
nothing fetched from elsewhere. :func:`collect` reads everything the page shows (it
runs on the server's commit thread, which owns the log's connection) and
:func:`render` turns that into the page. The registry's search box filters rows as you
type (a few lines of inline JS) and ``/?q=...`` filters on the server, so the page
works without JS too. A term matches a feature when it is a substring of its name,
view, owner or a tag (case-insensitive); several terms must all match.
"""

from __future__ import annotations

import html
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..ingest.dead_letter_lines import describe_position, line_numbers
from ..ingest.dead_letters import DeadLetter, list_dead_letters
from ..monitoring.drift import default_report_dir, latest_report
from ..monitoring.drift_html import TABLE_HEAD, charts_html, describe_current, table_rows_html
from ..monitoring.freshness import BREACH, NEAR, OK, ViewFreshness, view_freshness
from ..monitoring.registry import format_seconds, list_features
from ..offline.log import OfflineLog
from ..redaction import redact_url
from ..timestamps import now_micros, to_iso

#: How many of the latest open dead letters the page lists.
DEAD_LETTER_LIMIT = 10
#: Longest search text taken from ``?q=`` (characters).
MAX_QUERY = 200
esc = html.escape


@dataclass(frozen=True)
class PageData:
    """Everything the page shows, read at one instant."""

    config_path: Path
    online_url: str
    log_seq: int
    features: list[dict[str, Any]]
    freshness: list[ViewFreshness]
    dead_letters_open: int
    dead_letters_total: int
    recent_dead_letters: list[DeadLetter]
    drift_dir: Path
    drift: dict[str, Any] | None
    generated_at: int
    #: dead letter id -> its line in the source file (for file sources whose file has it)
    dead_letter_lines: dict[int, int] = field(default_factory=dict)


def collect(config: Config, log: OfflineLog, now: int | None = None) -> PageData:
    """Read the registry, freshness, dead letters and drift report (blocking: off the loop)."""
    now = now_micros() if now is None else now
    drift_dir = default_report_dir(config)
    # Newest first, as `asof-stream dead-letters` lists them.
    recent = list_dead_letters(log, limit=DEAD_LETTER_LIMIT, newest_first=True)
    return PageData(
        config_path=config.path,
        online_url=redact_url(config.online_url),
        log_seq=log.max_seq(),
        features=list_features(config),
        freshness=view_freshness(config.defs, log.view_stats(), now),
        dead_letters_open=log.dead_letter_count(open_only=True),
        dead_letters_total=log.dead_letter_count(),
        recent_dead_letters=recent,
        drift_dir=drift_dir,
        drift=latest_report(drift_dir),
        generated_at=now,
        dead_letter_lines=line_numbers(config, recent),
    )


# -- search -----------------------------------------------------------------------------


def search_text(feature: dict[str, Any]) -> str:
    """What the search box matches against: name, view, ref, owner and tags, lower case."""
    return " ".join([feature["ref"], feature["name"], feature["view"], feature["owner"],
                     *feature["tags"]]).lower()


def matches(text: str, query: str) -> bool:
    """True when every whitespace-separated term of ``query`` is a substring of ``text``."""
    return all(term in text for term in query.lower().split())


# -- rendering --------------------------------------------------------------------------


def new_nonce() -> str:
    """A fresh nonce for the page's one ``<style>`` and one ``<script>``."""
    return secrets.token_urlsafe(16)


def headers(nonce: str) -> dict[str, str]:
    """Response headers: a strict CSP (only the nonce'd inline style and script run)."""
    return {
        "Content-Security-Policy": (f"default-src 'none'; style-src 'nonce-{nonce}'; "
                                    f"script-src 'nonce-{nonce}'; form-action 'self'; "
                                    "base-uri 'none'; frame-ancestors 'none'"),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
h1 { margin-bottom: 0.2em; }
nav a { margin-right: 1em; }
.meta, .muted { color: #666; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.tag { display: inline-block; background: #eef; border-radius: 3px; padding: 0 4px; margin: 1px; }
.status { font-weight: bold; padding: 1px 6px; border-radius: 3px; }
.status-OK { background: #d7f5dd; color: #145c25; }
.status-NEAR { background: #fff0c2; color: #7a5200; }
.status-BREACH { background: #fdd; color: #9b1111; }
.status-NO_OBJECTIVE, .status-NO_DATA { background: #eee; color: #555; }
tr.drifted td { background: #fde2e1; }
form { margin: 0.5em 0; }
input[type=search] { width: 24em; padding: 3px; }
code { background: #f4f4f4; padding: 0 3px; }
"""

SCRIPT = """
(function () {
  var box = document.getElementById("q");
  var shown = document.getElementById("shown");
  var none = document.getElementById("no-match");
  var rows = Array.prototype.slice.call(
    document.querySelectorAll("#registry-table tbody tr[data-search]"));
  var total = shown.getAttribute("data-total");
  function apply() {
    var terms = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var n = 0;
    rows.forEach(function (row) {
      var text = row.getAttribute("data-search");
      var ok = terms.every(function (t) { return text.indexOf(t) !== -1; });
      row.hidden = !ok;
      if (ok) { n += 1; }
    });
    none.hidden = n > 0;
    shown.textContent = n + " of " + total + " features";
  }
  box.addEventListener("input", apply);
})();
"""


def _time(text: str | None) -> str:
    return esc(text) if text else '<span class="muted">-</span>'


def _registry(features: list[dict[str, Any]], query: str) -> str:
    rows = []
    for f in features:
        text = search_text(f)
        if not matches(text, query):
            continue
        desc = esc(f["description"])
        if f["view_description"]:
            desc += f'<br><span class="muted">{esc(f["view_description"])}</span>'
        tags = "".join(f'<span class="tag">{esc(t)}</span>' for t in f["tags"])
        services = ", ".join(esc(s) for s in f["services"]) or '<span class="muted">-</span>'
        seen = f"first seen {f['version_first_seen']}" if f["version_first_seen"] else "not seen yet"
        rows.append(
            f'<tr data-search="{esc(text)}"><td><strong>{esc(f["name"])}</strong></td>'
            f'<td>{esc(f["view"])}</td><td>{esc(f["type"])}</td><td>{desc}</td>'
            f'<td>{esc(f["owner"])}</td><td>{tags}</td>'
            f'<td><code title="{esc(seen)}">{esc(f["version"])}</code></td>'
            f'<td class="num">{int(f["rows"])}</td>'
            f'<td>{_time(f["first_event_timestamp"])}</td><td>{_time(f["last_event_timestamp"])}</td>'
            f"<td>{services}</td></tr>")
    empty = "no feature matches" if features else "no features are defined"
    count = f"{len(rows)} of {len(features)} features"
    clear = ' <a href="/">clear the filter</a>' if query.strip() else ""
    return f"""<section id="registry"><h2>Registry</h2>
<form method="get" action="/" role="search">
<label for="q">Search</label>
<input type="search" id="q" name="q" value="{esc(query)}" placeholder="name, tag, owner or view"
 autocomplete="off"> <button type="submit">Filter</button>
<span id="shown" data-total="{len(features)}">{count}</span>{clear}
</form>
<table id="registry-table"><thead><tr><th>feature</th><th>view</th><th>type</th>
<th>description</th><th>owner</th><th>tags</th><th>version</th><th>rows</th>
<th>first event</th><th>last event</th><th>services</th></tr></thead>
<tbody>
{"".join(rows)}<tr id="no-match"{"" if not rows else " hidden"}><td colspan="11">{empty}</td></tr>
</tbody></table></section>"""


def _freshness(report: list[ViewFreshness]) -> str:
    counts = {s: sum(v.status == s for v in report) for s in (BREACH, NEAR, OK)}
    summary = ", ".join(f'<span class="status status-{s}">{n} {s}</span>'
                        for s, n in counts.items() if n) or "no view has a freshness objective"
    rows = []
    for v in report:
        rows.append(
            f'<tr data-view="{esc(v.view)}" data-status="{esc(v.status)}"><td>{esc(v.view)}</td>'
            f'<td><span class="status status-{esc(v.status)}">{esc(v.status)}</span></td>'
            f'<td class="num">{v.rows}</td><td>{_time(v.latest_event_timestamp)}</td>'
            f'<td class="num">{esc(format_seconds(v.event_age_seconds))}</td>'
            f'<td class="num">{esc(format_seconds(v.ingest_age_seconds))}</td>'
            f'<td class="num">{esc(format_seconds(v.objective_seconds))}</td></tr>')
    body = "".join(rows) or '<tr><td colspan="7">no views are defined</td></tr>'
    return f"""<section id="freshness"><h2>Freshness</h2>
<p>{summary}. BREACH: the newest event is older than the view's objective (or there is
none); NEAR: older than 80% of it.</p>
<table id="freshness-table"><thead><tr><th>view</th><th>status</th><th>rows</th>
<th>latest event</th><th>event age</th><th>ingest age</th><th>objective</th></tr></thead>
<tbody>{body}</tbody></table></section>"""


def _dead_letters(data: PageData) -> str:
    n_open, total = data.dead_letters_open, data.dead_letters_total
    head = (f'<p><strong id="dead-letter-count">{n_open}</strong> open dead letter'
            f'{"" if n_open == 1 else "s"} ({total} in all, re-queued ones included).')
    if not data.recent_dead_letters:
        return f"""<section id="dead-letters"><h2>Dead letters</h2>{head}</p></section>"""
    rows = "".join(
        f'<tr><td class="num">{d.id}</td><td>{_time(to_iso(d.error_ts))}</td>'
        f'<td>{esc(d.source)}</td>'
        f'<td>{esc(describe_position(d, data.dead_letter_lines.get(d.id)))}</td>'
        f'<td class="field">{esc(d.field or "-")}</td>'
        f'<td class="reason">{esc(d.reason)}</td><td><code>{esc(d.preview())}</code></td></tr>'
        for d in data.recent_dead_letters)
    return f"""<section id="dead-letters"><h2>Dead letters</h2>{head}
The latest {len(data.recent_dead_letters)}, newest first; <code>asof-stream dead-letters</code>
lists them all and <code>--requeue</code> re-validates them once the definitions are fixed.</p>
<table id="dead-letters-table"><thead><tr><th>id</th><th>time</th><th>source</th>
<th>position</th><th>field</th><th>reason</th><th>raw</th></tr></thead>
<tbody>{rows}</tbody></table></section>"""


def _drift(data: PageData) -> str:
    report = data.drift
    where = esc(str(data.drift_dir / "drift.json"))
    if report is None:
        return f"""<section id="drift"><h2>Drift</h2>
<p id="no-drift">No drift report yet (none at {where}). Make one with
<code>asof-stream drift --reference TRAINING_SET --current online</code>
(or <code>--current</code> another training set or <code>window:START..END</code>).</p></section>"""
    try:
        flagged = len(report["flagged"])
        ref = report["reference"]
        body = (f"<p>Generated {esc(str(report['generated_at']))} ({where}). "
                f"Reference: {esc(str(ref['path']))} ({int(ref['rows'])} rows). "
                f"Current: {esc(describe_current(report['current']))}. "
                f"<strong>{flagged} of {len(report['features'])} features flagged</strong>.</p>"
                f'<table id="drift-table"><thead>{TABLE_HEAD}</thead><tbody>'
                f"{table_rows_html(report)}</tbody></table>"
                + (charts_html(report) if flagged else "<p>No feature is flagged.</p>"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        body = f"<p>The drift report at {where} cannot be read: {esc(repr(exc))}.</p>"
    return f'<section id="drift"><h2>Drift</h2>{body}</section>'


TIMELINE_FORM = """<section id="timeline"><h2>Timeline</h2>
<p>One entity's events and the row a point-in-time join picks at a label time (you can move
it); at most 200 rows per view are drawn.</p>
<form method="get" action="/timeline"><label for="tl-refs">views</label>
<input type="text" id="tl-refs" name="refs" placeholder="customer_stats or @service">
<label for="tl-entity">entity</label> <input type="text" id="tl-entity" name="entity"
 placeholder="c1"> <label for="tl-t">label time</label> <input type="text" id="tl-t" name="t"
 placeholder="2026-01-05T00:00:00Z (default: the newest event)">
<button type="submit">Show</button></form></section>"""


def render(data: PageData, query: str, nonce: str) -> str:
    """The whole page; ``query`` filters the registry rows on the server."""
    query = query[:MAX_QUERY]
    n = esc(nonce)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>asof-stream</title>
<style nonce="{n}">{STYLE}</style></head><body>
<h1>asof-stream</h1>
<p class="meta">{esc(str(data.config_path))} &middot; log seq {data.log_seq} &middot;
online {esc(data.online_url)} &middot; as of {esc(to_iso(data.generated_at) or "")}</p>
<nav><a href="#registry">registry</a><a href="#freshness">freshness</a>
<a href="#dead-letters">dead letters</a><a href="#drift">drift</a><a href="#timeline">timeline</a>
<a href="/health">/health</a><a href="/metrics">/metrics</a></nav>
{_registry(data.features, query)}
{_freshness(data.freshness)}
{_dead_letters(data)}
{_drift(data)}
{TIMELINE_FORM}
<script nonce="{n}">{SCRIPT}</script>
</body></html>
"""


def render_unavailable(detail: str) -> str:
    """A short page for when the stores cannot be read (served with status 503)."""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>asof-stream: unavailable</title></head><body><h1>asof-stream</h1>"
            f"<p>The stores cannot be read right now: {esc(detail)}</p></body></html>\n")
