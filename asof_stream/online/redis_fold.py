"""Folding on the Redis online store: the no-window aggregations' rows out of the
longest finite window become one running summary per entity (:mod:`.aggsummary`), as
on SQLite, so an entity's sorted set stays within that window.

Layout (beside :mod:`.redis`'s)::

    P:G:s:VIEW:ENTITY   the entity's summary: 19 digits, its mark (a log seq), then the
                        summary JSON (:meth:`~.aggsummary.Summary.dumps`)

The Redis store is written after the log's commit and marked applied after that, so a
crash in between replays the log tail above the applied seq (:func:`~.materialize.
catch_up`). Folding is kept exact under replays by two rules:

- only rows with seq at or below the applied seq are folded, and the summary's mark is
  raised to that applied seq: every row at or below it was written (to the sorted set
  or the summary) before it was marked applied;
- a row written again with seq at or below the mark is not added back
  (:data:`~.redis_scripts.APPLY_AGG`): it is already in the sorted set or the summary.

The summaries are computed here in Python from one read of the rows, the applied seq
and the summary, and applied by :data:`~.redis_scripts.FOLD` only where the summary is
still the one read and every folded member still there: the summary written and the
members deleted in one atomic step, or nothing (the entity is folded at a later
write). Late events arrive as rows above the mark and are folded like any other
(folding is order-free). ``materialize`` rebuilds the summaries from the log with the
rebuild's seq as their mark.

A store that counts a shard's seqs (``track``) does not fold: its sorted sets hold rows
of several shards' seq spaces, which one mark cannot order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .aggstate import ts_bound, unmember
from .aggsummary import Summary

if TYPE_CHECKING:
    from .redis import RedisOnlineStore

MARK = 19  # digits of the mark
FOLD_CHUNK = 500  # entities per read and per script call


def pack_summary(mark: int, summary_json: str) -> str:
    return f"{mark:019d}{summary_json}"


def unpack_summary(value: bytes | None) -> Summary | None:
    return None if value is None else Summary.loads(value[MARK:].decode())


def fold_due(store: RedisOnlineStore, due: list[tuple[str, str, int]]) -> int:
    """Fold each (view, entity, cutoff) of ``due``: its rows with event_timestamp at or
    below the cutoff and seq at or below the applied seq; returns how many entities
    were folded (the others are left as they are)."""
    plan = store.agg_plan
    if plan is None or not due:
        return 0
    done = 0
    for start in range(0, len(due), FOLD_CHUNK):
        part = due[start:start + FOLD_CHUNK]
        for _ in range(2):  # once more if a rebuild switched the generation meanwhile
            gen = store._gen
            g = f"{store.prefix}{gen.decode()}:"
            pipe = store.client.pipeline(transaction=False)
            pipe.get(store._gen_key)
            pipe.get(f"{g}applied{store.track}")
            for view, ent, cut in part:
                pipe.zrangebylex(f"{g}a:{view}:{ent}", "-", "(" + ts_bound(cut + 1))
                pipe.get(f"{g}s:{view}:{ent}")
            res: list[Any] = pipe.execute()
            live: bytes = res[0] or b"0"
            if live != gen:
                store._gen = live
                continue
            mark = f"{int(res[1] or 0):019d}".encode()
            args: list[Any] = [store.prefix, gen]
            for i, (view, ent, _cut) in enumerate(part):
                members: list[bytes] = [m for m in res[2 + 2 * i] if m[18:37] <= mark]
                if not members:
                    continue
                old: bytes = res[3 + 2 * i] or b""
                summary = Summary() if not old else Summary.loads(old[MARK:].decode())
                plan.folder(view).fold(summary, [unmember(m) for m in members])
                new = max(old[:MARK], mark) + summary.dumps().encode()
                args += [view, ent, old, new, len(members), *members]
            if len(args) > 2:
                done += max(int(store._fold(args=args)), 0)
            break
    return done
