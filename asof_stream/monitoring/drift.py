"""Drift: does what we serve (or a newer training set) look like what we trained on?

``asof-stream drift --reference TRAINING_SET --current SOURCE`` compares, per feature,
a reference training set with a current sample:

- ``online``: the values in the online store now (one per entity);
- a training-set path (CSV, JSONL or Parquet);
- ``window:START..END``: every log row with ``START <= event_timestamp < END`` (either
  end may be left empty for no bound; times are RFC 3339 or epoch seconds).

Training-set columns are matched to features by ``view__feature`` or the bare feature
name. Null, empty and non-finite numeric values are counted as missing and left out of
the statistics. Numeric features (int64, float64) get PSI over the reference's deciles
and the two-sample KS test; strings and bools get PSI over categories (see
:mod:`asof_stream.drift_stats` for bins, smoothing and p-values). A feature is flagged
when PSI > 0.2 or the KS p-value < 0.05. The report is ``drift.json`` plus
``drift.html`` with an inline SVG chart of the two distributions per flagged feature.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..definitions import Definitions
from ..events import loads_values
from ..offline.log import open_log
from ..online import open_online
from ..redaction import redact_url
from ..timestamps import TimestampError, cell_to_micros, now_micros, to_iso
from .drift_stats import EPSILON, EXACT_MAX, categorical_psi, ks_2samp, numeric_psi, shares

PSI_THRESHOLD = 0.2
KS_P_THRESHOLD = 0.05
NUMERIC = ("int64", "float64")
TABLE_FORMATS = (".csv", ".jsonl", ".parquet")


class DriftInputError(ValueError):
    """Input drift cannot use: an unknown feature, a missing column, a bad file or value."""


# --- reading training sets -------------------------------------------------------------


@dataclass
class Table:
    """A training set read as columns: ``columns[name]`` holds one value per row."""

    origin: str
    names: list[str]
    columns: dict[str, list[Any]]
    from_text: bool  # CSV cells are text and need converting
    rows: int = 0


def read_table(path: str | os.PathLike[str]) -> Table:
    """Read a training set (CSV, JSONL or Parquet) into columns."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".ndjson":
        ext = ".jsonl"
    if ext not in TABLE_FORMATS:
        raise DriftInputError(f"{p}: unknown training-set extension {ext or '(none)'!r}; "
                              f"use one of {', '.join(TABLE_FORMATS)}")
    if not p.is_file():
        raise DriftInputError(f"{p}: no such training-set file")
    if ext == ".csv":
        return _read_csv(p)
    if ext == ".jsonl":
        return _read_jsonl(p)
    return _read_parquet(p)


