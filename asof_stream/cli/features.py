"""``asof-stream features``: the feature registry."""

from __future__ import annotations

import json

import click

from ..config import Config
from ..monitoring.registry import format_seconds, list_features
from .common import config_option, handle_errors, main


@main.command()
@click.option("--tag", default=None, help="Only features of views with this tag.")
@click.option("--owner", default=None, help="Only features of views with this owner.")
@click.option("--view", default=None, help="Only features of this view.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per feature.")
@config_option
@handle_errors
def features(config: Config, tag: str | None, owner: str | None, view: str | None,
             as_json: bool) -> None:
    """List every feature: type, description, owner, tags, ttl, freshness objective,
    definition version, rows and first/last event time of its view, and the services
    that use it."""
    rows = list_features(config, tag=tag, owner=owner, view=view)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no features match", err=True)
        return
    current = None
    for r in rows:
        if r["view"] != current and r.get("kind") == "transform":
            current = r["view"]
            click.echo(f"{current}  (transform {r['function']}, version {r['version']})")
            if r["view_description"]:
                click.echo(f"  {r['view_description']}")
            request = ", ".join(f"{k} {t}" for k, t in r["request"].items()) or "-"
            click.echo(f"  inputs {', '.join(r['inputs']) or '-'}  request {request}")
        elif r["view"] != current:
            current = r["view"]
            what = "aggregation of " + r["definition"]["source"] + ", " \
                if r.get("kind") == "aggregation" else ""
            click.echo(f"{current}  ({what}entity {r['entity']}, version {r['version']})")
            if r["view_description"]:
                click.echo(f"  {r['view_description']}")
            click.echo(f"  owner {r['owner'] or '-'}  tags {','.join(r['tags']) or '-'}  "
                       f"ttl {format_seconds(r['ttl_seconds'])}  "
                       f"freshness {format_seconds(r['freshness_objective_seconds'])}")
            click.echo(f"  rows {r['rows']}  first {r['first_event_timestamp'] or '-'}  "
                       f"last {r['last_event_timestamp'] or '-'}")
        services = ",".join("@" + s for s in r["services"]) or "-"
        desc = f"  {r['description']}" if r["description"] else ""
        if r.get("kind") == "aggregation":
            d = r["definition"]
            window = format_seconds(d["window_seconds"]) if d["window_seconds"] else "all"
            desc = f"  = {d['fn']}({d['of'] or '*'}) over {window}{desc}"
        click.echo(f"    {r['name']:<24} {r['type']:<8} services {services}{desc}")
