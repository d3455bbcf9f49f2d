"""The leakage report as HTML: per entity, a picture of the join.

For a few entities (those with leaking label rows first), :func:`leakage_pictures` reads
their rows of every raw view the features come from (capped, see
:data:`~asof_stream.training.timeline.MAX_ROWS`) and, at each of their label times
(a few per entity), the point-in-time row (:func:`~asof_stream.training.timeline.choose`,
the join's rule) and the naive last-value row. :func:`render_leakage_html` draws each
entity's timeline (:mod:`.timeline_svg`) with a table of both values per feature, values
from the label's future in red. One self-contained page: inline SVG, no script, every
value escaped. Aggregations and transforms are not drawn (they have no rows of their own).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..definitions import Definitions
from ..offline.log import OfflineLog
from ..timestamps import now_micros, to_iso
from ..training.labels import Labels
from ..training.leakage import LeakageReport, from_future
from ..training.timeline import MAX_ROWS, EventRow, ViewEvents, choose, read_events
from ..training.training_set import feature_pairs
from .timeline_svg import TIMELINE_CSS, frame_for, legend_svg, timeline_svg

esc = html.escape


@dataclass
class Cell:
    """One feature at one label: the point-in-time and the naive row, and whether the
    naive one is from the label's future."""

    name: str
    view: str
    feature: str
    pit: EventRow | None
    naive: EventRow | None
    future: bool


@dataclass
class LabelPoint:
    row: str  # e.g. "labels.csv row 12"
    t: int
    cells: list[Cell] = field(default_factory=list)


@dataclass
class EntityPicture:
    entity: dict[str, Any]
    views: list[ViewEvents]
    labels: list[LabelPoint]

    @property
    def leaking(self) -> bool:
        return any(c.future for p in self.labels for c in p.cells)


def leakage_pictures(log: OfflineLog, defs: Definitions, labels: Labels, refs: Sequence[str],
                     report: LeakageReport, *, strict: bool = False, as_known_at: bool = False,
                     entities: int = 3, per_entity: int = 6,
                     limit: int = MAX_ROWS) -> list[EntityPicture]:
    """The entities to draw: those of the report's examples first, then the first others."""
    try:
        pairs, names = feature_pairs(defs, labels, refs, full_feature_names=False)
    except ValueError:
        pairs, names = feature_pairs(defs, labels, refs, full_feature_names=True)
    drawn = [(n, v, f) for n, (v, f) in zip(names, pairs, strict=True) if v in defs.views]
    views = list(dict.fromkeys(v for _, v, _ in drawn))
    if not views or not len(labels):
        return []
    keys = {v: labels.entity_keys(v) for v in views}

    def who(i: int) -> tuple[str, ...]:
        return tuple(str(keys[v][i]) for v in views)

    first = [ex.index for ex in report.examples if ex.index >= 0]
    order = list(dict.fromkeys([*first, *range(len(labels))]))
    chosen: dict[tuple[str, ...], list[int]] = {}
    for i in order:
        if len(chosen) >= entities:
            break
        if all(keys[v][i] is not None for v in views):
            chosen.setdefault(who(i), [])
    for i in order:  # the example rows of an entity first, then its other rows
        rows = chosen.get(who(i)) if all(keys[v][i] is not None for v in views) else None
        if rows is not None and len(rows) < per_entity:
            rows.append(i)
    pictures = []
    for ident, rows in chosen.items():
        rows.sort(key=lambda i: (labels.times[i], i))
        times = [labels.times[i] for i in rows]
        events = {v: read_events(log, defs, v, key, limit=limit, keep_times=times,
                                 strict=strict, as_known_at=as_known_at)
                  for v, key in zip(views, ident, strict=True)}
        entity: dict[str, Any] = {}
        for v in views:
            for k in defs.entity_of(v).join_keys:
                entity[k] = labels.rows[rows[0]][labels.columns.index(k)]
        points = []
        for i in rows:
            t = labels.times[i]
            point = LabelPoint(labels.where(i, labels.timestamp_column).rsplit(", column", 1)[0], t)
            for name, v, f in drawn:
                ev = events[v]
                pit = choose(ev.rows, t, strict=strict, as_known_at=as_known_at, ttl=ev.ttl)
                naive = ev.last
                fut = naive is not None and from_future(naive.event_ts, naive.ingest_ts, t,
                                                        strict=strict, as_known_at=as_known_at)
                point.cells.append(Cell(name, v, f, pit, naive, fut))
            points.append(point)
        pictures.append(EntityPicture(entity, list(events.values()), points))
    return pictures


