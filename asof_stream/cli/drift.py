"""``asof-stream drift``: compare a reference training set with what is served now."""

from __future__ import annotations

import json
import sys

import click

from ..config import Config
from ..monitoring.drift import build_report, default_report_dir, write_report
from .common import config_option, handle_errors, main
from .progress import Timer, step_progress
from .render import count


@main.command()
@click.option("--reference", required=True, type=click.Path(dir_okay=False),
              help="The training set the model was trained on (.csv, .jsonl, .parquet).")
@click.option("--current", required=True,
              help="'online', a training-set path, or 'window:START..END' (log rows with "
                   "START <= event_timestamp < END; either end may be empty).")
@click.option("--features", "features", default=None,
              help="Feature references (view:feature, view, @service), comma-separated; "
                   "default: every feature the reference has a column for.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder for drift.json and drift.html [default: reports/drift beside the config].")
@click.option("--json", "as_json", is_flag=True, help="Also print the report as JSON.")
@click.option("--fail-on-drift", is_flag=True, help="Exit 1 when any feature is flagged.")
@config_option
@handle_errors
def drift(config: Config, reference: str, current: str, features: str | None,
          out_dir: str | None, as_json: bool, fail_on_drift: bool) -> None:
    """Per-feature PSI and KS between a reference training set and current data.

    Flags PSI > 0.2 and KS p < 0.05 and writes drift.json and drift.html (an SVG chart
    per flagged feature). Exit code 0 whatever the drift (with --fail-on-drift: 1 when a
    feature is flagged); input errors exit 1 with one line.
    """
    refs = [r for r in features.split(",") if r.strip()] if features else None
    timer = Timer()
    with step_progress(f"drift: {reference} against {current}"):
        report = build_report(config, reference, current, refs)
        target = default_report_dir(config) if out_dir is None else out_dir
        json_path, html_path = write_report(report, target)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        rows = report["features"]
        if not rows:
            click.echo("no data to compare: empty report")
        else:
            click.echo(f"{'feature':<36} {'n ref':>7} {'n cur':>7} {'PSI':>8} {'KS D':>7} "
                       f"{'KS p':>9}  flags")
        for r in rows:
            psi = "-" if r["psi"] is None else f"{r['psi']:.4f}"
            d = "-" if r["ks_statistic"] is None else f"{r['ks_statistic']:.4f}"
            p = "-" if r["ks_pvalue"] is None else f"{r['ks_pvalue']:.3g}"
            flags = ",".join(r["flags"]).upper() or (r["note"] or "ok")
            click.echo(f"{r['feature']:<36} {r['reference_count']:>7} {r['current_count']:>7} "
                       f"{psi:>8} {d:>7} {p:>9}  {flags}")
    # On stderr: stdout is the table (or the JSON).
    click.echo(f"report: {json_path} {html_path}", err=True)
    timer.summary(f"drift: {len(report['flagged'])} of {count(len(report['features']), 'feature')}"
                  " flagged", err=True)
    if fail_on_drift and report["flagged"]:
        sys.exit(1)
