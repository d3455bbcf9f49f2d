"""The skew audit over partition shards: every row of an entity is in its shard
(murmur2 of the entity key, :mod:`asof_stream.offline.shards`), so each shard's log is
audited against the online rows of its own entities in the shared online store, and
the reports merged. Online rows of entities whose shard does not exist yet are keys
the log never saw."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config
from ..offline.log import open_log
from ..offline.shards import Router, existing_shards, partition_count
from ..online import open_online
from .skew import MISSING_IN_LOG, Difference, SkewReport, _row_dict, audit
from .skew_agg import audit_aggregations


def _in_shard(route: Router, partition: int) -> Callable[[str], bool]:
    return lambda entity: route(entity) == partition


def sharded_audit(config: Config, views: list[str], aggs: list[str], now: int, *,
                  clock: Callable[[], int] | None = None,
                  progress: Callable[[str], None] | None = None) -> SkewReport:
    """:func:`~.skew.audit` and the aggregation audit over every shard, merged: keys
    checked add up, differences listed view by view, by entity."""
    shards = existing_shards(config)
    partitions = partition_count(config) or 1
    route = Router(partitions)
    report = SkewReport(now, {name: 0 for name in views}, [])
    online = open_online(config.online_url)  # not healed: audit what is there
    try:
        for p, path in sorted(shards.items()):
            with open_log(path, readonly=True) as log:
                part = audit(log, online, views, now, clock=clock, keep=_in_shard(route, p))
                checked, found = audit_aggregations(log, online, config.defs, aggs, now,
                                                    clock=clock)
            for name, n in [*part.checked.items(), *checked.items()]:
                report.checked[name] = report.checked.get(name, 0) + n
            report.differences.extend(part.differences + found)
            if progress is not None:
                progress(path.stem)
        for name in views:  # online rows no shard holds the entity of
            for on in online.entries(name):
                if route(on.entity) not in shards:
                    report.checked[name] += 1
                    report.differences.append(Difference(
                        name, on.entity, MISSING_IN_LOG,
                        _row_dict(on.seq, on.event_ts, on.ingest_ts, on.features), None,
                        "online row for a key the log has no row for (as of now)"))
    finally:
        online.close()
    order = {name: i for i, name in enumerate(views + aggs)}
    report.differences.sort(key=lambda d: (order.get(d.view, len(order)), d.entity))
    return report
