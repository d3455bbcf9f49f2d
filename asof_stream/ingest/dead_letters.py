"""Listing and re-queueing dead letters (docs/events.md).

A re-queue validates each open dead letter again with the current definitions. The
ones that pass are committed through :meth:`Committer.commit` and marked
``requeued_ts`` in that same transaction; the others stay open with their reason
updated. Re-queued events keep their original source and position.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ..events import EventError
from ..offline.log import OfflineLog
from ..stores import Stores
from ..timestamps import now_micros, to_iso
from .commit import BatchResult
from .sources.base import Record

#: what a reason names first, as the validator words it (events.py)
_FIELD_PATTERNS = [
    re.compile(r"^(?:missing required )?feature '([^']+)'"),
    re.compile(r"^(?:missing )?join key '([^']+)'"),
    re.compile(r"^(?:bad |missing )?(event_timestamp)\b"),
    re.compile(r"^(event_id) must be"),
    re.compile(r"^unknown field\(s\) \['([^']+)'"),
    re.compile(r"^(?:missing |unknown |event is for )?'?(view)\b"),
]


def offending_field(reason: str) -> str | None:
    """The event field a reason is about (``feature 'risk' (float64): ...`` -> ``risk``),
    or None for a reason about the whole record (not JSON, oversized, not an object)."""
    for pattern in _FIELD_PATTERNS:
        m = pattern.match(reason)
        if m:
            return m.group(1)
    return None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    source: str
    position: str | None
    raw: bytes
    reason: str
    error_ts: int
    requeued_ts: int | None

    def preview(self, width: int = 80) -> str:
        text = self.raw[: width * 4].decode("utf-8", errors="replace")
        text = text.replace("\n", "\\n")
        return text if len(text) <= width else text[: width - 3] + "..."

    @property
    def field(self) -> str | None:
        """The event field at fault, read from the reason (None: the whole record)."""
        return offending_field(self.reason)

    def as_json(self, line: int | None = None) -> dict[str, Any]:
        """``line``: the 1-based line in the source file (see :mod:`.dead_letter_lines`)."""
        return {"id": self.id, "source": self.source, "position": self.position,
                "line": line, "field": self.field,
                "reason": self.reason, "time": to_iso(self.error_ts),
                "requeued": to_iso(self.requeued_ts), "bytes": len(self.raw),
                "raw_preview": self.preview()}


def list_dead_letters(log: OfflineLog, *, limit: int | None = None, source: str | None = None,
                      include_requeued: bool = False, after_id: int = 0,
                      newest_first: bool = False) -> list[DeadLetter]:
    """Dead letters in id order (``newest_first``: the latest ``limit`` of them, newest first)."""
    where: list[str] = ["id > ?"]
    params: list[Any] = [after_id]
    if not include_requeued:
        where.append("requeued_ts IS NULL")
    if source is not None:
        where.append("source = ?")
        params.append(source)
    sql = "SELECT id, source, position, raw, reason, error_ts, requeued_ts FROM dead_letters"
    sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC" if newest_first else " ORDER BY id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [DeadLetter(i, s, p, bytes(r), why, ts, rq)
            for i, s, p, r, why, ts, rq in log.conn.execute(sql, params)]


@dataclass(slots=True)
class RequeueResult:
    """Letters examined, re-queued (they pass now) and still bad; and what committing the
    re-queued ones did (``stored``, ``duplicates``)."""

    examined: int = 0
    requeued: int = 0
    still_bad: int = 0
    committed: BatchResult = field(default_factory=BatchResult)

    @property
    def stored(self) -> int:
        return self.committed.stored

    @property
    def duplicates(self) -> int:
        return self.committed.duplicates


def requeue(stores: Stores, *, source: str | None = None, batch_size: int = 5000) -> RequeueResult:
    """Re-validate open dead letters; commit the ones that pass, update the others' reasons."""
    out = RequeueResult()
    defs = stores.config.defs
    last_id = 0
    while True:
        rows = list_dead_letters(stores.log, source=source, limit=batch_size, after_id=last_id)
        if not rows:
            return out
        last_id = rows[-1].id
        groups: dict[tuple[str, str | None], list[DeadLetter]] = {}
        for d in rows:
            cfg = defs.sources.get(d.source)
            groups.setdefault((d.source, cfg.view if cfg is not None else None), []).append(d)
        for (src, view), letters in groups.items():
            out.committed.add(_requeue_group(stores, src, view, letters, out))
        out.examined += len(rows)


def _requeue_group(stores: Stores, source: str, view: str | None, letters: list[DeadLetter],
                   out: RequeueResult) -> BatchResult:
    committer = stores.committer(view)
    good = []
    good_ids: list[int] = []
    still_bad: list[tuple[str, int]] = []
    for d in letters:
        try:
            good.append((committer.decoder.decode(d.raw), d.position or ""))
            good_ids.append(d.id)
        except EventError as exc:
            still_bad.append((str(exc), d.id))
    now = now_micros()

    def mark(conn: sqlite3.Connection) -> None:
        conn.executemany("UPDATE dead_letters SET requeued_ts = ? WHERE id = ?",
                         [(now, i) for i in good_ids])
        conn.executemany("UPDATE dead_letters SET reason = ? WHERE id = ?", still_bad)

    empty: list[tuple[Record, str]] = []
    result = committer.commit(source, [], (), decoded=(good, empty), also=mark)
    out.requeued += len(good_ids)
    out.still_bad += len(still_bad)
    return result
