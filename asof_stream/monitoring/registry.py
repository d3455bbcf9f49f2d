"""The feature registry: every feature with its metadata, version, data and users.

:func:`list_features` answers ``asof-stream features`` (and the web page): one entry
per feature with its view's description, owner, tags, ttl and freshness objective, the
view's current definition version (and when it was first seen), the view's row count
and first/last event time in the offline log, and the feature services that use it.
Aggregated features follow, one entry each with ``kind`` "aggregation" and their
``definition`` (fn, of, window, source view); their rows and times are the source view's.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from ..config import Config
from ..definitions import Aggregation, Definitions, FeatureView, Transform
from ..offline.shard_union import open_reader
from ..timestamps import to_iso
from ..transforms import module_digest
from ..versions import aggregation_version, view_version


class RegistryError(ValueError):
    """A filter naming a view, tag or owner that does not exist."""


def services_by_feature(defs: Definitions) -> dict[tuple[str, str], list[str]]:
    """For each (view, feature), the names of the services that reference it, sorted."""
    out: dict[tuple[str, str], list[str]] = {}
    for name in sorted(defs.services):
        for pair in defs.resolve_refs(list(defs.services[name].features)):
            users = out.setdefault(pair, [])
            if name not in users:
                users.append(name)
    return out


def _log_facts(config: Config) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], int]]:
    """View stats and version first-seen times from the log (or shards), if there is one."""
    log = open_reader(config)
    if log is None:
        return {}, {}
    try:
        try:
            stats = log.view_stats()
        except sqlite3.OperationalError:  # a log created by an older version
            stats = {}
        try:
            first_seen = {(v, ver): int(ts) for v, ver, ts in log.conn.execute(
                "SELECT view, version, first_seen_ts FROM definition_versions")}
        except sqlite3.OperationalError:  # no commit has recorded versions yet
            first_seen = {}
    finally:
        log.close()
    return stats, first_seen


def _check_filter(value: str | None, known: Iterable[str], what: str) -> None:
    if value is None:
        return
    names = sorted(set(known))
    if value not in names:
        raise RegistryError(f"unknown {what} {value!r}; known {what}s: "
                            + (", ".join(names) or "none"))


def list_features(config: Config, *, tag: str | None = None, owner: str | None = None,
                  view: str | None = None) -> list[dict[str, Any]]:
    """Every feature matching the filters (all given filters must hold), in config order.

    A filter naming a view, tag or owner that no view has is a :class:`RegistryError`
    listing the valid ones; filters that exist but match nothing together give ``[]``.
    """
    defs = config.defs
    tables: list[FeatureView | Aggregation | Transform] = [
        *defs.views.values(), *defs.aggregations.values(), *defs.transforms.values()]
    meta = [(v.tags, v.owner) for v in tables]
    _check_filter(view, [*defs.views, *defs.aggregations, *defs.transforms], "view")
    _check_filter(tag, (t for tags, _ in meta for t in tags), "tag")
    _check_filter(owner, (o for _, o in meta if o), "owner")
    stats, first_seen = _log_facts(config)
    users = services_by_feature(defs)
    out: list[dict[str, Any]] = []
    for vname, v in defs.views.items():
        if view is not None and vname != view:
            continue
        if tag is not None and tag not in v.tags:
            continue
        if owner is not None and v.owner != owner:
            continue
        version = view_version(defs, vname)
        st = stats.get(vname, {})
        seen = first_seen.get((vname, version))
        for f in v.features:
            out.append({
                "view": vname,
                "name": f.name,
                "ref": f"{vname}:{f.name}",
                "type": f.dtype,
                "required": f.required,
                "description": f.description,
                "view_description": v.description,
                "entity": v.entity,
                "join_keys": list(defs.entities[v.entity].join_keys),
                "owner": v.owner,
                "tags": list(v.tags),
                "ttl_seconds": None if v.ttl is None else v.ttl / 1e6,
                "freshness_objective_seconds": None if v.freshness is None else v.freshness / 1e6,
                "version": version,
                "version_first_seen": to_iso(seen),
                "rows": st.get("rows", 0),
                "first_event_timestamp": to_iso(st.get("earliest_event_timestamp")),
                "last_event_timestamp": to_iso(st.get("latest_event_timestamp")),
                "services": users.get((vname, f.name), []),
                "kind": "view",
            })
    for aname, agg in defs.aggregations.items():
        if view is not None and aname != view:
            continue
        if tag is not None and tag not in agg.tags:
            continue
        if owner is not None and agg.owner != owner:
            continue
        src = defs.views[agg.source]
        st = stats.get(agg.source, {})
        for a in agg.features:
            out.append({
                "view": aname,
                "name": a.name,
                "ref": f"{aname}:{a.name}",
                "type": defs.dtype_of(aname, a.name),
                "required": False,
                "description": a.description,
                "view_description": agg.description,
                "entity": src.entity,
                "join_keys": list(defs.entities[src.entity].join_keys),
                "owner": agg.owner,
                "tags": list(agg.tags),
                "ttl_seconds": None,  # a view's ttl does not apply to aggregations
                "freshness_objective_seconds": None,
                "version": aggregation_version(defs, aname),
                "version_first_seen": None,
                "rows": st.get("rows", 0),  # the source view's
                "first_event_timestamp": to_iso(st.get("earliest_event_timestamp")),
                "last_event_timestamp": to_iso(st.get("latest_event_timestamp")),
                "services": users.get((aname, a.name), []),
                "kind": "aggregation",
                "definition": {"fn": a.fn, "of": a.of, "source": agg.source,
                               "window_seconds": None if a.window is None else a.window / 1e6},
            })
    for tname, tr in defs.transforms.items():
        if (view is not None and tname != view) or (tag is not None and tag not in tr.tags) \
                or (owner is not None and tr.owner != owner):
            continue
        out.extend(transform_entries(defs, tname, users))
    return out


def transform_entries(defs: Definitions, name: str,
                      users: dict[tuple[str, str], list[str]]) -> list[dict[str, Any]]:
    """One registry entry per output of a transform: the keys every entry has (no log
    facts: a transform has no rows of its own), plus ``kind``, ``function``, ``inputs``
    (resolved ``view:feature``), ``request`` (name -> type) and ``outputs``. Its
    ``version`` hashes the definition and the module file."""
    tr = defs.transforms[name]
    inputs = defs.resolve_refs(list(tr.inputs)) if tr.inputs else []
    entities = sorted({defs.entity_of(v).name for v, _ in inputs})
    digest = module_digest(defs.root, tr)
    shape = json.dumps([tr.model_dump(mode="json", exclude={"description", "owner", "tags"}),
                        digest], sort_keys=True)
    return [{
        "view": name, "name": out, "ref": f"{name}:{out}", "type": dtype, "required": False,
        "description": "", "view_description": tr.description, "entity": ",".join(entities),
        "join_keys": list(defs.join_keys_of(name)), "owner": tr.owner, "tags": list(tr.tags),
        "ttl_seconds": None, "freshness_objective_seconds": None,
        "version": hashlib.sha256(shape.encode()).hexdigest()[:12], "version_first_seen": None,
        "rows": 0, "first_event_timestamp": None, "last_event_timestamp": None,
        "services": users.get((name, out), []),
        "kind": "transform", "function": tr.function,
        "inputs": [f"{v}:{f}" for v, f in inputs], "request": dict(tr.request),
        "outputs": dict(tr.outputs), "module_sha256": digest,
    } for out, dtype in tr.outputs.items()]


def format_seconds(seconds: float | None) -> str:
    """A duration in seconds the way the config writes it (``14d``, ``90m``), or ``-``."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{sign}{int(s // size)}{unit}"
    if s >= 2 * 86400:
        return f"{sign}{s / 86400:.1f}d"
    if s >= 3600:
        return f"{sign}{s / 3600:.1f}h"
    if s >= 60:
        return f"{sign}{s / 60:.1f}m"
    return f"{sign}{s:.0f}s" if s == int(s) else f"{sign}{s:.3f}s"
