"""The commit's duplicate check: an event whose (view, event_id) is already logged, in
the head or in a sealed segment, or repeated in its batch, is not stored again."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..events import Event

if TYPE_CHECKING:
    from ..offline.manifest import SealedIds


def drop_duplicates(conn: sqlite3.Connection, good: list[tuple[Event, str]],
                    sealed: Callable[[], SealedIds] | None = None, *,
                    head: bool = True) -> list[tuple[Event, str]]:
    """Skip events whose (view, event_id) is already logged (in either tier) or repeated
    in the batch. The head is checked with its unique index, the sealed tier with its
    Bloom filters and an exact look at a segment on a hit.

    ``head=False``: only the sealed tier is checked; a repeat within the batch or of a
    head row is left for the head's unique index to refuse when the rows go in."""
    has_segments = sealed is not None and conn.execute(
        "SELECT 1 FROM segments LIMIT 1").fetchone() is not None
    if not head and not has_segments:
        return good
    by_view: dict[str, set[str]] = {}
    for ev, _ in good:
        if ev.event_id is not None:
            by_view.setdefault(ev.view, set()).add(ev.event_id)
    if not by_view:
        return good
    seen: set[tuple[str, str]] = set()
    for view, ids in by_view.items() if head else ():
        id_list = list(ids)
        for i in range(0, len(id_list), 500):
            part = id_list[i:i + 500]
            marks = ",".join("?" * len(part))
            for (eid,) in conn.execute(
                    f"SELECT event_id FROM log WHERE view = ? AND event_id IN ({marks})",
                    (view, *part)):
                seen.add((view, eid))
    if has_segments:
        assert sealed is not None
        checker = sealed()
        for view, ids in by_view.items():
            rest = [i for i in ids if (view, i) not in seen]
            for eid in checker.existing(conn, view, rest):
                seen.add((view, eid))
    if not head and not seen:
        return good
    out = []
    for ev, pos in good:
        if ev.event_id is not None:
            key = (ev.view, ev.event_id)
            if key in seen:
                continue
            seen.add(key)
        out.append((ev, pos))
    return out
