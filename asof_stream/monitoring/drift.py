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

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Config
from ..definitions import Definitions
from ..redaction import redact_url
from ..timestamps import now_micros, to_iso
from ..training.tables import TABLE_FORMATS, Table, read_table
from .drift_html import render_html
from .drift_samples import (  # noqa: F401
    NUMERIC,
    DriftInputError,
    Sample,
    column_for,
    online_samples,
    parse_window,
    table_samples,
    window_samples,
)
from .drift_stats import EPSILON, EXACT_MAX, categorical_psi, ks_2samp, numeric_psi, shares

PSI_THRESHOLD = 0.2
KS_P_THRESHOLD = 0.05


# --- which features, from which columns ------------------------------------------------


def all_feature_refs(defs: Definitions) -> list[str]:
    return [f"{v}:{f}" for v in _sources(defs) for f in defs.feature_names_of(v)]


def _sources(defs: Definitions) -> list[str]:
    """Views, then aggregations: what a training set's feature columns come from."""
    return [*defs.views, *defs.aggregations]


def resolve_features(defs: Definitions, refs: Sequence[str] | None) -> list[tuple[str, str]] | None:
    """``--features`` as (view, feature) pairs; unknown names list the valid ones."""
    if not refs:
        return None
    try:
        return defs.resolve_refs(list(refs))
    except ValueError as exc:
        raise DriftInputError(f"{exc}; valid features: {', '.join(all_feature_refs(defs))}") \
            from None


def features_in(defs: Definitions, table: Table) -> list[tuple[str, str]]:
    """The features a training set has columns for, in config order.

    A bare column name that several views share is ambiguous: use ``--features``.
    """
    out: list[tuple[str, str]] = []
    names = set(table.names)
    for vname in _sources(defs):
        for f in defs.feature_names_of(vname):
            if f"{vname}__{f}" in names:
                out.append((vname, f))
            elif f in names:
                owners = [v for v in _sources(defs) if f in defs.feature_names_of(v)
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
    if requested is None and (current == "online" or current.startswith("window:")):
        pairs = [(v, f) for v, f in pairs if defs.kind(v) == "view"]  # found, not asked for
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
    rows = [compare(v, f, defs.dtype_of(v, f), ref[(v, f)], cur[(v, f)])
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


