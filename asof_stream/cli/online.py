"""``asof-stream online`` (look up values) and ``asof-stream materialize`` (rebuild)."""

from __future__ import annotations

import json
from typing import Any

import click

from ..config import Config
from ..offline.shards import is_sharded
from ..online import open_online
from ..online.lookup import output_names, read_online
from ..online.materialize import materialize as rebuild
from ..stores import can_write, open_stores
from ..timestamps import to_iso
from .common import CliError, config_option, handle_errors, main


def _split_refs(features: str) -> list[str]:
    refs = [r.strip() for r in features.split(",") if r.strip()]
    if not refs:
        raise CliError("--features: no feature references given")
    return refs


@main.command()
@click.option("--features", required=True, help="REF[,REF...]: view:feature, view or @service.")
@click.option("--entity", "entities", multiple=True, required=True,
              help="KEY=VALUE of a join key; repeat for several keys.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--full-feature-names", is_flag=True, help="Name features view__feature.")
@config_option
@handle_errors
def online(config: Config, features: str, entities: tuple[str, ...], as_json: bool,
           full_feature_names: bool) -> None:
    """Look up the freshest values of features for one entity."""
    row: dict[str, str] = {}
    for item in entities:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--entity {item!r}: expected KEY=VALUE")
        row[key.strip()] = value
    out = lookup(config, _split_refs(features), row, full_feature_names)
    if as_json:
        click.echo(json.dumps({"entity": row, "features": out}))
        return
    for line in render_lookup(out):
        click.echo(line)


def lookup(config: Config, refs: list[str], row: dict[str, str],
           full_feature_names: bool = False) -> dict[str, dict[str, Any]]:
    """Per output name: value, status and event time of one entity (KEY=VALUE text)."""
    try:
        pairs = config.defs.resolve_refs(refs)
        names = output_names(pairs, full_feature_names)
    except ValueError as exc:
        raise CliError(f"--features: {exc}") from None
    if is_sharded(config):  # the shared online store alone; each shard's daemon heals it
        store = open_online(config.online_url)
        try:
            result = read_online(config.defs, store, pairs, [row], from_text=True)[0]
        finally:
            store.close()
    elif can_write(config):  # heal the online store from the log tail first
        with open_stores(config) as stores:
            result = read_online(config.defs, stores.online, pairs, [row], from_text=True)[0]
    else:  # a read-only project: read as it is, and say when the online store lags
        with open_stores(config, heal=False, readonly=True) as stores:
            applied, logged = stores.online.applied_seq(), stores.log.max_seq()
            if applied < logged:
                click.echo(f"asof-stream: warning: the online store has applied the log up to"
                           f" seq {applied} of {logged}, and {config.offline_path.parent} is"
                           " read-only, so it cannot catch up: values may be older", err=True)
            result = read_online(config.defs, stores.online, pairs, [row], from_text=True)[0]
    return {name: {"value": fv.value, "status": fv.status,
                   "event_timestamp": to_iso(fv.event_timestamp)}
            for name, fv in zip(names, result.values(), strict=True)}


def render_lookup(out: dict[str, dict[str, Any]]) -> list[str]:
    """One aligned line per feature: name, status, event time, value."""
    width = max(len(n) for n in out)
    return [f"{name:<{width}}  {d['status']:<15}  {d['event_timestamp'] or '-':<27}  "
            f"{json.dumps(d['value'])}" for name, d in out.items()]


@main.command()
@click.option("--view", default=None, help="Rebuild only this view.")
@config_option
@handle_errors
def materialize(config: Config, view: str | None) -> None:
    """Rebuild the online store from the offline log (latest row per entity)."""
    if view is not None and view not in config.defs.views:
        raise CliError(f"--view: unknown view {view!r}; known views: "
                       + ", ".join(sorted(config.defs.views)))
    if is_sharded(config):
        from ..ingest.sharded_commit import materialize_shards

        n = materialize_shards(config, view)
    else:
        with open_stores(config, heal=False) as stores:
            n = rebuild(stores.log, stores.online, view)
    click.echo(f"materialized {n} online rows")
