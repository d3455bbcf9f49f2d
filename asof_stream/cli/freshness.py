"""``asof-stream freshness``: data age per view against its objective; exit 1 on a breach."""

from __future__ import annotations

import json
import sys

import click

from ..config import Config
from ..monitoring.freshness import NEAR_FRACTION, any_breach, check_freshness
from ..monitoring.registry import format_seconds
from ..timestamps import now_micros, to_iso
from .common import config_option, handle_errors, main


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@config_option
@handle_errors
def freshness(config: Config, as_json: bool) -> None:
    """Show now - latest event time and now - latest ingest time per view.

    A view with a ``freshness`` objective is BREACH when its event age is over the
    objective (or it has no data), NEAR when over 80% of it. Exit code 1 on any
    breach, else 0 (NEAR is shown but does not fail).
    """
    now = now_micros()
    report = check_freshness(config, now)
    breach = any_breach(report)
    if as_json:
        click.echo(json.dumps({"generated_at": to_iso(now), "near_fraction": NEAR_FRACTION,
                               "breach": breach,
                               "views": {v.view: v.to_dict() for v in report}}, indent=2))
    else:
        click.echo(f"{'view':<24} {'status':<12} {'event age':>10} {'ingest age':>11} "
                   f"{'objective':>10}  latest event")
        for v in report:
            click.echo(f"{v.view:<24} {v.status:<12} {format_seconds(v.event_age_seconds):>10} "
                       f"{format_seconds(v.ingest_age_seconds):>11} "
                       f"{format_seconds(v.objective_seconds):>10}  "
                       f"{v.latest_event_timestamp or '-'}")
    if breach:
        sys.exit(1)
