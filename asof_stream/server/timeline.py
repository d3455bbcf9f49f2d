"""``GET /timeline``: one entity's events and the row the join would choose at a label time.

``/timeline?refs=customer_stats&entity=c1&t=2026-01-05T00:00:00Z`` (``refs``: views,
``view:feature`` or ``@service``, comma-separated, all of one entity; ``entity``: its key,
a JSON array for an entity of several join keys; ``t``: the label time, default the
newest event; ``strict`` and ``known`` (as-known-at) as in the join). The page draws each
raw view's rows of the entity (:mod:`asof_stream.monitoring.timeline_svg`), at most
:data:`~asof_stream.training.timeline.MAX_ROWS` per view (the newest and the one chosen
at ``t``), and embeds them as JSON. A slider and a time field move the label time; the
inline script (under the page's nonce CSP) picks the row by the join's rule, greatest
``(event_timestamp, seq)`` with ``event_timestamp <= t``, and re-marks the chosen and the
naive rows. :func:`collect` runs on the commit thread, which owns the log's connection.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..definitions import split_refs
from ..monitoring.timeline_svg import TIMELINE_CSS, frame_for, legend_svg, timeline_svg
from ..offline.log import OfflineLog
from ..online.lookup import entity_keys_for
from ..timestamps import TimestampError, now_micros, parse_iso, to_iso
from ..training.timeline import ViewEvents, choose, qualifies, read_events
from .page import STYLE

esc = html.escape
#: The most views drawn at once; the longest text taken from a query parameter.
MAX_VIEWS = 8
MAX_PARAM = 400


@dataclass
class TimelineData:
    """What the timeline page shows: the form's values, and the rows when they name some."""

    refs: str = ""
    entity: str = ""
    t_text: str = ""
    strict: bool = False
    as_known_at: bool = False
    t: int | None = None
    views: list[ViewEvents] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def _entity_key(config: Config, view: str, text: str) -> str:
    keys = config.defs.entity_of(view).join_keys
    if len(keys) == 1:
        return entity_keys_for(config.defs, view, [{next(iter(keys)): text}], from_text=True)[0]
    try:
        values = json.loads(text)
    except ValueError:
        values = None
    if not isinstance(values, list) or len(values) != len(keys):
        raise ValueError(f"entity {text!r}: entity {config.defs.entity_of(view).name!r} has join "
                         f"keys {list(keys)}; give them as a JSON array, e.g. "
                         f"{json.dumps(['...'] * len(keys))}")
    return entity_keys_for(config.defs, view, [dict(zip(keys, values, strict=True))])[0]


def collect(config: Config, log: OfflineLog, params: dict[str, str]) -> TimelineData:
    """Read the entity's rows for the views named in ``params`` (blocking: off the loop)."""
    data = TimelineData(refs=params.get("refs", "")[:MAX_PARAM].strip(),
                        entity=params.get("entity", "")[:MAX_PARAM].strip(),
                        t_text=params.get("t", "")[:MAX_PARAM].strip(),
                        strict=params.get("strict", "") not in ("", "0"),
                        as_known_at=params.get("known", "") not in ("", "0"))
    if not data.refs and not data.entity:
        return data
    try:
        if not data.entity:
            raise ValueError("entity: give the entity's key, e.g. c1")
        pairs = config.defs.resolve_refs(split_refs(data.refs))
        names = list(dict.fromkeys(v for v, _ in pairs))
        views = [v for v in names if v in config.defs.views]
        data.notes += [f"{v} is computed (no log rows of its own): not drawn"
                       for v in names if v not in config.defs.views]
        if not views:
            raise ValueError(f"refs {data.refs!r}: no raw view to draw")
        if len(views) > MAX_VIEWS:
            data.notes.append(f"only the first {MAX_VIEWS} of {len(views)} views are drawn")
            views = views[:MAX_VIEWS]
        entities = {config.defs.entity_of(v).name for v in views}
        if len(entities) > 1:
            raise ValueError(f"refs {data.refs!r}: the views are of several entities "
                             f"({', '.join(sorted(entities))}); pick views of one entity")
        key = _entity_key(config, views[0], data.entity)
        t = parse_iso(data.t_text) if data.t_text else None
        upto = log.max_seq()
        data.views = [read_events(log, config.defs, v, key, keep_times=[] if t is None else [t],
                                  strict=data.strict, as_known_at=data.as_known_at,
                                  upto_seq=upto) for v in views]
        newest = [v.last.event_ts for v in data.views if v.last is not None]
        data.t = t if t is not None else max(newest, default=now_micros())
        data.t_text = to_iso(data.t) or ""
    except (ValueError, TypeError, KeyError, TimestampError) as exc:
        data.error = str(exc).strip("'\"")
        data.views = []
    return data


