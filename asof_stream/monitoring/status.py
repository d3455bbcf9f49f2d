"""What ``status --json`` reports: rows, freshness, positions, lag and dead letters."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..ingest.sources.base import detail_highwater
from ..ingest.sources.file_identity import detail_fields
from ..offline.log import OfflineLog, Position
from ..offline.shard_union import ShardUnion
from ..offline.shards import existing_shards, is_sharded, partition_count, shard_dir, shard_name
from ..offline.sqlite import quick_check
from ..online import open_online
from ..online.base import OnlineStore, OnlineUnavailable
from ..redaction import redact_url
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


def _file_paths(entries: dict[str, dict[str, Any]]) -> None:
    """File positions also say where the file is now and any warning (a truncation whose
    old content was not found, a file cut short)."""
    for entry in entries.values():
        d = detail_fields(entry["detail"])
        entry["path"] = d.get("path")
        entry["warning"] = d.get("warning")


def gather_status(config: Config) -> dict[str, Any]:
    """One JSON-ready object with the fields of docs/cli.md (and a few more).

    With partition shards every number is summed over the shards (positions are per
    partition, so they merge), and ``shards`` lists each one.
    """
    if not is_sharded(config):
        with open_reading_stores(config, check=True) as stores:
            return _status(config, stores.log, stores.online, str(config.offline_path))
    logs: dict[str, OfflineLog] = {}
    online = open_online(config.online_url)
    try:
        for p, path in existing_shards(config).items():
            logs[shard_name(p)] = log = OfflineLog(path, readonly=True)
            quick_check(log.conn, path)
        with ShardUnion(config) as union:  # the shards' rows, stats and letters as one log
            out = _status(config, union, online, str(shard_dir(config)))
        # each shard's own high-water mark (retention may have emptied its head)
        out["max_seq"] = max((log.max_seq() for log in logs.values()), default=0)
        out["shards"] = {}
        for name, log in logs.items():
            applied = open_track(config, name)
            out["shards"][name] = {"path": str(log.path), "max_seq": log.max_seq(),
                                   "online_applied_seq": applied,
                                   "online_lag": _lag(log.max_seq(), applied)}
        out["partitions"] = partition_count(config)
        out["online_applied_seq"] = None  # per shard, above
        out["online_lag"] = None
        return out
    finally:
        for log in logs.values():
            log.close()
        online.close()


def open_track(config: Config, shard: str) -> int | None:
    """The seq up to which the online store has applied one shard's log (None: the
    store does not answer)."""
    online = open_online(config.online_url, track=":" + shard)
    try:
        return online.applied_seq()
    except OnlineUnavailable:
        return None
    finally:
        online.close()


def _lag(log_seq: int, applied: int | None) -> int | None:
    return None if applied is None else max(0, log_seq - applied)


def _or_none(fn: Callable[[], int], errors: list[str]) -> int | None:
    """``fn()``, or None when the online store does not answer (the reason in ``errors``)."""
    try:
        return fn()
    except OnlineUnavailable as exc:
        if not errors:
            errors.append(str(exc))
        return None


def _status(config: Config, log: OfflineLog, online: OnlineStore, offline: str) -> dict[str, Any]:
    now = now_micros()
    errors: list[str] = []
    stats = log.view_stats()
    views: dict[str, Any] = {}
    for name in config.defs.views:
        st = stats.get(name, {})
        latest = st.get("latest_event_timestamp")
        ingest = st.get("latest_ingest_ts")
        views[name] = {
            "rows": st.get("rows", 0),
            "online_rows": _or_none(functools.partial(online.count, name), errors),
            "latest_event_timestamp": to_iso(latest),
            "latest_ingest_ts": to_iso(ingest),
            "freshness_seconds": (now - latest) / 1e6 if latest is not None else None,
            "duplicates_skipped": st.get("duplicates", 0),
        }
    positions = log.positions()
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
        elif src.kind == "file":
            _file_paths(sources[name]["positions"])
    for name, committed in positions.items():
        if name.startswith("replay-kafka:"):
            sources.setdefault(name, {"kind": "replay-kafka", "positions": {
                k: {"next_offset": p.next_offset, "detail": p.detail}
                for k, p in sorted(committed.items())}, **kafka_lag(committed)})
        if name.startswith("replay:"):
            sources.setdefault(name, {"kind": "replay", "positions": {
                k: {"next_offset": p.next_offset, "detail": p.detail}
                for k, p in committed.items()}})
    max_seq = log.max_seq()
    applied = _or_none(online.applied_seq, errors)
    return {
        "config": str(config.path),
        "offline": offline,
        "online": redact_url(config.online_url),
        "log_rows": sum(v["rows"] for v in views.values()),
        "max_seq": max_seq,
        "online_applied_seq": applied,
        "online_lag": _lag(max_seq, applied),  # log seqs the online store has not applied
        "online_error": errors[0] if errors else None,
        "views": views,
        "dead_letters": log.dead_letter_count(),
        "dead_letters_open": log.dead_letter_count(open_only=True),
        "sources": sources,
        "generated_at": to_iso(now),
    }
