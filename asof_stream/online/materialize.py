"""Healing the online store from the log: replay the tail it missed, or rebuild it (I2)."""

from __future__ import annotations

from ..offline.log import OfflineLog
from ..timestamps import now_micros
from .aggstate import fingerprint
from .base import OnlineRow, OnlineStore, from_log_row, newest_per_key


def catch_up(log: OfflineLog, online: OnlineStore) -> int:
    """Apply the log rows the online store has not seen; returns how many were replayed."""
    applied = online.applied_seq()
    if applied > log.max_seq() or applied < log.sealed_max_seq() or (
            online.agg_fingerprint() != fingerprint(online.agg_plan)):
        # The store saw rows whose log commit never landed, or rows it missed were sealed
        # out of the head since, or its aggregation state was kept for other definitions
        # (an aggregation added or a window widened): rebuild it from the truth.
        materialize(log, online)
        return 0
    replayed = 0
    prev = applied
    plan = online.agg_plan
    for chunk in log.rows_after(applied):
        # low_seq: the chunk covers (prev, its last seq]. Should the store reset under
        # us, its applied seq drops to 0 and this chunk is parked, not counted as a run.
        rows = [from_log_row(r) for r in chunk]
        agg = None if plan is None else plan.batch(
            [(r.view, r.entity, r.event_ts, r.seq, r.ingest_ts, r.features) for r in chunk],
            now_micros())
        if agg is None:
            online.apply(newest_per_key(rows), chunk[-1].seq, low_seq=prev + 1)
        else:
            online.apply(newest_per_key(rows), chunk[-1].seq, low_seq=prev + 1, agg=agg)
        prev = chunk[-1].seq
        replayed += len(chunk)
    return replayed


def materialize(log: OfflineLog, online: OnlineStore, view: str | None = None) -> int:
    """Rebuild the online store from the log, both tiers (invariant I2); returns rows written.

    The newest row per entity comes from one snapshot of the head and the manifest: the
    last row of each entity in every sorted segment, against the head's newest. The
    aggregation state (when ``online.agg_plan`` is set) is rebuilt from the same
    snapshot's seq bound; a rebuild of one view leaves it as it is.
    """
    from ..offline.scan import latest_records
    from .aggstate import build_state

    high, records = latest_records(log, view)
    rows = list(map(OnlineRow._make, records))  # a record is an OnlineRow's fields in order
    if view is None:
        plan = online.agg_plan
        agg = None
        if plan is not None:
            now = now_micros()
            agg = build_state(log, plan, high, now)
        if agg is None:
            online.replace_all(rows, high)
        else:
            online.replace_all(rows, high, agg=agg)
        # Batches committed while the rebuild ran are above ``high``: replay them.
        catch_up(log, online)
    else:
        online.apply(rows, online.applied_seq())
    return len(rows)