def _embed(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``<``, ``>`` or ``&``)."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _tables(data: TimelineData, t: int) -> str:
    out = []
    for i, v in enumerate(data.views):
        pick = choose(v.rows, t, strict=data.strict, as_known_at=data.as_known_at, ttl=v.ttl)
        rows = []
        for r in reversed(v.rows):  # newest first
            cls = " ".join(c for c, on in (("chosen", pick is not None and r.seq == pick.seq),
                                           ("naive", v.last is not None and r.seq == v.last.seq))
                           if on)
            vals = ", ".join(f"{k}={val!r}" for k, val in r.values.items())
            rows.append(f'<tr data-view="{esc(v.view)}" data-seq="{r.seq}" class="{cls}">'
                        f'<td class="num">{r.seq}</td><td>{esc(to_iso(r.event_ts) or "")}</td>'
                        f'<td>{esc(to_iso(r.ingest_ts) or "")}</td><td>{esc(vals)}</td></tr>')
        cut = (f" (the newest and the chosen {len(v.rows)} of {v.total}; a row older than "
               "these is not drawn)") if v.truncated else ""
        out.append(f'<h3>{esc(v.view)} <span class="muted">{v.total} rows{esc(cut)}</span></h3>'
                   f'<p class="tl-choice" id="tl-choice-{i}" data-view="{esc(v.view)}"></p>'
                   f'<table class="tl-rows" id="tl-rows-{i}"><thead><tr><th>seq</th>'
                   f"<th>event time</th><th>ingest time</th><th>values</th></tr></thead>"
                   f"<tbody>{''.join(rows) or '<tr><td colspan=4>no rows</td></tr>'}</tbody>"
                   "</table>")
    return "".join(out)


def _form(data: TimelineData) -> str:
    strict = " checked" if data.strict else ""
    known = " checked" if data.as_known_at else ""
    return f"""<form method="get" action="/timeline" id="tl-form">
<label>views <input type="text" name="refs" value="{esc(data.refs)}"
 placeholder="customer_stats or @service"></label>
<label>entity <input type="text" name="entity" value="{esc(data.entity)}" placeholder="c1"></label>
<label>label time <input type="text" name="t" value="{esc(data.t_text)}"
 placeholder="2026-01-05T00:00:00Z"></label>
<label><input type="checkbox" name="strict" value="1"{strict}> strict</label>
<label><input type="checkbox" name="known" value="1"{known}> as known at</label>
<button type="submit">Show</button></form>"""