def _value(row: EventRow | None, feature: str) -> str:
    if row is None:
        return '<span class="muted">no row</span>'
    return (f"{esc(repr(row.values.get(feature)))} @ {esc(to_iso(row.event_ts) or '')} "
            f'<span class="muted">(seq {row.seq})</span>')


def picture_html(p: EntityPicture, index: int) -> str:
    """One entity's section: its timeline and the table of values at its label times."""
    chosen = {(c.view, c.pit.seq) for pt in p.labels for c in pt.cells if c.pit}
    naive = {(c.view, c.naive.seq) for pt in p.labels for c in pt.cells if c.naive}
    future = {(c.view, c.naive.seq) for pt in p.labels for c in pt.cells if c.naive and c.future}
    times = [pt.t for pt in p.labels]
    names = [f"L{i + 1}" for i in range(len(times))]
    svg = timeline_svg(p.views, times, frame_for(p.views, times), chosen=chosen, naive=naive,
                       future=future, label_names=names, svg_id=f"timeline-{index}")
    rows = []
    for name, pt in zip(names, p.labels, strict=True):
        for j, c in enumerate(pt.cells):
            head = (f'<td rowspan="{len(pt.cells)}">{esc(name)}: {esc(pt.row)}<br>'
                    f"{esc(to_iso(pt.t) or '')}</td>") if j == 0 else ""
            flag = ' <span class="future-flag">from the future</span>' if c.future else ""
            cls = ' class="future"' if c.future else ""
            rows.append(f'<tr data-label="{esc(name)}" data-feature="{esc(c.name)}">{head}'
                        f"<td>{esc(c.name)}</td><td>{_value(c.pit, c.feature)}</td>"
                        f"<td{cls}>{_value(c.naive, c.feature)}{flag}</td></tr>")
    who = ", ".join(f"{k}={v}" for k, v in p.entity.items())
    cut = [v for v in p.views if v.truncated]
    note = ("<p class=\"muted\">Drawn: " + "; ".join(
        f"{esc(v.view)} {len(v.rows)} of {v.total} rows (the chosen, the last and the newest)"
        for v in cut) + ".</p>") if cut else ""
    leak = " (leaks)" if p.leaking else ""
    return (f'<section class="entity" id="entity-{index}"><h2>{esc(who)}{leak}</h2>{svg}{note}'
            f'<table id="values-{index}"><thead><tr><th>label</th><th>feature</th>'
            f"<th>point-in-time value</th><th>naive (last) value</th></tr></thead><tbody>"
            f"{''.join(rows)}</tbody></table></section>")


def render_leakage_html(report: LeakageReport, pictures: Sequence[EntityPicture],
                        generated_at: int | None = None) -> str:
    """The whole report page: the counts, the per-feature table and each entity's picture."""
    generated = to_iso(now_micros() if generated_at is None else generated_at) or ""
    mode = ", ".join(m for m, on in (("strict", report.strict),
                                     ("as-known-at", report.as_known_at)) if on) or "default mode"
    feats = "".join(f"<tr><td>{esc(f.name)}</td><td>{esc(f.ref)}</td>"
                    f'<td class="num">{f.future_cells}</td><td class="num">{f.differing_cells}</td>'
                    "</tr>" for f in report.features)
    sections = "".join(picture_html(p, i) for i, p in enumerate(pictures))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>asof-stream leakage report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
td.num {{ text-align: right; }}
.muted {{ color: #666; }}
{TIMELINE_CSS}
</style></head><body>
<h1>Leakage of a naive last-value join</h1>
<p>Generated {esc(generated)}, {esc(mode)}. {report.rows} label rows, of which
<strong id="leaking-rows">{report.leaking_rows}</strong> a naive join fills from the future;
{report.future_cells} of {report.cells} feature cells are from the future and
{report.differing_cells} differ from the point-in-time value.</p>
<table id="features"><thead><tr><th>feature</th><th>reference</th><th>future cells</th>
<th>differing cells</th></tr></thead><tbody>{feats}</tbody></table>
<p>Each picture below is one entity: a lane per view, a mark per log row at its event time,
a faint line on to its ingest time, a dashed line per label time (L1, L2, ...). At each label
the point-in-time row is ringed in green; the naive row is orange, red when it is from the
label's future.</p>
{legend_svg()}
{sections or '<p>No entity to draw.</p>'}
</body></html>
"""
