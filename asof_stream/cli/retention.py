"""``asof-stream retention``: delete old history from the offline log, explicitly."""

from __future__ import annotations

import click

from ..config import Config
from ..offline.retention import apply_retention_config
from ..timestamps import TimestampError, cell_to_micros, now_micros, parse_duration
from .common import CliError, config_option, handle_errors, main
from .progress import Timer, step_progress
from .render import count


@main.command()
@click.option("--before", default=None, help="Delete rows with event_timestamp before this time.")
@click.option("--older-than", default=None, help="Or: before now minus this duration (e.g. 365d).")
@click.option("--view", "views", multiple=True, help="Only this view (repeatable; default: all).")
@click.option("--drop-latest", is_flag=True,
              help="Also delete each entity's newest row (the online store then loses it on the "
                   "next materialize).")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@config_option
@handle_errors
def retention(config: Config, before: str | None, older_than: str | None, views: tuple[str, ...],
              drop_latest: bool, dry_run: bool, yes: bool) -> None:
    """Delete log rows older than a cutoff (keeping each entity's newest row by default)."""
    if (before is None) == (older_than is None):
        raise CliError("give exactly one of --before TS or --older-than DURATION")
    try:
        cutoff = (cell_to_micros(before) if before is not None
                  else now_micros() - parse_duration(older_than or ""))
    except (TimestampError, ValueError) as exc:
        raise CliError(f"{'--before' if before is not None else '--older-than'}: {exc}") from None
    unknown = [v for v in views if v not in config.defs.views]
    if unknown:
        raise CliError(f"--view: unknown view {unknown[0]!r}; known views: "
                       + ", ".join(sorted(config.defs.views)))
    if not dry_run and not yes and not click.confirm(
            "Delete history from the offline log? This cannot be undone", default=False):
        raise CliError("aborted; nothing deleted")
    deleted = 0
    timer = Timer()
    todo = views or tuple(config.defs.views)
    verb = "would delete" if dry_run else "deleted"
    now = now_micros()
    with step_progress("retention", len(todo)) as advance:
        for view in todo:
            r = apply_retention_config(config, view, cutoff, keep_latest=not drop_latest,
                                       dry_run=dry_run, now=now)
            click.echo(f"{view}: {verb} {count(r.deleted, 'row')}, {r.kept:,} remain")
            deleted += r.deleted
            advance(view)
    if deleted and not dry_run:
        click.echo("recorded in the log's (each shard's) retention_runs: `asof-stream rebuild` of a training"
                   " set built before now refuses if it saw deleted rows (--allow-partial)")
    timer.summary(f"retention: {verb} {count(deleted, 'row')} in {count(len(todo), 'view')}")