def render(data: TimelineData, nonce: str) -> str:
    """The timeline page (a form alone until it names views and an entity)."""
    n = esc(nonce)
    body = ""
    if data.error:
        body = f'<p class="error" id="tl-error">{esc(data.error)}</p>'
    elif data.views and data.t is not None:
        t = data.t
        frame = frame_for(data.views, [t])
        pick = {(v.view, r.seq) for v in data.views
                if (r := choose(v.rows, t, strict=data.strict, as_known_at=data.as_known_at,
                                ttl=v.ttl))}
        naive = {(v.view, v.last.seq) for v in data.views if v.last}
        late = {(v.view, v.last.seq) for v in data.views if v.last and not qualifies(
            v.last, t, strict=data.strict, as_known_at=data.as_known_at)}
        svg = timeline_svg(data.views, [t], frame, chosen=pick, naive=naive, future=late,
                           label_names=["label"], svg_id="tl-svg")
        payload = {"frame": frame.to_json(), "t": t, "strict": data.strict,
                   "as_known_at": data.as_known_at,
                   "views": [{"view": v.view, "ttl": v.ttl, "truncated": v.truncated,
                              "last": v.last.seq if v.last else None,
                              "rows": [[r.seq, r.event_ts, r.ingest_ts] for r in v.rows]}
                             for v in data.views]}
        notes = "".join(f'<p class="muted">{esc(s)}.</p>' for s in data.notes)
        body = f"""{notes}{legend_svg()}
<div id="tl-controls"><label for="tl-range">label time</label>
<input type="range" id="tl-range" min="{frame.lo}" max="{frame.hi}" step="1" value="{t}">
<input type="text" id="tl-time" value="{esc(data.t_text)}" size="30" aria-label="label time">
<span id="tl-time-error" class="error" hidden>not a time: use 2026-01-05T00:00:00Z</span></div>
{svg}{_tables(data, t)}
<script type="application/json" id="tl-data">{_embed(payload)}</script>"""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>asof-stream: timeline</title>
<style nonce="{n}">{STYLE}{TIMELINE_CSS}
#tl-controls {{ margin: 0.5em 0; }} #tl-range {{ width: 40em; }} .error {{ color: #b00; }}
label {{ margin-right: 0.8em; }}</style></head><body>
<h1>asof-stream: timeline</h1><nav><a href="/">back to the page</a></nav>
{_form(data)}{body}
<script nonce="{n}">{SCRIPT}</script>
</body></html>
"""


# The same rule as training/timeline.py's choose(); rows are [seq, event_ts, ingest_ts].
SCRIPT = """
(function () {
  var el = document.getElementById("tl-data");
  if (!el) { return; }
  var D = JSON.parse(el.textContent);
  var range = document.getElementById("tl-range");
  var box = document.getElementById("tl-time");
  var bad = document.getElementById("tl-time-error");
  function qualifies(r, t) {
    if (r[1] > t || (D.strict && r[1] === t)) { return false; }
    return !D.as_known_at || r[2] <= t;
  }
  function choose(v, t) {
    var best = null;
    v.rows.forEach(function (r) {
      if (qualifies(r, t) && (best === null || r[1] > best[1] ||
                              (r[1] === best[1] && r[0] > best[0]))) { best = r; }
    });
    if (best !== null && v.ttl !== null && t - best[1] > v.ttl) { return null; }
    return best;
  }
  function pad(n, w) { n = String(n); while (n.length < w) { n = "0" + n; } return n; }
  function iso(us) {
    var ms = Math.floor(us / 1000), frac = us - ms * 1000;
    var d = new Date(ms), micro = d.getUTCMilliseconds() * 1000 + frac;
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1, 2) + "-" + pad(d.getUTCDate(), 2) +
      "T" + pad(d.getUTCHours(), 2) + ":" + pad(d.getUTCMinutes(), 2) + ":" +
      pad(d.getUTCSeconds(), 2) + (micro ? "." + pad(micro, 6) : "") + "Z";
  }
  var ISO = new RegExp(/^(\\d{4})-(\\d\\d)-(\\d\\d)/.source +
    /(?:[T ](\\d\\d):(\\d\\d)(?::(\\d\\d)(?:\\.(\\d{1,6})\\d*)?)?)?/.source +
    /(Z|[+-]\\d\\d:?\\d\\d)?$/.source);
  function parse(text) {
    var m = ISO.exec(text.trim());
    if (!m) { return null; }
    var ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0));
    var us = ms * 1000 + (m[7] ? +(m[7] + "000000").slice(0, 6) : 0);
    if (m[8] && m[8] !== "Z") {
      var sign = m[8][0] === "-" ? -1 : 1, hm = m[8].slice(1).replace(":", "");
      us -= sign * (+hm.slice(0, 2) * 60 + +hm.slice(2)) * 60e6;
    }
    return isNaN(us) ? null : us;
  }
  function x(us) {
    var f = D.frame;
    return f.left + f.plot_w * (us - f.lo) / (f.hi - f.lo);
  }
  function apply(t) {
    var cx = Math.max(D.frame.left, Math.min(D.frame.left + D.frame.plot_w, x(t))).toFixed(1);
    document.querySelectorAll('#tl-svg [data-label="0"]').forEach(function (n) {
      if (n.tagName === "line") { n.setAttribute("x1", cx); n.setAttribute("x2", cx); }
      else { n.setAttribute("x", cx); }
    });
    D.views.forEach(function (v, i) {
      var pick = choose(v, t), sel = '[data-view="' + CSS.escape(v.view) + '"]';
      var last = v.rows.filter(function (r) { return r[0] === v.last; })[0];
      var late = last !== undefined && !qualifies(last, t);
      document.querySelectorAll(sel + "[data-seq]").forEach(function (n) {
        var seq = +n.getAttribute("data-seq");
        n.classList.toggle("chosen", pick !== null && seq === pick[0]);
        n.classList.toggle("naive", seq === v.last);
        n.classList.toggle("future", seq === v.last && late);
      });
      var out = document.getElementById("tl-choice-" + i);
      out.textContent = "at " + iso(t) + ": " + (pick === null ? "no row qualifies" :
        "seq " + pick[0] + " (event " + iso(pick[1]) + ")") + "; naive (last) row: " +
        (last ? "seq " + last[0] + (late ? ", from the future" : "") : "none") +
        (v.truncated && (pick === null || pick === v.rows[0]) ? "; an older row may be undrawn" : "");
      out.setAttribute("data-chosen", pick === null ? "" : String(pick[0]));
    });
  }
  range.addEventListener("input", function () {
    var t = +range.value;
    box.value = iso(t); bad.hidden = true; apply(t);
  });
  box.addEventListener("input", function () {
    var t = parse(box.value);
    bad.hidden = t !== null;
    if (t !== null) { range.value = String(t); apply(t); }
  });
  apply(D.t);
})();
"""
