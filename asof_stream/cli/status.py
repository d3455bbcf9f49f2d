"""``asof-stream status``: positions, lag, freshness per view, dead letters."""

from __future__ import annotations

import json

import click

from ..config import Config
from ..monitoring.registry import format_seconds
from ..monitoring.status import gather_status
from .common import config_option, handle_errors, main
from .render import count


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@config_option
@handle_errors
def status(config: Config, as_json: bool) -> None:
    """Show what the stores hold and how far each source has been read."""
    st = gather_status(config)
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    click.echo(f"offline log  {st['offline']}  ({count(st['log_rows'], 'row')},"
               f" seq {st['max_seq']})")
    if "shards" in st:
        for name, sh in st["shards"].items():
            click.echo(f"  shard {name}: seq {sh['max_seq']}, applied online"
                       f" {sh['online_applied_seq']}, lag {sh['online_lag']}")
        click.echo(f"online store {st['online']}")
    else:
        lag = "unknown" if st["online_lag"] is None else count(st["online_lag"], "seq")
        click.echo(f"online store {st['online']}  (applied seq {st['online_applied_seq']},"
                   f" lag {lag})")
    if st.get("online_error"):
        click.echo(f"  online store does not answer: {st['online_error']}")
    click.echo("views:")
    for name, v in st["views"].items():
        fresh = v["freshness_seconds"]
        age = f"{format_seconds(fresh)} ago" if fresh is not None else "no data"
        online = count(v["online_rows"], "entity") if v["online_rows"] is not None else "? entities"
        click.echo(f"  {name:<24} {count(v['rows'], 'row'):<12} online {online:<14} "
                   f"latest {v['latest_event_timestamp'] or '-'} ({age})")
    click.echo("sources:")
    for name, s in st["sources"].items():
        click.echo(f"  {name} ({s['kind']})")
        for key, p in s["positions"].items():
            lag = s.get("lag", {}).get(key)
            extra = f"  lag {lag}" if lag is not None else ""
            click.echo(f"    {p.get('path') or key}: next offset {p['next_offset']}{extra}")
            if p.get("warning"):
                click.echo(f"      warning: {p['warning']}")
    click.echo(f"dead letters: {st['dead_letters']:,} ({st['dead_letters_open']:,} not re-queued)")
