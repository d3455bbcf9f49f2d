"""Online state of windowed aggregations: the raw rows of each source view still inside
its longest window, per entity, kept by the commit path beside the latest-row upserts.

An aggregation's value is computed at read time from these rows (:mod:`.aggread`), so
the window slides with the clock even when no event arrives. Rows are keyed by
``(view, entity, event_timestamp, seq)``: writing one twice (a replay, a catch-up after a
crash) changes nothing, and any arrival order gives the same set of rows. Rows that
left the longest window of their view as of the write (``event_timestamp <= now - w``)
are not stored and are evicted for the entities a batch touches (at most once per
``w / 16`` per entity and process); reads filter on the window exactly, so rows not yet
evicted never count.

A source view with a feature that has no window (all history up to ``t`` counts) keeps,
in a store that folds (``folds_aggregations``: SQLite, and Redis over one log or over
partition shards, see :mod:`.redis_fold`), one running summary per entity
(:mod:`.aggsummary`) instead of its whole history: when an entity is due (at most once
per ``w / 16`` of its longest finite window ``w``, or per :data:`FOLD_EVERY` when it has
none), its rows at or below ``now - w`` (or ``now``) are folded into the summary and
deleted, atomically. Rows arrive as rows, late ones too, so a write never reads the
summary; a read adds every row still stored to the summary, exactly. A store that does
not fold keeps every row of such views.

Rebuilding (:func:`build_state`, run by ``materialize``) selects the same rows from the
log (both tiers) and folds those at or below the fold cutoff, so rebuilt and incremental
states read the same values (I2).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..definitions import Definitions
from ..timestamps import MIN_US
from .aggsummary import Folder, Summary, folds

#: One aggregation row: (view, entity, event_timestamp, seq, ingest_ts, features JSON),
#: the shape the SQLite store inserts as it is.
AggRow = tuple[str, str, int, int, int, str]

if TYPE_CHECKING:
    from ..offline.log import OfflineLog


FOLD_EVERY = 3_600_000_000  # µs: how often a view with no finite window folds an entity
NO_LOW = -(2**63)  # a view that keeps all history: every row is above it
NOT_KEPT = 2**63  # a view no aggregation reads: no row is above it


@dataclass(frozen=True)
class AggPlan:
    """What the online store keeps for aggregations: per source view, its longest window
    (None: all history)."""

    keep: dict[str, int | None]
    defs: Definitions = field(compare=False, repr=False)
    #: per source view whose rows are folded into a running summary (its no-window
    #: features, :mod:`.aggsummary`), the longest finite window of its features (None:
    #: none); empty when the store keeps every row of such views instead
    fold: dict[str, int | None] = field(default_factory=dict)
    #: the entities this process evicted (or folded) less than a period ago
    evicted: Evicted = field(default_factory=lambda: Evicted(), compare=False, repr=False)
    folders: dict[str, Folder] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_defs(cls, defs: Definitions, *, folding: bool = False) -> AggPlan | None:
        """The plan of ``defs``; ``folding``: the store keeps running summaries for the
        no-window features (else every row of their views)."""
        keep: dict[str, int | None] = {}
        finite: dict[str, int] = {}
        for agg in defs.aggregations.values():
            w = agg.max_window
            if agg.source in keep:
                cur = keep[agg.source]
                keep[agg.source] = None if cur is None or w is None else max(cur, w)
            else:
                keep[agg.source] = w
            for f in agg.features:
                if f.window is not None:
                    finite[agg.source] = max(finite.get(agg.source, 0), f.window)
        fold = {v: finite.get(v) for v, w in keep.items()
                if folding and w is None and folds(defs, v)}
        return cls(keep, defs, fold) if keep else None

    def folder(self, view: str) -> Folder:
        f = self.folders.get(view)
        if f is None:
            f = self.folders[view] = Folder(self.defs, view)
        return f

    def fold_cutoff(self, view: str, now: int) -> int:
        """The event time at or below which a folding view's rows are folded as of
        ``now``: out of its longest finite window, or (none) up to ``now``."""
        w = self.fold[view]
        return now if w is None else now - w

    @property
    def fingerprint(self) -> int:
        """A number naming what is kept, stored beside the state: a different one means
        the state was kept for other definitions and is rebuilt."""
        return fingerprint(self)

    def cutoffs(self, now: int) -> dict[str, int | None]:
        """Per source view, the event time at or below which rows are no longer needed."""
        return {v: None if w is None else now - w for v, w in self.keep.items()}

    def lows(self, now: int) -> dict[str, int]:
        """Per source view, the event time a row must be above to be kept as of ``now``."""
        return {v: (NO_LOW if c is None else c) for v, c in self.cutoffs(now).items()}

    def batch(self, rows: Iterable[AggRow], now: int,
              entities: Iterable[tuple[str, str]] | None = None, *,
              filtered: bool = False) -> AggBatch | None:
        """The rows of source views that are still needed as of ``now``, and the
        entities whose old rows to evict.

        An entity is evicted at most once per sixteenth of its view's window by this
        process (so a busy entity does not cost a delete per batch): its stored rows are
        then within 17/16 of the longest window as of its last write. ``entities``: the
        (view, entity) keys of the rows, when the caller has them at hand; ``filtered``:
        the rows are already those above :meth:`lows`.
        """
        cut = self.cutoffs(now)
        lows = self.lows(now)
        out = list(rows) if filtered else [r for r in rows if r[2] > lows.get(r[0], NOT_KEPT)]
        if not out:
            return None
        out.sort()  # by (view, entity, event_timestamp, seq), unique: B-tree order
        keys = dict.fromkeys((r[0], r[1]) for r in out) if entities is None else entities
        return AggBatch(out, cut, self._evictions(keys, lows, now))

    def batch_in_log(self, first_seq: int, last_seq: int, now: int,
                     entities: Iterable[tuple[str, str]],
                     views: Iterable[str]) -> AggBatch | None:
        """Like :meth:`batch` for a store written in the log's transaction: the rows are
        the log's rows with seq in ``first_seq..last_seq`` above :meth:`lows`, which the
        store copies from the log table itself (no row passes through Python).
        ``entities``: the (view, entity) keys of those rows; ``views``: their views."""
        lows = self.lows(now)
        kept = {v: lows[v] for v in views if v in lows}
        if not kept:
            return None
        return AggBatch([], self.cutoffs(now), self._evictions(entities, lows, now),
                        log_range=(first_seq, last_seq), lows=kept)

    def _evictions(self, keys: Iterable[tuple[str, str]], lows: dict[str, int],
                   now: int) -> list[tuple[str, str, int]]:
        """(view, entity, cutoff) of the entities of ``keys`` due an eviction: their rows
        at or below the cutoff are deleted, or for a folding view folded into its
        summary and deleted (at most once per ``FOLD_EVERY`` when it has no finite
        window).

        Which keys are due is one set difference against those evicted less than a
        period ago (a batch of entities not due costs no Python loop over them); those
        leave that set when their period is over, a whole batch's worth at a time."""
        periods: dict[str, tuple[int, int]] = {}  # view -> (cutoff now, period)
        for view, w in self.keep.items():
            if w is None:
                if view not in self.fold:
                    continue
                f = self.fold[view]
                periods[view] = (self.fold_cutoff(view, now),
                                 FOLD_EVERY if f is None else max(f // 16, 1))
            else:
                periods[view] = (lows[view], max(w // 16, 1))
        done = self.evicted
        last = done.last
        for view, (low, every) in periods.items():
            gens = done.gens.get(view)
            while gens and low - gens[0][0] >= every:  # due again: forget them
                cut, ks = gens.popleft()
                for k in ks:
                    if last.get(k) == cut:
                        del last[k]
        if len(last) > 1_000_000:  # bounded memory: forget, and evict again
            last.clear()
            done.gens.clear()
        fresh = (keys.keys() if isinstance(keys, dict) else set(keys)) - last.keys()
        evict: list[tuple[str, str, int]] = []
        by_view: dict[str, list[tuple[str, str]]] = {}
        for k in fresh:
            p = periods.get(k[0])
            if p is not None:
                evict.append((k[0], k[1], p[0]))
                last[k] = p[0]
                by_view.setdefault(k[0], []).append(k)
        for view, ks in by_view.items():
            done.gens.setdefault(view, deque()).append((periods[view][0], ks))
        return evict


@dataclass
class Evicted:
    """What this process has evicted and is not due again yet: per key the cutoff it
    was evicted at, and per view those keys in the order they were evicted."""

    last: dict[tuple[str, str], int] = field(default_factory=dict)
    gens: dict[str, deque[tuple[int, list[tuple[str, str]]]]] = field(default_factory=dict)


def fingerprint(plan: AggPlan | None) -> int:
    """0 for no aggregations, else a 62-bit hash of the kept windows."""
    if plan is None:
        return 0
    import hashlib
    import json

    keep = sorted(plan.keep.items(), key=lambda kv: kv[0])
    # a plan without folding views hashes as before folding existed
    text = json.dumps(keep if not plan.fold else
                      {"keep": keep, "fold": sorted(plan.fold.items(), key=lambda kv: kv[0])})
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16) or 1


@dataclass
class AggBatch:
    """Rows to add to the aggregation state, and the eviction cutoff of each source view."""

    rows: list[AggRow]
    cutoffs: dict[str, int | None] = field(default_factory=dict)
    #: (view, entity, cutoff): delete the entity's rows at or below the cutoff
    evict: list[tuple[str, str, int]] = field(default_factory=list)
    #: (first seq, last seq): the rows to add are the log's rows of this range with
    #: ``event_timestamp`` above ``lows[view]``, copied by the store in the log's
    #: transaction (``rows`` is then empty)
    log_range: tuple[int, int] | None = None
    lows: dict[str, int] = field(default_factory=dict)
    #: (view, entity, summary JSON) to store as they are (a rebuild)
    summaries: list[tuple[str, str, str]] = field(default_factory=list)
    #: per summary, the track (shard) whose rebuild seq is its mark (empty: the store's)
    summary_tracks: list[str] = field(default_factory=list)


def member(r: AggRow) -> bytes:
    """A row as a Redis sorted-set member: 18 digits (event_timestamp - MIN_US), 19 digits
    seq, then the features JSON; members sort as (event_timestamp, seq) do."""
    return f"{r[2] - MIN_US:018d}{r[3]:019d}{r[5]}".encode()


def ts_bound(ts: int) -> str:
    """The member prefix of the first row at event time ``ts``."""
    return f"{ts - MIN_US:018d}"


def unmember(m: bytes) -> tuple[int, int, str]:
    return int(m[:18]) + MIN_US, int(m[18:37]), m[37:].decode()


def build_rows(log: OfflineLog, defs: Definitions, plan: AggPlan, high: int | None,
               now: int) -> list[AggRow]:
    """The aggregation state rebuilt from the log (head and sealed segments) up to seq
    ``high`` (None: all of it): the rows of each source view still needed as of ``now``."""
    import pyarrow.compute as pc

    from ..events import dumps_values
    from ..offline.scan import BASE_COLUMNS, scan_view

    out: list[AggRow] = []
    for view, cutoff in plan.cutoffs(now).items():
        for tier in scan_view(log, defs, view, max_seq=high):
            t = tier.table
            if cutoff is not None:
                t = t.filter(pc.greater(t.column("event_timestamp"), cutoff))
            if not t.num_rows:
                continue
            feats = [n for n in t.column_names if n not in BASE_COLUMNS]
            names = [n[len("feature:"):] if n.startswith("feature:") else n for n in feats]
            cols = [t.column(n).to_pylist() for n in feats]
            ents = t.column("entity").to_pylist()
            ets = t.column("event_timestamp").to_pylist()
            seqs = t.column("seq").to_pylist()
            its = t.column("ingest_ts").to_pylist()
            for i, ent in enumerate(ents):
                text = dumps_values({n: c[i] for n, c in zip(names, cols, strict=True)})
                out.append((view, ent, ets[i], seqs[i], its[i], text))
    return out


def build_state(log: OfflineLog, plan: AggPlan, high: int | None, now: int) -> AggBatch:
    """The whole aggregation state rebuilt from the log up to seq ``high``: the rows of
    :func:`build_rows`, those of folding views at or below their fold cutoff as of
    ``now`` folded into one summary per entity instead (the same values: folding is
    exact and order-free)."""
    rows = build_rows(log, plan.defs, plan, high, now)
    if not plan.fold:
        return AggBatch(rows, plan.cutoffs(now))
    raw: list[AggRow] = []
    summaries: dict[tuple[str, str], Summary] = {}
    for r in rows:
        if r[0] in plan.fold and r[2] <= plan.fold_cutoff(r[0], now):
            s = summaries.get((r[0], r[1]))
            if s is None:
                s = summaries[(r[0], r[1])] = Summary()
            plan.folder(r[0]).fold(s, [(r[2], r[3], r[5])])
        else:
            raw.append(r)
    return AggBatch(raw, plan.cutoffs(now),
                    summaries=[(v, e, s.dumps()) for (v, e), s in summaries.items()])
