"""The skew audit of aggregations: each aggregated feature read online now, against the
same feature computed now from the log (both tiers).

Every entity the log has for an aggregation's source view is read online at ``now`` and
compared with the value computed from its log rows in the window at ``now``; a
difference (``different_aggregate``) means the online state lost or gained rows. With a
``clock``, each difference is checked again against fresh reads of both stores at
``clock()``, so a batch that landed mid-audit is not reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..definitions import Definitions
from ..events import same_value
from ..offline.log import OfflineLog
from ..online.aggread import AggReader
from ..online.aggstate import AggPlan, AggRow, build_rows
from ..online.base import OnlineStore
from ..online.read import read_features
from .skew import Difference

DIFFERENT_AGGREGATE = "different_aggregate"


def _log_values(defs: Definitions, name: str, rows: list[AggRow], now: int) -> dict[str, Any]:
    reader = AggReader(defs, name)
    low = reader.lower(now)
    mine = sorted(((r[2], r[3], r[5]) for r in rows
                   if r[2] <= now and (low is None or r[2] > low)), key=lambda r: (r[0], r[1]))
    return {f: v for f, (v, _) in reader.evaluate(reader.agg.feature_names, mine, now).items()}


def _by_entity(rows: list[AggRow], view: str) -> dict[str, list[AggRow]]:
    out: dict[str, list[AggRow]] = {}
    for r in rows:
        if r[0] == view:
            out.setdefault(r[1], []).append(r)
    return out


def _differences(defs: Definitions, online: OnlineStore, name: str,
                 by_entity: dict[str, list[AggRow]], now: int) -> list[Difference]:
    agg = defs.aggregations[name]
    entities = sorted(by_entity)
    keys = list(defs.entity_of(name).join_keys)
    pairs = [(name, f) for f in agg.feature_names]
    out = []
    for start in range(0, len(entities), 500):
        part = entities[start:start + 500]
        # the entity text is the join key's value as text, or a JSON array of the values
        rows = [_key_row(keys, e) for e in part]
        got = read_features(defs, online, pairs, rows, now=now, from_text=len(keys) == 1)
        for e, values in zip(part, got, strict=True):
            online_v = {f: values[(name, f)].value for f in agg.feature_names}
            log_v = _log_values(defs, name, by_entity[e], now)
            bad = [f for f in agg.feature_names if not same_value(online_v[f], log_v[f])]
            if bad:
                out.append(Difference(name, e, DIFFERENT_AGGREGATE, online_v, log_v,
                                      "online differs from the log's value now in "
                                      + ", ".join(bad)))
    return out


def _key_row(keys: list[str], entity: str) -> dict[str, Any]:
    import json

    if len(keys) == 1:
        return {keys[0]: entity}
    return dict(zip(keys, json.loads(entity), strict=True))


def audit_aggregations(log: OfflineLog, online: OnlineStore, defs: Definitions,
                       names: list[str], now: int, *,
                       clock: Callable[[], int] | None = None,
                       ) -> tuple[dict[str, int], list[Difference]]:
    """Per aggregation, the entities compared, and the differences that remain."""
    plan = AggPlan.from_defs(defs)
    if plan is None or not names:
        return {}, []
    if online.agg_plan is None:
        online.agg_plan = AggPlan.from_defs(defs, folding=online.folds_aggregations)
    rows = build_rows(log, defs, plan, None, now)
    checked: dict[str, int] = {}
    found: list[Difference] = []
    for name in names:
        by_entity = _by_entity(rows, defs.aggregations[name].source)
        checked[name] = len(by_entity)
        diffs = _differences(defs, online, name, by_entity, now)
        if clock is not None and diffs:
            later = max(now, clock())
            fresh = build_rows(log, defs, plan, None, later)
            again = _by_entity(fresh, defs.aggregations[name].source)
            wanted = {d.entity: again.get(d.entity, []) for d in diffs}
            diffs = _differences(defs, online, name, wanted, later)
        found.extend(diffs)
    return checked, found
