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
and the summary (one pipeline for every entity a batch makes due), and applied by
:data:`~.redis_scripts.FOLD` (one more pipeline) only where the summary is still the
one read and the rows to fold still the ones read (the script selects them again and
compares their SHA-1): the summary written and the members deleted in one atomic step,
or nothing (the entity is folded at a later write). Late events arrive as rows above
the mark and are folded like any other (folding is order-free). ``materialize``
rebuilds the summaries from the log with the rebuild's seq as their mark.

Over partition shards (a store with a ``track``) the same rules hold per shard: the
store holds several shards' seq spaces, but each entity's rows all come from one shard
(its key's partition: the sharded committer dead-letters a misrouted event), and that
shard's daemon is the one that writes and folds it. So an entity's summary mark is a
seq of that shard, raised to that shard's applied seq (``applied`` + its track) when
it folds, and compared only with that shard's rows when they are replayed. A rebuild
from every shard's log (:func:`~asof_stream.ingest.sharded_commit.materialize_shards`)
gives each summary its own shard's rebuild seq as its mark.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from .aggstate import ts_bound, unmember
from .aggsummary import Summary

if TYPE_CHECKING:
    from .redis import RedisOnlineStore

MARK = 19  # digits of the mark
FOLD_CHUNK = 500  # entities per script call


def pack_summary(mark: int, summary_json: str) -> str:
    return f"{mark:019d}{summary_json}"


def unpack_summary(value: bytes | None) -> Summary | None:
    return None if value is None else Summary.loads(value[MARK:].decode())


def fold_due(store: RedisOnlineStore, due: list[tuple[str, str, int]]) -> int:
    """Fold each (view, entity, cutoff) of ``due``: its rows with event_timestamp at or
    below the cutoff and seq at or below the applied seq; returns how many entities
    were folded (the others are left as they are).

    Two round trips for the whole batch: one pipeline of :data:`~.redis_scripts.
    FOLD_READ` calls reads the applied seq and every due entity's rows and summary, one
    pipeline of :data:`~.redis_scripts.FOLD` calls applies the summaries (each call
    :data:`FOLD_CHUNK` entities, so no script holds the server long)."""
    plan = store.agg_plan
    if plan is None or not due:
        return 0
    chunks = [due[i:i + FOLD_CHUNK] for i in range(0, len(due), FOLD_CHUNK)]
    bounds = [ts_bound(cut + 1) for _v, _e, cut in due]
    pipe = store.client.pipeline(transaction=False)
    for c, part in enumerate(chunks):
        args: list[Any] = [store.prefix, store.track]
        for i, (view, ent, _cut) in enumerate(part):
            args += [f"{view}:{ent}", bounds[c * FOLD_CHUNK + i]]
        store._fold_read(args=args, client=pipe)
    read: list[Any] = pipe.execute()
    pipe = store.client.pipeline(transaction=False)
    calls = 0
    for c, (part, res) in enumerate(zip(chunks, read, strict=True)):
        gen: bytes = res[0]
        mark = f"{int(res[1]):019d}".encode()
        args = [store.prefix, gen, mark]
        for i, (view, ent, _cut) in enumerate(part):
            members: list[bytes] = [m for m in res[2 + 2 * i] if m[18:37] <= mark]
            if not members:
                continue
            old: bytes = res[3 + 2 * i] or b""
            summary = Summary() if not old else Summary.loads(old[MARK:].decode())
            plan.folder(view).fold(summary, [unmember(m) for m in members])
            new = max(old[:MARK], mark) + summary.dumps().encode()
            args += [view, ent, old, new, bounds[c * FOLD_CHUNK + i], len(members),
                     hashlib.sha1(b"\n".join(members)).hexdigest()]
        if len(args) > 3:
            store._fold(args=args, client=pipe)
            calls += 1
        store._gen = gen
    return sum(max(int(n), 0) for n in pipe.execute()) if calls else 0
