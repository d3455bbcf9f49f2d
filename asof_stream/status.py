"""What ``status --json`` reports: rows, freshness, positions, lag and dead letters."""

from __future__ import annotations

from typing import Any

from .config import Config
from .log import Position
from .sources.base import detail_highwater
from .stores import open_stores
from .timestamps import now_micros, to_iso


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


def gather_status(config: Config) -> dict[str, Any]:
    """One JSON-ready object with the fields of contract section 10 (and a few more)."""
    now = now_micros()
    with open_stores(config, heal=False) as stores:
        stats = stores.log.view_stats()
        views: dict[str, Any] = {}
        for name in config.defs.views:
            st = stats.get(name, {})
            latest = st.get("latest_event_timestamp")
            ingest = st.get("latest_ingest_ts")
            views[name] = {
                "rows": st.get("rows", 0),
                "online_rows": stores.online.count(name),
                "latest_event_timestamp": to_iso(latest),
                "latest_ingest_ts": to_iso(ingest),
                "freshness_seconds": (now - latest) / 1e6 if latest is not None else None,
                "duplicates_skipped": st.get("duplicates", 0),
            }
        positions = stores.log.positions()
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
            "offline": str(config.offline_path),
            "online": config.online_url,
            "log_rows": sum(v["rows"] for v in views.values()),
            "max_seq": stores.log.max_seq(),
            "online_applied_seq": stores.online.applied_seq(),
            "views": views,
            "dead_letters": stores.log.dead_letter_count(),
            "dead_letters_open": stores.log.dead_letter_count(open_only=True),
            "sources": sources,
            "generated_at": to_iso(now),
        }
