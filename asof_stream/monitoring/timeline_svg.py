"""An entity's events as inline SVG: one lane per view, one mark per log row.

Each row is a circle at its ``event_timestamp`` with a faint line on to its
``ingest_ts`` (a small tick there); label times are dashed vertical lines. Marks carry
classes: ``chosen`` (the point-in-time row at a label), ``naive`` (the last-value row)
and ``future`` (a naive row from a label's future); :data:`TIMELINE_CSS` colours them and
:func:`legend_svg` explains them. Marks and lines carry ``data-view``/``data-seq`` so the
web page's script can re-mark them. Every text is escaped; no script, no external asset.
"""

from __future__ import annotations

import html
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from ..timestamps import to_iso
from ..training.timeline import EventRow, ViewEvents

esc = html.escape
Mark = tuple[str, int]  # (view, seq)

TIMELINE_CSS = """
svg.timeline text { font: 11px system-ui, sans-serif; fill: #333; }
.tl-axis { stroke: #333; }
.tl-lane-line { stroke: #ccc; }
.tl-mark { fill: #9aa5b1; stroke: #555; stroke-width: 1; }
.tl-mark.naive { fill: #f28e2b; }
.tl-mark.future { fill: #d62728; }
.tl-mark.chosen { stroke: #2ca02c; stroke-width: 3; }
.tl-ingest { stroke: #9aa5b1; stroke-opacity: 0.55; stroke-width: 2; }
.tl-ingest-tick { stroke: #777; stroke-width: 1; }
.tl-label { stroke: #4e79a7; stroke-width: 1.5; stroke-dasharray: 5 3; }
tr.chosen td { background: #d7f5dd; }
tr.naive td:first-child { border-left: 4px solid #f28e2b; }
td.future, tr.future td { background: #fde2e1; }
.future-flag { color: #b00; font-weight: bold; }
"""


@dataclass(frozen=True, slots=True)
class Frame:
    """The drawing's geometry: time span ``lo..hi`` (microseconds) over ``left..left+plot_w``."""

    lo: int
    hi: int
    left: int
    plot_w: int
    width: int
    top: int
    lane_h: int
    lanes: int

    def x(self, us: int) -> float:
        return self.left + self.plot_w * (us - self.lo) / (self.hi - self.lo)

    @property
    def height(self) -> int:
        return self.top + self.lanes * self.lane_h + 30

    def to_json(self) -> dict[str, int]:
        return {"lo": self.lo, "hi": self.hi, "left": self.left, "plot_w": self.plot_w}