def _read_csv(p: Path) -> Table:
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return Table(str(p), [], {}, True)
            cols: list[list[Any]] = [[] for _ in header]
            rows = 0
            for row in reader:
                rows += 1
                if len(row) != len(header):
                    raise DriftInputError(f"{p} line {reader.line_num}: {len(row)} cells, "
                                          f"the header has {len(header)}")
                for j, cell in enumerate(row):
                    cols[j].append(cell)
    except UnicodeDecodeError as exc:
        raise DriftInputError(f"{p}: not UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise DriftInputError(f"{p}: not valid CSV: {exc}") from None
    return Table(str(p), header, dict(zip(header, cols, strict=True)), True, rows)


def _read_jsonl(p: Path) -> Table:
    objects: list[dict[str, Any]] = []
    names: dict[str, None] = {}
    with p.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DriftInputError(f"{p} line {n}: not valid JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise DriftInputError(f"{p} line {n}: expected a JSON object")
            objects.append(obj)
            for k in obj:
                names.setdefault(k, None)
    columns = {k: [o.get(k) for o in objects] for k in names}
    return Table(str(p), list(names), columns, False, len(objects))


def _read_parquet(p: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DriftInputError("reading Parquet needs pyarrow: pip install 'asof-stream[parquet]'") \
            from None
    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises its own error types for bad files
        raise DriftInputError(f"{p}: not a readable Parquet file: {exc}") from None
    data = table.to_pydict()
    return Table(str(p), list(table.column_names), data, False, table.num_rows)


# --- which features, from which columns ------------------------------------------------


def all_feature_refs(defs: Definitions) -> list[str]:
    return [f"{v}:{f}" for v, view in defs.views.items() for f in view.feature_names]


def resolve_features(defs: Definitions, refs: Sequence[str] | None) -> list[tuple[str, str]] | None:
    """``--features`` as (view, feature) pairs; unknown names list the valid ones."""
    if not refs:
        return None
    try:
        return defs.resolve_refs(list(refs))
    except ValueError as exc:
        raise DriftInputError(f"{exc}; valid features: {', '.join(all_feature_refs(defs))}") \
            from None


def column_for(table: Table, view: str, feature: str) -> str | None:
    """The column of ``view:feature``: ``view__feature``, else the bare name."""
    for name in (f"{view}__{feature}", feature):
        if name in table.columns:
            return name
    return None


def features_in(defs: Definitions, table: Table) -> list[tuple[str, str]]:
    """The features a training set has columns for, in config order.

    A bare column name that several views share is ambiguous: use ``--features``.
    """
    out: list[tuple[str, str]] = []
    names = set(table.names)
    for vname, view in defs.views.items():
        for f in view.feature_names:
            if f"{vname}__{f}" in names:
                out.append((vname, f))
            elif f in names:
                owners = [v for v, vv in defs.views.items() if f in vv.feature_names
                          and f"{v}__{f}" not in names]
                if len(owners) > 1:
                    raise DriftInputError(
                        f"{table.origin}: column {f!r} could be any of "
                        + ", ".join(f"{v}:{f}" for v in owners)
                        + "; name the one you mean with --features")
                out.append((vname, f))
    return out


def check_columns(table: Table, pairs: Sequence[tuple[str, str]], what: str) -> None:
    """Every requested feature has a column in the table (when its columns are known)."""
    if not table.names:  # an empty JSONL file: no columns to check, no values either
        return
    missing = [f"{v}:{f}" for v, f in pairs if column_for(table, v, f) is None]
    if missing:
        raise DriftInputError(
            f"the {what} training set {table.origin} has no column for "
            + ", ".join(missing) + " (looked for 'view__feature' and 'feature'); its columns: "
            + ", ".join(table.names))


# --- values ----------------------------------------------------------------------------


@dataclass
class Sample:
    """The usable values of one feature on one side, and how many were missing."""

    values: list[Any] = field(default_factory=list)
    missing: int = 0


_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no"}


def _convert(dtype: str, v: Any, from_text: bool) -> Any:
    """One value as the statistics want it; None when missing; ValueError when wrong."""
    if v is None:
        return None
    if dtype in NUMERIC:
        if from_text:
            if not isinstance(v, str):
                raise ValueError(f"{v!r} is not a number")
            v = v.strip()
            if v == "":
                return None
            try:
                x = float(v)
            except ValueError:
                raise ValueError(f"{v!r} is not a number") from None
        else:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{v!r} is not a number")
            x = float(v)
        return x if math.isfinite(x) else None
    if dtype == "bool":
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            s = v.strip().lower()
            if s == "":
                return None
            if s in _TRUE:
                return "true"
            if s in _FALSE:
                return "false"
        raise ValueError(f"{v!r} is not a boolean")
    if isinstance(v, str):
        return None if (from_text and v == "") else v
    return json.dumps(v) if isinstance(v, dict | list) else str(v)


def _sample(dtype: str, values: Iterable[Any], from_text: bool, where: str) -> Sample:
    out = Sample()
    for i, v in enumerate(values, start=1):
        try:
            x = _convert(dtype, v, from_text)
        except ValueError as exc:
            raise DriftInputError(f"{where} row {i}: {exc} (feature type {dtype})") from None
        if x is None:
            out.missing += 1
        else:
            out.values.append(x)
    return out


def table_samples(defs: Definitions, table: Table,
                  pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Sample]:
    out = {}
    for v, f in pairs:
        col = column_for(table, v, f)
        dtype = defs.views[v].feature(f).dtype
        values = table.columns[col] if col is not None else []
        out[(v, f)] = _sample(dtype, values, table.from_text, f"{table.origin}, column {col!r},")
    return out


def online_samples(config: Config,
                   pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Sample]:
    """The current online value of each feature, one per stored entity."""
    by_view: dict[str, list[str]] = {}
    for v, f in pairs:
        by_view.setdefault(v, []).append(f)
    out = {pair: Sample() for pair in pairs}
    online = open_online(config.online_url)
    try:
        for v, feats in by_view.items():
            dtypes = {f: config.defs.views[v].feature(f).dtype for f in feats}
            for row in online.entries(v):
                values = loads_values(row.features)
                for f in feats:
                    _add(out[(v, f)], dtypes[f], values.get(f), f"online {v} {row.entity}")
    finally:
        online.close()
    return out


def _add(sample: Sample, dtype: str, v: Any, where: str) -> None:
    try:
        x = _convert(dtype, v, False)
    except ValueError as exc:
        raise DriftInputError(f"{where}: {exc}") from None
    if x is None:
        sample.missing += 1
    else:
        sample.values.append(x)


def parse_window(text: str) -> tuple[int | None, int | None]:
    """``START..END`` (after ``window:``) as microseconds; an empty end is no bound."""
    start_s, sep, end_s = text.partition("..")
    if not sep:
        raise DriftInputError(f"window {text!r} must be START..END, e.g. "
                              "window:2026-01-01T00:00:00Z..2026-01-08T00:00:00Z")
    try:
        start = cell_to_micros(start_s) if start_s.strip() else None
        end = cell_to_micros(end_s) if end_s.strip() else None
    except TimestampError as exc:
        raise DriftInputError(f"window {text!r}: {exc}") from None
    if start is not None and end is not None and end <= start:
        raise DriftInputError(f"window {text!r}: the end must be after the start")
    return start, end


def window_samples(config: Config, pairs: Sequence[tuple[str, str]], start: int | None,
                   end: int | None) -> dict[tuple[str, str], Sample]:
    """Every log row with ``start <= event_timestamp < end``, per feature."""
    out = {pair: Sample() for pair in pairs}
    if not config.offline_path.exists():
        return out
    by_view: dict[str, list[str]] = {}
    for v, f in pairs:
        by_view.setdefault(v, []).append(f)
    log = open_log(config.offline_path, readonly=True)
    try:
        for v, feats in by_view.items():
            dtypes = {f: config.defs.views[v].feature(f).dtype for f in feats}
            try:
                cur = log.conn.execute(
                    "SELECT seq, features FROM log WHERE view = ?"
                    " AND event_timestamp >= ? AND event_timestamp < ?",
                    (v, -(2**63) if start is None else start, 2**63 - 1 if end is None else end))
                for seq, text in cur:
                    values = loads_values(text)
                    for f in feats:
                        _add(out[(v, f)], dtypes[f], values.get(f), f"log seq {seq}")
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
    finally:
        log.close()
    return out


# --- the report ------------------------------------------------------------------------


def compare(view: str, feature: str, dtype: str, ref: Sample, cur: Sample) -> dict[str, Any]:
    """Statistics and flags of one feature."""
    numeric = dtype in NUMERIC
    out: dict[str, Any] = {
        "feature": f"{view}:{feature}", "view": view, "name": feature, "dtype": dtype,
        "kind": "numeric" if numeric else "categorical",
        "reference_count": len(ref.values), "current_count": len(cur.values),
        "reference_missing": ref.missing, "current_missing": cur.missing,
        "psi": None, "ks_statistic": None, "ks_pvalue": None, "ks_method": None,
        "bins": [], "flags": [], "drifted": False, "note": None,
    }
    if not ref.values or not cur.values:
        out["note"] = ("no reference values" if not ref.values else "no current values") \
            + "; nothing to compare"
        return out
    binned = numeric_psi(ref.values, cur.values) if numeric else categorical_psi(
        ref.values, cur.values)
    rs, cs = shares(binned.reference), shares(binned.current)
    out["psi"] = binned.psi
    out["bins"] = [{"bin": label, "reference": r, "current": c, "reference_share": a,
                    "current_share": b}
                   for label, r, c, a, b in zip(binned.labels, binned.reference, binned.current,
                                                rs, cs, strict=True)]
    flags = []
    if binned.psi > PSI_THRESHOLD:
        flags.append("psi")
    if numeric:
        ks = ks_2samp(ref.values, cur.values)
        out.update(ks_statistic=ks.statistic, ks_pvalue=ks.pvalue, ks_method=ks.method)
        if ks.pvalue < KS_P_THRESHOLD:
            flags.append("ks")
    out["flags"] = flags
    out["drifted"] = bool(flags)
    return out


def build_report(config: Config, reference: str | os.PathLike[str], current: str,
                 features: Sequence[str] | None = None, now: int | None = None) -> dict[str, Any]:
    """Read both sides and compare every feature; raises :class:`DriftInputError`."""
    defs = config.defs
    requested = resolve_features(defs, features)
    ref_table = read_table(reference)
    if requested is None:
        pairs = features_in(defs, ref_table)
        if not pairs and ref_table.names:
            raise DriftInputError(
                f"the reference training set {ref_table.origin} has no feature columns "
                f"(columns: {', '.join(ref_table.names)}); valid features: "
                + ", ".join(all_feature_refs(defs)))
    else:
        pairs = requested
        check_columns(ref_table, pairs, "reference")
    ref = table_samples(defs, ref_table, pairs)
    if current == "online":
        cur = online_samples(config, pairs)
        cur_desc: dict[str, Any] = {"kind": "online", "store": redact_url(config.online_url)}
    elif current.startswith("window:"):
        start, end = parse_window(current[len("window:"):])
        cur = window_samples(config, pairs, start, end)
        cur_desc = {"kind": "window", "start": to_iso(start), "end": to_iso(end)}
    else:
        if Path(current).suffix.lower() not in (*TABLE_FORMATS, ".ndjson"):
            raise DriftInputError(f"--current {current!r}: expected 'online', "
                                  "'window:START..END' or a training set (.csv, .jsonl, .parquet)")
        cur_table = read_table(current)
        check_columns(cur_table, pairs, "current")
        cur = table_samples(defs, cur_table, pairs)
        cur_desc = {"kind": "training_set", "path": str(current)}
    rows = [compare(v, f, defs.views[v].feature(f).dtype, ref[(v, f)], cur[(v, f)])
            for v, f in pairs]
    now = now_micros() if now is None else now
    return {
        "generated_at": to_iso(now),
        "reference": {"path": str(reference), "rows": ref_table.rows},
        "current": cur_desc,
        "method": {"psi_threshold": PSI_THRESHOLD, "ks_pvalue_threshold": KS_P_THRESHOLD,
                   "psi_bins": "reference deciles, ties merged, right-closed; categories",
                   "empty_bin_epsilon": EPSILON, "ks_exact_max_mn": EXACT_MAX},
        "features": rows,
        "flagged": [r["feature"] for r in rows if r["drifted"]],
    }


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_report_dir(config: Config) -> Path:
    """Where reports go without ``--out`` (and where the web page looks)."""
    return config.root / "reports" / "drift"


def write_report(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``drift.json`` and ``drift.html`` into ``out_dir`` (each atomically)."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    j, h = d / "drift.json", d / "drift.html"
    _atomic_write(j, json.dumps(report, indent=2, allow_nan=False) + "\n")
    _atomic_write(h, render_html(report))
    return j, h


def latest_report(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The report in ``out_dir``, or None when there is none (for the web page)."""
    p = Path(out_dir) / "drift.json"
    try:
        data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


# --- HTML and SVG ----------------------------------------------------------------------

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
