"""Redis online store: the monotonic rule applied atomically inside Redis by a Lua script.

Layout (``P`` is ``{NAME}``: the URL's ``?prefix=NAME``, ``asof`` by default, in braces;
``G`` is the current generation, a number kept in ``P:gen``, ``0`` before the first
rebuild)::

    P:gen                   the live generation G
    P:gencounter            INCR source of new generation numbers
    P:G:r:VIEW:ENTITY       one online row, a string: a fixed-width header then the JSON
                            features: 18 digits (event_timestamp - MIN_US), 19 digits seq,
                            18 digits (ingest_ts - MIN_US), features
    P:G:e:VIEW              set of the entity keys of VIEW (count() is SCARD)
    P:G:views               set of the views that have rows
    P:G:aggplan             the fingerprint of the aggregations the state was built for
    P:G:a:VIEW:ENTITY       aggregation state: a sorted set (all scores 0, so ordered by
                            member) of the raw rows of a source view still in its longest
                            window, each member 18 digits (event_timestamp - MIN_US), 19
                            digits seq, then the features JSON (see .aggstate)
    P:G:s:VIEW:ENTITY       the running summary of a no-window view's folded rows: a
                            19-digit mark then the summary JSON (see .redis_fold)
    P:G:applied             the highest log seq below which every batch has been applied
    P:G:pending             zset of applied batches above ``applied`` (member "lo:hi")
    P:G:applied:pNNNN       the same per shard, when the log is split into partition
    P:G:pending:pNNNN       shards (each shard has its own seqs; rows are shared)

The header compares as a string in the same order as ``(event_timestamp, seq)`` does as
numbers, so the Lua script needs no number parsing (Lua numbers are doubles and would
lose precision past 2**53 microseconds). One ``EVALSHA`` applies a whole chunk of rows:
a row replaces the stored one only if its header is greater, so concurrent writers
(several daemons, the feature server) can never move a key backward.

``applied`` only advances over a contiguous run of seqs: a batch whose first seq is not
next to it is parked in ``pending`` until the gap is filled. So when two processes
commit batches 1..10 and 11..20 to the log and the first dies before its Redis write,
``applied`` stays at 0 and :func:`~asof_stream.online.catch_up` replays 1..20 on the next
start (a plain maximum would say 20 and lose 1..10).

``replace_all`` (materialize) writes the new rows into a fresh generation nobody reads,
then switches ``P:gen`` in one script and deletes the old generation: readers see the
old rows or the new ones, never a half-filled store. Reads are one ``MGET`` of
``P:gen`` plus the row keys, so a read that raced a switch sees a generation mismatch
and retries. Batches applied while the rebuild ran land in the old generation; their
seqs are above the rebuild's high-water mark, so the ``catch_up`` that
:func:`~asof_stream.online.materialize` runs after ``replace_all`` replays them.

Prefixes never collide, even when one nests in another (``a`` and ``a:0``): the name is
closed by ``}`` and may not hold braces, and it may not hold glob characters either
(:mod:`.redis_url` checks it); every ``SCAN MATCH`` pattern escapes the literal part
anyway, so a rebuild only ever deletes keys of its own prefix.

Every Redis failure is raised as :class:`~asof_stream.online.base.OnlineUnavailable`
(an OSError), with the URL redacted; the log stays the truth and
:mod:`.heal` catches the store up when Redis answers again.

The keys of one prefix are built inside the scripts, so this needs a standalone Redis
(or one primary): it is not written for Redis Cluster (though the braces would keep
one prefix on one slot).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from ..redaction import redact_in, redact_url
from ..timestamps import MIN_US
from .aggread import ListRows, WindowRows
from .aggstate import AggBatch, AggPlan, fingerprint, member, ts_bound, unmember
from .aggsummary import Summary
from .base import OnlineRow, OnlineUnavailable
from .redis_fold import fold_due, pack_summary, unpack_summary
from .redis_scripts import APPLIED, APPLY, APPLY_AGG, COUNT, FOLD, FOLD_READ, SWITCH
from .redis_url import glob_escape, split_url

HEADER = 55  # 18 + 19 + 18 digits
ORDER = 37  # the (event_timestamp, seq) part of the header
CHUNK = 2000  # rows per script call: bounds how long one call holds Redis

def pack(row: OnlineRow) -> bytes:
    """The stored value of one row: the ordered fixed-width header, then the features."""
    return (f"{row.event_ts - MIN_US:018d}{row.seq:019d}{row.ingest_ts - MIN_US:018d}"
            + row.features).encode()


def unpack(view: str, entity: str, value: bytes) -> OnlineRow:
    return OnlineRow(view, entity, int(value[:18]) + MIN_US, int(value[18:37]),
                     int(value[37:55]) + MIN_US, value[55:].decode())


class RedisOnlineStore:
    """The shared online store; writes are applied after the log commit (not transactional)."""

    transactional = False
    agg_plan: AggPlan | None = None

    def __init__(self, url: str, *, track: str = "", **client_options: Any) -> None:
        self.url = url
        #: whose log seqs ``applied`` counts: "" for the one log, ":p0003" for a shard's
        self.track = track
        #: no-window aggregations are folded (:mod:`.redis_fold`), over one log and over
        #: shards (an entity's rows all come from its partition's shard: its summary's
        #: mark is that shard's seq)
        self.folds_aggregations = True
        plain, name = split_url(url)
        self.prefix = "{" + name + "}:"
        options: dict[str, Any] = {"socket_connect_timeout": 5, "socket_timeout": 30,
                                   "health_check_interval": 30}
        options.update(client_options)
        self.client: redis.Redis = redis.Redis.from_url(plain, **options)
        self._apply = self.client.register_script(APPLY)
        self._switch = self.client.register_script(SWITCH)
        self._applied = self.client.register_script(APPLIED)
        self._count = self.client.register_script(COUNT)
        self._apply_agg = self.client.register_script(APPLY_AGG)
        self._fold = self.client.register_script(FOLD)
        self._fold_read = self.client.register_script(FOLD_READ)
        self._gen_key = self.prefix + "gen"
        self._gen = b"0"  # the generation last seen; reads check it in the same MGET

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        """Raise every Redis failure as :class:`OnlineUnavailable`, the URL redacted."""
        try:
            yield
        except redis.RedisError as exc:
            raise OnlineUnavailable(f"Redis online store {redact_url(self.url)}:"
                                    f" {redact_in(str(exc), self.url)}") from None

    # -- writes ------------------------------------------------------------------------

    def attach_to(self, conn: Any) -> None:
        raise TypeError("the Redis online store is not transactional")

    def write_in_transaction(self, conn: Any, rows: list[OnlineRow], high_seq: int,
                             agg: AggBatch | None = None) -> None:
        raise TypeError("the Redis online store is not transactional")

    def apply(self, rows: list[OnlineRow], high_seq: int, low_seq: int | None = None,
              agg: AggBatch | None = None) -> None:
        """Apply rows with the monotonic rule; then mark ``low_seq..high_seq`` applied.

        ``low_seq`` is the first log seq of the batch (None: the batch follows on from
        whatever is applied). ``agg``: aggregation rows, written first; the entities
        of folding views due a fold are folded last (:mod:`.redis_fold`), once the
        batch is marked applied.
        """
        with self._unavailable():
            if agg is not None:
                self._write_agg(agg)
            self._apply_rows(rows, high_seq, 0 if low_seq is None else low_seq)
            plan = self.agg_plan
            if agg is not None and plan is not None and plan.fold:
                fold_due(self, [e for e in agg.evict if e[0] in plan.fold])

    def _apply_rows(self, rows: list[OnlineRow], high_seq: int, low: int) -> None:
        p = self.prefix
        if not rows:
            self._apply(args=[p, high_seq, low, self.track])
            return
        for start in range(0, len(rows), CHUNK):
            part = rows[start:start + CHUNK]
            last = start + CHUNK >= len(rows)
            args: list[Any] = [p, high_seq if last else -1, low, self.track]
            for r in part:
                args.append(r.view)
                args.append(r.entity)
                args.append(pack(r))
            self._apply(args=args)

    def _write_agg(self, agg: AggBatch) -> None:
        # The eviction bound rides on the entity's first row: evicted before it is added.
        # A folding view's rows are folded instead, after the batch is marked applied;
        # their "s" bound skips a row its entity's summary already holds.
        fold = self.agg_plan.fold if self.agg_plan is not None else {}
        bounds = {(v, e): ts_bound(c + 1) for v, e, c in agg.evict if v not in fold}
        for start in range(0, len(agg.rows), CHUNK):
            args: list[Any] = [self.prefix]
            for r in agg.rows[start:start + CHUNK]:
                args += [r[0], r[1], member(r),
                         "s" if r[0] in fold else bounds.pop((r[0], r[1]), "")]
            self._apply_agg(args=args)

    def agg_fingerprint(self) -> int:
        """The :func:`~.aggstate.fingerprint` of the plan the state was rebuilt for."""
        with self._unavailable():
            gen, _ = self._applied(args=[self.prefix, self.track])
            value = self.client.get(f"{self.prefix}{gen.decode()}:aggplan")
        return int(value) if value else 0

    def agg_rows(self, view: str, entities: list[str], lo: int | None,
                 hi: int) -> list[list[tuple[int, int, str]]]:
        """Per entity, the stored rows of ``view`` with ``lo < event_timestamp <= hi``
        (``lo`` None: no lower edge), in (event_timestamp, seq) order."""
        return [r for r, _ in self._agg_read(view, entities, lo, hi, rows=True, summaries=False)]

    def agg_summaries(self, view: str, entities: list[str]) -> list[Summary | None]:
        """Per entity, the running summary of its folded rows of ``view`` (None: none)."""
        return [s for _, s in self._agg_read(view, entities, None, 0, rows=False,
                                              summaries=True)]

    def agg_windows(self, view: str, entities: list[str], lo: int | None,
                    hi: int) -> list[WindowRows]:
        """The rows of :meth:`agg_rows`, read in one round trip, as
        :class:`~.aggread.WindowRows`."""
        return [ListRows(rows) for rows in self.agg_rows(view, entities, lo, hi)]

    def agg_state(self, view: str, entities: list[str], lo: int | None, hi: int,
                  summaries: bool, *, rows: bool = True
                  ) -> list[tuple[WindowRows, Summary | None]]:
        """Per entity, its rows of :meth:`agg_windows` and (``summaries``) its summary,
        read in one MULTI/EXEC: a fold between the two reads cannot count a row twice
        or not at all."""
        return [(ListRows(r), s) for r, s in self._agg_read(view, entities, lo, hi, rows=rows,
                                                             summaries=summaries)]

    def _agg_read(self, view: str, entities: list[str], lo: int | None, hi: int, *,
                  rows: bool, summaries: bool
                  ) -> list[tuple[list[tuple[int, int, str]], Summary | None]]:
        """The one read of rows and/or summaries, in the live generation (retried when it
        changes under the read); a MULTI/EXEC when summaries are read."""
        start = "-" if lo is None else "[" + ts_bound(lo + 1)
        stop = "(" + ts_bound(hi + 1)
        with self._unavailable():
            for _ in range(5):
                gen = self._gen
                base = f"{self.prefix}{gen.decode()}:"
                pipe = self.client.pipeline(transaction=summaries)
                pipe.get(self._gen_key)
                for e in entities:
                    if rows:
                        pipe.zrangebylex(f"{base}a:{view}:{e}", start, stop)
                    if summaries:
                        pipe.get(f"{base}s:{view}:{e}")
                res: list[Any] = pipe.execute()
                live: bytes = res[0] or b"0"
                if live == gen:
                    it = iter(res[1:])
                    out: list[tuple[list[tuple[int, int, str]], Summary | None]] = []
                    for _e in entities:
                        found = [unmember(m) for m in next(it)] if rows else []
                        out.append((found, unpack_summary(next(it)) if summaries else None))
                    return out
                self._gen = live
        raise OnlineUnavailable(f"Redis online store {redact_url(self.url)}: the generation"
                                " kept changing during a read")

    def replace_all(self, rows: Iterable[OnlineRow], high_seq: int,
                    agg: AggBatch | None = None, tracks: dict[str, int] | None = None) -> None:
        """Build a new generation off to the side, switch to it, drop the old one.

        ``tracks``: the applied seq of each track (several shards' logs) instead of
        ``high_seq`` for this store's own.
        """
        with self._unavailable():
            self._replace_all(rows, tracks if tracks is not None else {self.track: high_seq},
                              agg)

    def _replace_all(self, rows: Iterable[OnlineRow], applied: dict[str, int],
                     agg: AggBatch | None = None) -> None:
        p = self.prefix
        gen = int(self.client.incr(p + "gencounter"))
        base = f"{p}{gen}:"
        self._delete_generation(str(gen))  # leftovers of a crashed earlier attempt
        pipe = self.client.pipeline(transaction=False)
        pending = 0
        views: set[str] = set()
        for r in rows:
            pipe.set(f"{base}r:{r.view}:{r.entity}", pack(r))
            pipe.sadd(f"{base}e:{r.view}", r.entity)
            views.add(r.view)
            pending += 1
            if pending >= CHUNK:
                pipe.execute()
                pending = 0
        if views:
            pipe.sadd(base + "views", *sorted(views))
        pipe.set(base + "aggplan", str(fingerprint(self.agg_plan)))
        if agg is not None:
            for a in agg.rows:  # already within the windows: no eviction needed
                pipe.zadd(f"{base}a:{a[0]}:{a[1]}", {member(a): 0})
                pending += 1
                if pending >= CHUNK:
                    pipe.execute()
                    pending = 0
            # every row up to the rebuild's seq is in the state: that is the mark (over
            # shards, that of the shard the entity's rows come from)
            marks = agg.summary_tracks or [self.track] * len(agg.summaries)
            for (view, ent, text), track in zip(agg.summaries, marks, strict=True):
                pipe.set(f"{base}s:{view}:{ent}", pack_summary(applied.get(track, 0), text))
                pending += 1
                if pending >= CHUNK:
                    pipe.execute()
                    pending = 0
        pipe.execute()
        old = self._switch(args=[p, gen, *[x for kv in sorted(applied.items()) for x in kv]])
        old_gen = old.decode() if isinstance(old, bytes) else str(old)
        self._delete_generation(old_gen)
        # Generations older than this one that a crashed rebuild may have left behind.
        for g in self._generations():
            if g != str(gen) and g.isdigit() and int(g) < gen:
                self._delete_generation(g)

    def _scan(self, literal: str, tail: str = "*") -> Iterator[bytes]:
        """Keys that start with ``literal`` (escaped, never a pattern) then match ``tail``."""
        yield from self.client.scan_iter(match=glob_escape(literal) + tail, count=1000)

    def _generations(self) -> set[str]:
        found: set[str] = set()
        for tail in ("*:views", "*:applied*"):
            for key in self._scan(self.prefix, tail):
                g = key.decode()[len(self.prefix):].split(":", 1)[0]
                if g.isdigit():
                    found.add(g)
        return found

    def _delete_generation(self, gen: str) -> None:
        if not gen.isdigit():
            return
        batch: list[bytes] = []
        for key in self._scan(f"{self.prefix}{gen}:"):
            batch.append(key)
            if len(batch) >= 1000:
                self.client.unlink(*batch)
                batch = []
        if batch:
            self.client.unlink(*batch)

    # -- reads -------------------------------------------------------------------------

    def applied_seq(self) -> int:
        with self._unavailable():
            _gen, applied = self._applied(args=[self.prefix, self.track])
        return int(applied)

    def get(self, view: str, entities: list[str]) -> list[OnlineRow | None]:
        """One MGET of the generation and the rows; retried if a rebuild switched it."""
        with self._unavailable():
            for _ in range(5):
                gen = self._gen
                base = f"{self.prefix}{gen.decode()}:r:{view}:"
                values: list[Any] = self.client.mget([self._gen_key,
                                                      *[base + e for e in entities]])
                live: bytes = values[0] or b"0"
                if live == gen:
                    return [None if v is None else unpack(view, e, v)
                            for e, v in zip(entities, values[1:], strict=True)]
                self._gen = live
        raise OnlineUnavailable(f"Redis online store {redact_url(self.url)}: the generation"
                                " kept changing during a read")

    def count(self, view: str) -> int:
        with self._unavailable():
            return int(self._count(args=[self.prefix, view]))

    def entries(self, view: str | None = None) -> Iterator[OnlineRow]:
        with self._unavailable():
            yield from self._entries(view)

    def _entries(self, view: str | None) -> Iterator[OnlineRow]:
        gen, _ = self._applied(args=[self.prefix, self.track])
        base = f"{self.prefix}{gen.decode()}:"
        if view is not None:
            views = [view]
        else:
            members: Any = self.client.smembers(base + "views")
            views = sorted(v.decode() for v in members)
        for v in views:
            batch: list[str] = []
            for ent in self.client.sscan_iter(f"{base}e:{v}", count=1000):
                batch.append(ent.decode())
                if len(batch) >= 1000:
                    yield from self._rows(base, v, batch)
                    batch = []
            if batch:
                yield from self._rows(base, v, batch)

    def _rows(self, base: str, view: str, entities: list[str]) -> Iterator[OnlineRow]:
        values: list[Any] = self.client.mget([f"{base}r:{view}:{e}" for e in entities])
        for e, v in zip(entities, values, strict=True):
            if v is not None:
                yield unpack(view, e, v)

    def ping(self) -> bool:
        with self._unavailable():
            return bool(self.client.ping())

    def close(self) -> None:
        self.client.close()