def frame_for(views: Sequence[ViewEvents], times: Sequence[int], width: int = 760,
              extra: Sequence[int] = ()) -> Frame:
    """A frame spanning every row's event and ingest time, the label times and ``extra``."""
    points = [*times, *extra]
    for v in views:
        for r in v.rows:
            points += [r.event_ts, r.ingest_ts]
    lo, hi = (min(points), max(points)) if points else (0, 1)
    pad = max((hi - lo) // 25, 1_000_000)
    left = 130
    return Frame(lo - pad, hi + pad, left, width - left - 16, width, 34, 46, max(len(views), 1))


def row_title(view: str, row: EventRow) -> str:
    """The hover text of a mark (plain text; escape it where it goes)."""
    values = ", ".join(f"{k}={v!r}" for k, v in row.values.items())
    return (f"{view} seq {row.seq}: event {to_iso(row.event_ts)}, ingested "
            f"{to_iso(row.ingest_ts)}; {values}")


def timeline_svg(views: Sequence[ViewEvents], times: Sequence[int], frame: Frame, *,
                 chosen: Collection[Mark] = (), naive: Collection[Mark] = (),
                 future: Collection[Mark] = (), label_names: Sequence[str] = (),
                 svg_id: str = "") -> str:
    """The timeline of one entity: lanes of marks and the label times (see the module doc)."""
    f = frame
    ident = f' id="{esc(svg_id)}"' if svg_id else ""
    bottom = f.top + f.lanes * f.lane_h
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline"{ident} width="{f.width}" '
             f'height="{f.height}" viewBox="0 0 {f.width} {f.height}" role="img" '
             f'aria-label="events of {esc(views[0].entity if views else "")} over time">',
             f'<line class="tl-axis" x1="{f.left}" y1="{bottom}" x2="{f.left + f.plot_w}" '
             f'y2="{bottom}"/>',
             f'<text x="{f.left}" y="{bottom + 16}">{esc(to_iso(f.lo) or "")}</text>',
             f'<text x="{f.left + f.plot_w}" y="{bottom + 16}" text-anchor="end">'
             f'{esc(to_iso(f.hi) or "")}</text>']
    for lane, v in enumerate(views):
        y = f.top + lane * f.lane_h + f.lane_h / 2
        more = f" (newest {len(v.rows)} of {v.total})" if v.truncated else ""
        parts.append(f'<text x="4" y="{y + 4:.1f}">{esc(v.view)}</text>'
                     f'<text x="4" y="{y + 16:.1f}" font-size="9">{len(v.rows)} '
                     f'row{"" if len(v.rows) == 1 else "s"}{esc(more)}'
                     f'</text><line class="tl-lane-line" x1="{f.left}" y1="{y:.1f}" '
                     f'x2="{f.left + f.plot_w}" y2="{y:.1f}"/>')
        for r in v.rows:
            x0, x1 = f.x(r.event_ts), f.x(r.ingest_ts)
            key = (v.view, r.seq)
            cls = " ".join(["tl-mark", *(c for c, s in (("chosen", chosen), ("naive", naive),
                                                          ("future", future)) if key in s)])
            data = f'data-view="{esc(v.view)}" data-seq="{r.seq}"'
            yi = y + 8  # just under the lane, so the lane's line does not hide it
            parts.append(f'<line class="tl-ingest" {data} x1="{x0:.1f}" y1="{yi:.1f}" '
                         f'x2="{x1:.1f}" y2="{yi:.1f}"/><line class="tl-ingest-tick" '
                         f'x1="{x1:.1f}" y1="{yi - 4:.1f}" x2="{x1:.1f}" y2="{yi + 4:.1f}"/>'
                         f'<circle class="{cls}" {data} cx="{x0:.1f}" cy="{y:.1f}" r="5">'
                         f'<title>{esc(row_title(v.view, r))}</title></circle>')
    for i, t in enumerate(times):
        x = f.x(t)
        name = label_names[i] if i < len(label_names) else f"t{i + 1}"
        parts.append(f'<line class="tl-label" data-label="{i}" x1="{x:.1f}" y1="{f.top - 6}" '
                     f'x2="{x:.1f}" y2="{bottom}"/><text class="tl-label-text" data-label="{i}" '
                     f'x="{x:.1f}" y="{f.top - 9}" text-anchor="middle">{esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def legend_svg() -> str:
    """What the marks mean, in the marks' own classes (two columns of three)."""
    marks = [("tl-mark", "a log row at its event time"),
             ("tl-mark chosen", "the point-in-time row at the label"),
             ("tl-mark naive", "the naive (last-value) row")]
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" class="timeline tl-legend" width="760" '
             'height="58" viewBox="0 0 760 58" role="img" aria-label="legend">']
    for i, (cls, text) in enumerate(marks):
        y = 12 + 17 * i
        parts.append(f'<circle class="{cls}" cx="16" cy="{y}" r="5"/>'
                     f'<text x="28" y="{y + 4}">{esc(text)}</text>')
    parts.append('<circle class="tl-mark naive future" cx="336" cy="12" r="5"/>'
                 '<text x="348" y="16">a naive value from the label\'s future</text>'
                 '<line class="tl-ingest" x1="322" y1="29" x2="350" y2="29"/>'
                 '<line class="tl-ingest-tick" x1="350" y1="24" x2="350" y2="34"/>'
                 '<text x="358" y="33">from event time to ingest time</text>'
                 '<line class="tl-label" x1="336" y1="40" x2="336" y2="54"/>'
                 '<text x="348" y="50">a label time</text></svg>')
    return "".join(parts)
