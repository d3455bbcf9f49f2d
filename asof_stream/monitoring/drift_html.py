"""The drift report as HTML: a table per feature and inline SVG charts (no script)."""

from __future__ import annotations

import html
from typing import Any

REF_COLOUR = "#4e79a7"
CUR_COLOUR = "#f28e2b"
MAX_BARS = 30


def svg_chart(row: dict[str, Any], width: int = 640, height: int = 240) -> str:
    """Side-by-side bars of the two samples' shares per bin, as inline SVG."""
    bins = row["bins"][:MAX_BARS]
    if not bins:
        return ""
    left, right, top, bottom = 44, 10, 24, 70
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(max(b["reference_share"], b["current_share"]) for b in bins) or 1.0
    slot = plot_w / len(bins)
    bar = max(1.0, slot * 0.38)
    esc = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="distribution of {esc(row["feature"])}">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
             'stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
             f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end">'
             f'{peak:.0%}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" font-size="10" text-anchor="end">0</text>',
             f'<rect x="{left + 4}" y="4" width="10" height="10" fill="{REF_COLOUR}"/>'
             f'<text x="{left + 18}" y="13" font-size="11">reference</text>',
             f'<rect x="{left + 90}" y="4" width="10" height="10" fill="{CUR_COLOUR}"/>'
             f'<text x="{left + 104}" y="13" font-size="11">current</text>']
    for i, b in enumerate(bins):
        x0 = left + i * slot + slot * 0.1
        for k, (share, colour) in enumerate(((b["reference_share"], REF_COLOUR),
                                             (b["current_share"], CUR_COLOUR))):
            h = plot_h * share / peak
            parts.append(f'<rect x="{x0 + k * bar:.1f}" y="{top + plot_h - h:.1f}" '
                         f'width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                         f'<title>{esc(str(b["bin"]))}: {share:.1%}</title></rect>')
        label = str(b["bin"])
        label = label if len(label) <= 18 else label[:17] + "…"
        cx = left + (i + 0.5) * slot
        parts.append(f'<text x="{cx:.1f}" y="{top + plot_h + 10}" font-size="9" '
                     f'text-anchor="end" transform="rotate(-40 {cx:.1f} {top + plot_h + 10})">'
                     f'{esc(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def describe_current(current: dict[str, Any]) -> str:
    """One line naming the current sample of a report (plain text, not escaped)."""
    return {"online": f"online store {current.get('store', '')}",
            "window": f"log window {current.get('start') or '-inf'} .. {current.get('end') or '+inf'}",
            "training_set": f"training set {current.get('path', '')}"}.get(
        current["kind"], current["kind"])


def table_rows_html(report: dict[str, Any]) -> str:
    """The ``<tr>`` rows of the per-feature table (8 columns), every value escaped."""
    esc = html.escape
    rows = []
    for r in report["features"]:
        cls = ' class="drifted"' if r["drifted"] else ""
        rows.append(
            f"<tr{cls}><td>{esc(r['feature'])}</td><td>{esc(r['dtype'])}</td>"
            f"<td>{r['reference_count']}</td><td>{r['current_count']}</td>"
            f"<td>{_num(r['psi'], '.4f')}</td><td>{_num(r['ks_statistic'], '.4f')}</td>"
            f"<td>{_num(r['ks_pvalue'], '.3g')}</td>"
            f"<td>{esc(', '.join(r['flags']) or (r['note'] or 'ok'))}</td></tr>")
    return "\n".join(rows) or '<tr><td colspan="8">no features to compare</td></tr>'


TABLE_HEAD = ("<tr><th>feature</th><th>type</th><th>reference n</th><th>current n</th>\n"
              "<th>PSI</th><th>KS D</th><th>KS p</th><th>flags</th></tr>")


def charts_html(report: dict[str, Any]) -> str:
    """One ``<section>`` per flagged feature: its statistics and SVG chart."""
    esc = html.escape
    charts = []
    for r in report["features"]:
        if r["drifted"]:
            charts.append(f"<section><h3>{esc(r['feature'])}</h3>"
                          f"<p>PSI {_num(r['psi'], '.4f')}"
                          + (f", KS D {_num(r['ks_statistic'], '.4f')}, p {_num(r['ks_pvalue'], '.3g')}"
                             if r["kind"] == "numeric" else "")
                          + f"</p>{svg_chart(r)}</section>")
    return "".join(charts)


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (no scripts, inline SVG charts)."""
    esc = html.escape
    cur_text = describe_current(report["current"])
    charts = charts_html(report)
    m = report["method"]
    body = table_rows_html(report)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>asof-stream drift report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
tr.drifted td {{ background: #fde2e1; }}
</style></head><body>
<h1>Drift report</h1>
<p>Generated {esc(report['generated_at'])}. Reference: {esc(report['reference']['path'])}
({report['reference']['rows']} rows). Current: {esc(cur_text)}.</p>
<p>Flagged when PSI &gt; {m['psi_threshold']} or KS p &lt; {m['ks_pvalue_threshold']};
PSI bins are the reference's deciles (ties merged) or its categories, empty bins count as
{m['empty_bin_epsilon']}.</p>
<table><thead>{TABLE_HEAD}</thead>
<tbody>
{body}
</tbody></table>
<h2>Flagged features ({len(report['flagged'])})</h2>
{charts or '<p>None.</p>'}
</body></html>
"""
