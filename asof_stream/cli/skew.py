"""``asof-stream skew``: audit the online store against the log; exit 1 on any difference."""

from __future__ import annotations

import sys

import click

from ..config import Config
from ..monitoring.sharded_skew import sharded_audit
from ..monitoring.skew import SkewReport, audit, dumps
from ..monitoring.skew_agg import audit_aggregations
from ..offline.log import open_log
from ..offline.shards import existing_shards, is_sharded, shard_dir
from ..online import open_online
from ..timestamps import now_micros
from .common import CliError, config_option, handle_errors, main
from .progress import Timer, step_progress
from .render import count

SHOWN = 50


@main.command()
@click.option("--view", default=None, help="Audit only this view (or aggregation).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@config_option
@handle_errors
def skew(config: Config, view: str | None, as_json: bool) -> None:
    """Compare every online row with the log's latest row per key as known now.

    Lists keys missing online, keys missing in the log, and rows whose seq or values
    differ; and, per aggregation, entities whose aggregated features read online now
    differ from the values computed now from the log. Exit code 1 when there is any
    difference, 0 when the stores agree.
    """
    views = list(config.defs.views)
    aggs = list(config.defs.aggregations)
    if view is not None:
        if view not in config.defs.views and view not in config.defs.aggregations:
            raise CliError(f"unknown view {view!r}; known views and aggregations:"
                           f" {', '.join(views + aggs) or 'none'}")
        views, aggs = ([view], []) if view in config.defs.views else ([], [view])
    timer = Timer()
    if is_sharded(config):  # each shard's log against its entities' online rows
        shards = existing_shards(config)
        if not shards:
            raise CliError(f"no shard of the offline log exists yet under {shard_dir(config)}")
        with step_progress("skew", len(shards)) as advance:
            report = sharded_audit(config, views, aggs, now_micros(), clock=now_micros,
                                   progress=advance)
    else:
        report = _audit_one_log(config, views, aggs)
    if as_json:
        click.echo(dumps(report))
    else:
        for name, n in report.checked.items():
            mine = sum(1 for d in report.differences if d.view == name)
            click.echo(f"{name:<24} {count(n, 'key')} checked, {count(mine, 'difference')}")
        for d in report.differences[:SHOWN]:
            click.echo(f"  {d.kind:<17} {d.view} {d.entity}: {d.detail}")
        if len(report.differences) > SHOWN:
            click.echo(f"  ... and {len(report.differences) - SHOWN} more (use --json)")
    timer.summary(f"skew: {count(sum(report.checked.values()), 'key')} checked in"
                  f" {count(len(views), 'view')}, {count(len(report.differences), 'difference')}",
                  err=as_json)
    if report.differences:
        sys.exit(1)


def _audit_one_log(config: Config, views: list[str], aggs: list[str]) -> SkewReport:
    """The audit of the one log, view by view (a terminal shows which one)."""
    if not config.offline_path.exists():
        raise CliError(f"offline log {config.offline_path} does not exist yet")
    log = open_log(config.offline_path, readonly=True)
    try:
        online = open_online(config.online_url)  # not healed: audit what is there
        try:
            # Differences are re-read once, so a batch landing mid-audit is not reported.
            # View by view (as audit() itself goes), so a terminal shows which one.
            now = now_micros()
            report = SkewReport(now, {}, [])
            with step_progress("skew", len(views)) as advance:
                for name in views:
                    part = audit(log, online, [name], now, clock=now_micros)
                    report.checked.update(part.checked)
                    report.differences.extend(part.differences)
                    advance(name)
            checked, found = audit_aggregations(log, online, config.defs, aggs, report.now,
                                                clock=now_micros)
            report.checked.update(checked)
            report.differences.extend(found)
        finally:
            online.close()
    finally:
        log.close()
    return report
