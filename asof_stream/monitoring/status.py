"""What ``status --json`` reports: rows, freshness, positions, lag and dead letters."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..ingest.sources.base import detail_highwater
from ..offline.log import OfflineLog, Position
from ..offline.shards import existing_shards, is_sharded, partition_count, shard_dir, shard_name
from ..offline.sqlite import quick_check
from ..online import open_online
from ..online.base import OnlineStore
from ..stores import open_reading_stores
from ..timestamps import now_micros, to_iso


def kafka_lag(committed: dict[str, Position]) -> dict[str, Any]:
    """Lag per partition: the high watermark recorded at the last commit minus the position.

    The daemon stores the high watermark its last fetch saw in each position's detail, in
    the batch's transaction, so ``status`` needs no broker (and does not depend on
    ``end_offsets``, which some Kafka-protocol brokers get wrong). It is the lag as of
    that commit (``lag_as_of``); a stopped daemon shows the lag it left with.
    """
    lag: dict[str, int | None] = {}
    for key, p in sorted(committed.items()):
        hw = detail_highwater(p.detail)
        lag[key] = None if hw is None else max(0, hw - p.next_offset)
    known = [v for v in lag.values() if v is not None]
    return {"lag": lag, "lag_total": sum(known) if known else None}


def _merge_stats(per_log: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """View stats of several shards as one: rows and duplicates add up, times extend."""
    out: dict[str, dict[str, Any]] = {}
    for stats in per_log:
        for view, st in stats.items():
            cur = out.get(view)
            if cur is None:
                out[view] = dict(st)
                continue
            cur["rows"] += st["rows"]
            cur["duplicates"] += st["duplicates"]
            for k, pick in (("earliest_event_timestamp", min), ("latest_event_timestamp", max),
                            ("latest_ingest_ts", max)):
                known = [v for v in (cur[k], st[k]) if v is not None]
                cur[k] = pick(known) if known else None
    return out


def gather_status(config: Config) -> dict[str, Any]:
    """One JSON-ready object with the fields of contract section 10 (and a few more).

    With partition shards every number is summed over the shards (positions are per
    partition, so they merge), and ``shards`` lists each one.
    """
    if not is_sharded(config):
        with open_reading_stores(config, check=True) as stores:
            return _status(config, {"offline": stores.log}, stores.online, str(config.offline_path))
    logs: dict[str, OfflineLog] = {}
    online = open_online(config.online_url)
    try:
        for p, path in existing_shards(config).items():
            logs[shard_name(p)] = log = OfflineLog(path, readonly=True)
            quick_check(log.conn, path)
        out = _status(config, logs, online, str(shard_dir(config)))
        out["shards"] = {name: {"path": str(log.path), "max_seq": log.max_seq(),
                                "online_applied_seq": open_track(config, name)}
                         for name, log in logs.items()}
        out["partitions"] = partition_count(config)
        out["online_applied_seq"] = None  # per shard, above
        return out
    finally:
        for log in logs.values():
            log.close()
        online.close()


def open_track(config: Config, shard: str) -> int:
    """The seq up to which the online store has applied one shard's log."""
    online = open_online(config.online_url, track=":" + shard)
    try:
        return online.applied_seq()
    finally:
        online.close()


def _status(config: Config, logs: dict[str, OfflineLog], online: OnlineStore,
            offline: str) -> dict[str, Any]:
    now = now_micros()
    stats = _merge_stats([log.view_stats() for log in logs.values()])
    views: dict[str, Any] = {}
    for name in config.defs.views:
        st = stats.get(name, {})
        latest = st.get("latest_event_timestamp")
        ingest = st.get("latest_ingest_ts")
        views[name] = {
            "rows": st.get("rows", 0),
            "online_rows": online.count(name),
            "latest_event_timestamp": to_iso(latest),
            "latest_ingest_ts": to_iso(ingest),
            "freshness_seconds": (now - latest) / 1e6 if latest is not None else None,
            "duplicates_skipped": st.get("duplicates", 0),
        }
    positions: dict[str, dict[str, Position]] = {}
    for log in logs.values():
        for source, committed in log.positions().items():
            positions.setdefault(source, {}).update(committed)
    sources: dict[str, Any] = {}
    for name, src in config.defs.sources.items():
        committed = positions.get(name, {})
        sources[name] = {
            "kind": src.kind,
            "positions": {k: {"next_offset": p.next_offset, "detail": p.detail}
                          for k, p in sorted(committed.items())},
        }
        if src.kind == "kafka":
            sources[name].update(kafka_lag(committed))
    for name, committed in positions.items():
        if name.startswith("replay-kafka:"):
            sources.setdefault(name, {"kind": "replay-kafka", "positions": {
                k: {"next_offset": p.next_offset, "detail": p.detail}
                for k, p in sorted(committed.items())}, **kafka_lag(committed)})
        if name.startswith("replay:"):
            sources.setdefault(name, {"kind": "replay", "positions": {
                k: {"next_offset": p.next_offset, "detail": p.detail}
                for k, p in committed.items()}})
    return {
        "config": str(config.path),
        "offline": offline,
        "online": config.online_url,
        "log_rows": sum(v["rows"] for v in views.values()),
        "max_seq": max((log.max_seq() for log in logs.values()), default=0),
        "online_applied_seq": online.applied_seq(),
        "views": views,
        "dead_letters": sum(log.dead_letter_count() for log in logs.values()),
        "dead_letters_open": sum(log.dead_letter_count(open_only=True) for log in logs.values()),
        "sources": sources,
        "generated_at": to_iso(now),
    }
