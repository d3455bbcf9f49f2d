"""Listing and re-queueing dead letters (docs/events.md).

A re-queue validates each open dead letter again with the current definitions. The
ones that pass are committed through :meth:`Committer.commit` and marked
``requeued_ts`` in that same transaction; the others stay open with their reason
updated. Re-queued events keep their original source and position.

Over partition shards (:func:`list_all`, :func:`requeue_all`) the letters are listed
from every shard, newest first, each naming its shard, and a re-queue runs shard by
shard, each in its own transactions. A letter that passes validation but whose entity
routes to another partition than its shard's stays a dead letter that says so, as the
daemon would have rejected it (a shard holds only the entities routed to it).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import Config
from ..events import Event, EventError
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
    #: over partition shards: the shard it is in (``id`` is then that shard's own)
    shard: str | None = None

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
        out = {"id": self.id, "source": self.source, "position": self.position,
               "line": line, "field": self.field,
               "reason": self.reason, "time": to_iso(self.error_ts),
               "requeued": to_iso(self.requeued_ts), "bytes": len(self.raw),
               "raw_preview": self.preview()}
        if self.shard is not None:
            out["shard"] = self.shard
        return out


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


#: what else an event that validates must pass to be re-queued: None, or why not
Check = Callable[[Event], str | None]


def requeue(stores: Stores, *, source: str | None = None, batch_size: int = 5000,
            check: Check | None = None) -> RequeueResult:
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
            out.committed.add(_requeue_group(stores, src, view, letters, out, check))
        out.examined += len(rows)


def _requeue_group(stores: Stores, source: str, view: str | None, letters: list[DeadLetter],
                   out: RequeueResult, check: Check | None = None) -> BatchResult:
    committer = stores.committer(view)
    good = []
    good_ids: list[int] = []
    still_bad: list[tuple[str, int]] = []
    for d in letters:
        try:
            ev = committer.decoder.decode(d.raw)
        except EventError as exc:
            still_bad.append((str(exc), d.id))
            continue
        why = check(ev) if check is not None else None
        if why is not None:
            still_bad.append((why, d.id))
            continue
        good.append((ev, d.position or ""))
        good_ids.append(d.id)
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


def list_all(config: Config, *, limit: int | None = None, source: str | None = None,
             include_requeued: bool = False) -> tuple[list[DeadLetter], int]:
    """A config's dead letters newest first (over shards: every shard's, by time, each
    naming its shard), and how many are open in all."""
    from ..offline.log import open_log
    from ..offline.shards import existing_shards, is_sharded, shard_name
    from ..stores import open_stores

    if not is_sharded(config):
        with open_stores(config) as stores:
            rows = list_dead_letters(stores.log, limit=limit, source=source,
                                     include_requeued=include_requeued, newest_first=True)
            return rows, stores.log.dead_letter_count(open_only=True)
    merged: list[DeadLetter] = []
    open_count = 0
    for p, path in existing_shards(config).items():
        with open_log(path, readonly=True) as log:
            merged += [replace(d, shard=shard_name(p)) for d in list_dead_letters(
                log, limit=limit, source=source, include_requeued=include_requeued,
                newest_first=True)]
            open_count += log.dead_letter_count(open_only=True)
    merged.sort(key=lambda d: (d.error_ts, d.shard or "", d.id), reverse=True)
    return merged[:limit] if limit is not None else merged, open_count


def requeue_all(config: Config, *, source: str | None = None,
                batch_size: int = 5000) -> RequeueResult:
    """:func:`requeue` on a config's log, or on each partition shard in turn (results
    added up); over shards an event must also route to the shard it is in."""
    from ..offline.shards import Router, existing_shards, is_sharded, partition_count
    from ..stores import open_stores
    from .sharded_commit import misrouted, open_shard

    if not is_sharded(config):
        with open_stores(config) as stores:
            return requeue(stores, source=source, batch_size=batch_size)
    total = RequeueResult()
    partitions = partition_count(config)
    if partitions is None:
        return total
    route = Router(partitions)
    for p in existing_shards(config):
        def check(ev: Event, p: int = p) -> str | None:
            want = route(ev.entity)
            return None if want == p else misrouted(ev.view, ev.entity, want, p)

        with open_shard(config, p, partitions) as stores:
            r = requeue(stores, source=source, batch_size=batch_size, check=check)
        total.examined += r.examined
        total.requeued += r.requeued
        total.still_bad += r.still_bad
        total.committed.add(r.committed)
    return total
