"""``asof-stream dead-letters``: list rejected records, or re-queue them."""

from __future__ import annotations

import json

import click

from ..config import Config
from ..ingest.dead_letter_lines import describe_position, line_numbers
from ..ingest.dead_letters import list_all, requeue_all
from ..timestamps import to_iso
from .common import config_option, handle_errors, main


@main.command("dead-letters")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Show at most N.")
@click.option("--source", default=None, help="Only this source.")
@click.option("--all", "include_requeued", is_flag=True, help="Include re-queued ones.")
@click.option("--requeue", "do_requeue", is_flag=True,
              help="Validate open dead letters again with the current definitions; commit the "
                   "ones that pass, keep the others (with their new reason).")
@config_option
@handle_errors
def dead_letters(config: Config, as_json: bool, limit: int | None, source: str | None,
                 include_requeued: bool, do_requeue: bool) -> None:
    """List dead letters, newest first (id, source, file line or position, time, the
    field at fault, reason, raw preview), or re-queue them."""
    if do_requeue:
        r = requeue_all(config, source=source, batch_size=config.defs.ingest.batch_size)
        if as_json:
            click.echo(json.dumps({"examined": r.examined, "requeued": r.requeued,
                                   "still_bad": r.still_bad, "stored": r.stored,
                                   "duplicates": r.duplicates}))
        else:
            click.echo(f"re-queued {r.requeued} of {r.examined} (stored {r.stored}, "
                       f"duplicates {r.duplicates}); {r.still_bad} still rejected")
        return
    # Newest first, as on the web page; --limit keeps the latest N.
    rows, open_count = list_all(config, limit=limit, source=source,
                                include_requeued=include_requeued)
    lines: dict[tuple[str | None, int], int] = {}
    for shard in {d.shard for d in rows}:  # ids are per shard
        group = [d for d in rows if d.shard == shard]
        lines.update(((shard, i), n) for i, n in line_numbers(config, group).items())
    if as_json:
        click.echo(json.dumps({"count": len(rows), "open": open_count,
                               "dead_letters": [d.as_json(lines.get((d.shard, d.id))) for d in rows]}))
        return
    if not rows:
        click.echo("no dead letters")
        return
    for d in rows:
        shard = f" [shard {d.shard}]" if d.shard is not None else ""
        click.echo(f"#{d.id}{shard} {d.source} {describe_position(d, lines.get((d.shard, d.id)))}"
                   f" {to_iso(d.error_ts)}"
                   + (f" requeued {to_iso(d.requeued_ts)}" if d.requeued_ts else ""))
        if d.field is not None:
            click.echo(f"    field:  {d.field}")
        click.echo(f"    reason: {d.reason}")
        click.echo(f"    raw:    {d.preview()}")
