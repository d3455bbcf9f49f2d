"""``asof-stream online`` (look up values) and ``asof-stream materialize`` (rebuild)."""

from __future__ import annotations

import json

import click

from ..config import Config
from ..definitions import output_names, split_refs
from ..feature_store import FeatureStore
from ..offline.shards import is_sharded
from ..online.materialize import materialize as rebuild
from ..stores import open_stores
from ..transforms import request_names
from .common import CliError, config_option, handle_errors, main
from .progress import Timer, step_progress
from .render import count, render_lookup


@main.command()
@click.option("--features", required=True, help="REF[,REF...]: view:feature, view or @service.")
@click.option("--entity", "entities", multiple=True, required=True,
              help="KEY=VALUE of a join key; repeat for several keys.")
@click.option("--request", "requests", multiple=True,
              help="NAME=VALUE of a transform's request value; repeat for several.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--full-feature-names", is_flag=True, help="Name features view__feature.")
@config_option
@handle_errors
def online(config: Config, features: str, entities: tuple[str, ...], as_json: bool,
           full_feature_names: bool, requests: tuple[str, ...]) -> None:
    """Look up the freshest values of features for one entity (transforms computed
    from them and the --request values)."""
    row = _pairs(entities, "--entity")
    request = _pairs(requests, "--request")
    refs = split_refs(features)
    try:
        pairs = config.defs.resolve_refs(refs)
        output_names(pairs, full_feature_names)
    except ValueError as exc:
        raise CliError(f"--features: {exc}") from None
    keys = {k for v in dict.fromkeys(v for v, _ in pairs) for k in config.defs.join_keys_of(v)}
    for name in row:
        if name not in keys:
            raise CliError(f"--entity {name}={row[name]}: {name!r} is not a join key of these"
                           f" features; their join keys: {', '.join(sorted(keys))}")
    wanted = request_names(config.defs, pairs)
    for name in request:
        if name not in wanted:
            raise CliError(f"--request {name}={request[name]}: {name!r} is not a request value"
                           " of these features; their request values: "
                           + (", ".join(wanted) or "none"))
    for name, dtype in wanted.items():
        if name not in request:
            raise CliError(f"--request: missing {name}=VALUE ({dtype}), a request value of"
                           " the transforms asked for")
    with FeatureStore(config) as store:
        out = store.lookup(refs, row, full_feature_names, request)
        lag = 0 if store.stores.sharded else store.online_lag
    if lag:  # only in a read-only project: elsewhere the store was just healed
        click.echo(f"asof-stream: warning: the online store is {lag} log rows behind and"
                   f" {config.offline_path.parent} is read-only, so it cannot catch up:"
                   " values may be older", err=True)
    if as_json:
        click.echo(json.dumps({"entity": row, "features": out}))
        return
    for line in render_lookup(out):
        click.echo(line)


def _pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


@main.command()
@click.option("--view", default=None, help="Rebuild only this view.")
@config_option
@handle_errors
def materialize(config: Config, view: str | None) -> None:
    """Rebuild the online store from the offline log (latest row per entity)."""
    if view is not None and view not in config.defs.views:
        raise CliError(f"--view: unknown view {view!r}; known views: "
                       + ", ".join(sorted(config.defs.views)))
    timer = Timer()
    with step_progress(f"materialize {view or 'every view'}"):
        if is_sharded(config):
            from ..ingest.sharded_commit import materialize_shards

            n = materialize_shards(config, view)
        else:
            with open_stores(config, heal=False) as stores:
                n = rebuild(stores.log, stores.online, view)
    timer.summary(f"materialized {count(n, 'online row')}")
