"""The one read API over both tiers of the offline log.

``scan_view(log, defs, view, *, max_seq=None, columns=None, entities=None, exact=True)``

Returns one :class:`Tier` per sealed segment (oldest seqs first) plus, last, one for
the head (SQLite), all read from one snapshot of the manifest and the head, so every
log row with ``seq <= max_seq`` is in exactly one tier (``max_seq`` None: the log's
high-water mark at the snapshot). Each ``Tier.table`` is a ``pyarrow.Table`` sorted
by ``(entity, event_timestamp, seq)`` with the columns

    seq: int64, entity: string, event_timestamp: int64, ingest_ts: int64,
    then one typed column per feature (int64 / float64 / string / bool, nulls allowed),

named by :func:`~asof_stream.offline.segments.column_name` (the feature's own name,
``feature:<name>`` only for a feature named like one of the log's columns). ``columns``
picks features (None: all of the view's, in definition order); ``entities`` keeps only
those entity keys (the log's entity text; with ``exact=False`` a segment's row groups that
hold none of them are skipped, but rows of other entities in the others are kept, for
a reader that matches entities itself, such as the kernel). Head rows are decoded from their JSON into
the same typed columns. Tiers may be
empty tables; the same entity may appear in several tiers (the greatest
``(event_timestamp, seq)`` across tiers wins in an as-of join).

A registered file that is missing or not the size the manifest says raises
:class:`~asof_stream.offline.segments.SegmentError` naming it; a file removed by a
compaction that committed after the snapshot makes the scan start again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from .log import HIGH_SEQ_SQL, OfflineLog
from .manifest import Segment, has_manifest, list_segments
from .segments import (
    ARROW_TYPES,
    SORT_KEYS,
    SegmentError,
    SegmentGroups,
    column_name,
    read_segment,
)

if TYPE_CHECKING:
    from ..definitions import Definitions

BASE_COLUMNS = ("seq", "entity", "event_timestamp", "ingest_ts")
HEAD_ANY_SQL = "SELECT 1 FROM log WHERE view = ? AND seq <= ? LIMIT 1"
HEAD_SQL = ("SELECT seq, entity, event_timestamp, ingest_ts, features FROM log"
            " WHERE view = ? AND seq <= ?{extra} ORDER BY entity, event_timestamp, seq")


@dataclass(frozen=True, slots=True)
class Tier:
    """The rows of one tier: ``source`` is ``"head"`` or the segment's relative file."""

    source: str
    table: pa.Table
    segment: Segment | None = None


def decode_features(texts: Sequence[str]) -> list[dict[str, object]]:
    """Feature JSON texts to dicts (the stdlib parser where NaN/Infinity appear)."""
    if not texts:
        return []
    try:
        return list(msgspec.json.decode("[" + ",".join(texts) + "]"))
    except msgspec.DecodeError:
        return [json.loads(t) for t in texts]


def head_table(rows: list[tuple[int, str, int, int, str]], defs: Definitions, view: str,
               features: Sequence[str]) -> pa.Table:
    """Head rows (seq, entity, event_timestamp, ingest_ts, features JSON) as a typed table."""
    spec = defs.views[view]
    if not rows:  # from buffers: converting Python values (even none) imports pandas
        types = [pa.int64(), pa.string(), pa.int64(), pa.int64(),
                 *(ARROW_TYPES[spec.feature(f).dtype] for f in features)]
        return pa.Table.from_arrays([_empty(t) for t in types],
                                    names=[*BASE_COLUMNS, *map(column_name, features)])
    seqs, ents, ets, its, texts = (list(c) for c in zip(*rows, strict=True)) if rows else ([],) * 5
    values = decode_features(texts)
    arrays = [pa.array(seqs, pa.int64()), pa.array(ents, pa.string()), pa.array(ets, pa.int64()),
              pa.array(its, pa.int64())]
    names = list(BASE_COLUMNS)
    for name in features:
        arrays.append(pa.array([v.get(name) for v in values], ARROW_TYPES[spec.feature(name).dtype]))
        names.append(column_name(name))
    return pa.Table.from_arrays(arrays, names=names)


def _empty(kind: pa.DataType) -> pa.Array:
    """An empty array of a fixed-width or string type."""
    if kind == pa.string():
        return pa.Array.from_buffers(kind, 0, [None, pa.py_buffer(bytes(4)), pa.py_buffer(b"")])
    return pa.Array.from_buffers(kind, 0, [None, pa.py_buffer(b"")])


@contextmanager
def _read_snapshot(log: OfflineLog, view: str | None,
                   max_seq: int | None = None) -> Iterator[tuple[sqlite3.Connection, int, list[Segment]]]:
    """One read transaction (unless the caller holds one): the connection, the seq bound
    (``max_seq``; None: the high-water mark) and the registered segments of ``view``
    (None: of every view) up to it."""
    conn = log.conn
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        tiers = has_manifest(conn)
        if max_seq is None:
            max_seq = int(conn.execute(HIGH_SEQ_SQL if tiers else
                                       "SELECT coalesce(max(seq), 0) FROM log").fetchone()[0])
        yield conn, max_seq, list_segments(conn, view, max_seq) if tiers else []
    finally:
        if own:
            conn.execute("COMMIT")


def _snapshot(log: OfflineLog, view: str, max_seq: int | None,
              entities: Sequence[str] | pa.Array | None) -> tuple[int, list[Segment], list[tuple]]:
    with _read_snapshot(log, view, max_seq) as (conn, bound, segments):
        extra, params = "", [view, bound]
        if entities is not None and conn.execute(HEAD_ANY_SQL, params).fetchone() is None:
            return bound, segments, []  # an empty head: no 200k keys as JSON for nothing
        if entities is not None:
            extra = " AND entity IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(entities.to_pylist() if isinstance(entities, pa.Array)
                                     else list(entities)))
        rows = conn.execute(HEAD_SQL.format(extra=extra), params).fetchall()
    return bound, segments, rows


def scan_view(log: OfflineLog, defs: Definitions, view: str, *, max_seq: int | None = None,
              columns: Sequence[str] | None = None,
              entities: Sequence[str] | pa.Array | None = None,
              exact: bool = True) -> list[Tier]:
    """Every row of ``view`` up to ``max_seq``, as sorted typed tiers (see the module doc)."""
    spec = defs.views[view]
    features = list(columns) if columns is not None else spec.feature_names
    for name in features:
        spec.feature(name)  # a KeyError/ValueError naming the feature
    wanted = [*BASE_COLUMNS, *(column_name(f) for f in features)]
    for _attempt in range(5):
        bound, segments, rows = _snapshot(log, view, max_seq, entities)
        try:
            tiers = [_segment_tier(log, s, wanted, bound, entities, exact)
                     for s in segments]
        except SegmentError:
            if not _manifest_moved(log, segments):
                raise
            continue  # a compaction replaced files after the snapshot: read the new state
        head = head_table(rows, defs, view, features)
        tiers.append(Tier("head", head))
        return tiers
    raise SegmentError(f"{log.segments_dir}: the segments kept changing while being read")


@dataclass(frozen=True, slots=True)
class OpenTier:
    """A sealed tier of :func:`open_view`: its segment, opened, read a row group at a
    time (``groups.read(g)``, then ``within_bound``)."""

    segment: Segment
    groups: SegmentGroups
    bound: int

    def within_bound(self, table: pa.Table) -> pa.Table:
        """A row group's rows with ``seq`` up to the snapshot's bound."""
        if self.segment.max_seq <= self.bound:
            return table
        return table.filter(pc.less_equal(table.column("seq"), self.bound))


def open_view(log: OfflineLog, defs: Definitions, view: str, *, max_seq: int | None = None,
              columns: Sequence[str] | None = None,
              entities: Sequence[str] | pa.Array | None = None,
              ingest_ts: bool = True, readers: int = 1,
              presorted: bool = False) -> tuple[list[OpenTier], Tier]:
    """:func:`scan_view`'s snapshot with its segments opened, not read (for a reader that
    goes a row group at a time, entity columns dictionary-encoded, row groups holding
    none of ``entities`` skipped; ``readers``: threads reading groups of one segment at
    once; ``ingest_ts``: whether it is read, from the segments and the head; ``presorted``:
    ``entities`` is an Arrow array sorted already, without nulls), and its head tier read."""
    spec = defs.views[view]
    features = list(columns) if columns is not None else spec.feature_names
    for name in features:
        spec.feature(name)
    base = [c for c in BASE_COLUMNS if ingest_ts or c != "ingest_ts"]
    wanted = [*base, *(column_name(f) for f in features)]
    if entities is not None and not isinstance(entities, pa.Array):
        entities = list(entities)
    for _attempt in range(5):
        bound, segments, rows = _snapshot(log, view, max_seq, entities)
        try:
            opened = [OpenTier(s, SegmentGroups(log.segments_dir / s.file, s.bytes, wanted,
                                                entities, readers=readers,
                                                presorted=presorted), bound)
                      for s in segments]
        except SegmentError:
            if not _manifest_moved(log, segments):
                raise
            continue
        head = head_table(rows, defs, view, features)
        return opened, Tier("head", head if ingest_ts else head.drop_columns(["ingest_ts"]))
    raise SegmentError(f"{log.segments_dir}: the segments kept changing while being read")


def _segment_tier(log: OfflineLog, seg: Segment, wanted: list[str], bound: int,
                  entities: Sequence[str] | pa.Array | None, exact: bool = True) -> Tier:
    if entities is not None and not isinstance(entities, pa.Array):
        entities = list(entities)
    table = read_segment(log.segments_dir / seg.file, seg.bytes, columns=wanted,
                         entities=entities, exact=exact)
    if seg.max_seq > bound:
        table = table.filter(pc.less_equal(table.column("seq"), bound))
    return Tier(seg.file, table, seg)


def _manifest_moved(log: OfflineLog, seen: list[Segment]) -> bool:
    now = {s.id for s in list_segments(log.conn, seen[0].view)} if seen else set()
    return any(s.id not in now for s in seen)


def last_per_entity(table: pa.Table) -> pa.Table:
    """Of a table sorted by (entity, event_timestamp, seq): the last row of each entity."""
    n = table.num_rows
    if n <= 1:
        return table
    ent = table.column("entity")
    differs = pc.not_equal(ent.slice(0, n - 1), ent.slice(1))
    mask = pa.concat_arrays([*differs.chunks, pa.array([True])]) if differs.num_chunks else \
        pa.array([True])
    return table.filter(mask)


def latest_per_entity(log: OfflineLog, defs: Definitions, view: str, *,
                      max_seq: int | None = None) -> pa.Table:
    """Per entity of ``view``, the row with the greatest (event_timestamp, seq), sorted by
    entity; same columns as a tier."""
    lasts = [last_per_entity(t.table) for t in scan_view(log, defs, view, max_seq=max_seq)]
    lasts = [t for t in lasts if t.num_rows]
    if not lasts:
        return scan_view(log, defs, view, max_seq=0)[-1].table
    if len(lasts) == 1:
        return lasts[0]
    merged = pa.concat_tables(lasts).sort_by(SORT_KEYS)
    return last_per_entity(merged)


#: (view, entity, event_timestamp, seq, ingest_ts, features JSON text)
LatestRecord = tuple[str, str, int, int, int, str]

HEAD_LATEST_SQL = (
    "SELECT view, entity, event_timestamp, seq, ingest_ts, features FROM ("
    " SELECT *, row_number() OVER (PARTITION BY view, entity"
    "   ORDER BY event_timestamp DESC, seq DESC) AS rn"
    " FROM log WHERE seq <= ?{where}) WHERE rn = 1")


def latest_records(log: OfflineLog, view: str | None = None, *, known_at: int | None = None,
                   entity: str | None = None) -> tuple[int, list[LatestRecord]]:
    """Per (view, entity) over both tiers, the newest row, with its features as JSON text;
    and the seq bound of the snapshot. Needs no definitions: a segment's columns say its
    features (the head's rows keep their own text; a sealed row's text has every feature,
    null where the event had none). ``known_at``: only rows with ``ingest_ts`` at most
    this; ``entity`` (with ``view``): only that entity."""
    for _attempt in range(5):
        with _read_snapshot(log, view) as (conn, bound, segments):
            where, params = ("", [bound]) if view is None else (" AND view = ?", [bound, view])
            if known_at is not None:
                where, params = where + " AND ingest_ts <= ?", [*params, known_at]
            if entity is not None and view is not None:
                where, params = where + " AND entity = ?", [*params, entity]
            head = conn.execute(HEAD_LATEST_SQL.format(where=where), params).fetchall()
        if not segments:
            return bound, head
        try:
            return bound, _merge_latest(log, segments, head, bound, known_at, entity)
        except SegmentError:
            if not _manifest_moved(log, segments):
                raise
    raise SegmentError(f"{log.segments_dir}: the segments kept changing while being read")


#: A segment's columns that no latest record carries
META_COLUMNS = ("event_id", "source", "position", "def_version")


def _merge_latest(log: OfflineLog, segments: list[Segment], head: list[LatestRecord],
                  bound: int, known_at: int | None = None,
                  entity: str | None = None) -> list[LatestRecord]:
    best: dict[tuple[str, str], LatestRecord] = {(r[0], r[1]): r for r in head}
    by_view: dict[str, list[Segment]] = {}
    for s in segments:
        by_view.setdefault(s.view, []).append(s)
    for view, segs in by_view.items():
        lasts = []
        for s in segs:
            t = read_segment(log.segments_dir / s.file, s.bytes, skip=META_COLUMNS,
                             entities=None if entity is None else [entity])
            if s.max_seq > bound:
                t = t.filter(pc.less_equal(t.column("seq"), bound))
            if known_at is not None and s.max_ingest_ts > known_at:
                t = t.filter(pc.less_equal(t.column("ingest_ts"), known_at))
            lasts.append(last_per_entity(t))
        table = lasts[0] if len(lasts) == 1 else last_per_entity(
            pa.concat_tables(lasts, promote_options="default").sort_by(SORT_KEYS))
        get = best.get
        for rec in zip(repeat(view, table.num_rows), table.column("entity").to_pylist(),
                       table.column("event_timestamp").to_pylist(),
                       table.column("seq").to_pylist(), table.column("ingest_ts").to_pylist(),
                       feature_texts(table), strict=True):
            key = (view, rec[1])
            cur = get(key)
            if cur is None or (rec[2], rec[3]) > (cur[2], cur[3]):
                best[key] = rec
    return list(best.values())


def feature_texts(table: pa.Table) -> list[str]:
    """Per row of a segment table, its feature columns as the log's JSON text
    (:func:`~asof_stream.events.dumps_values` of ``{feature: value}``, every feature)."""
    from ..events import dumps_values

    feats = [n for n in table.column_names if n not in BASE_COLUMNS]
    names = [n[len("feature:"):] if n.startswith("feature:") else n for n in feats]
    cols = [table.column(n).to_pylist() for n in feats]
    rows = zip(*cols, strict=True) if cols else repeat((), table.num_rows)
    floats = [table.column(n) for n in feats if pa.types.is_floating(table.column(n).type)]
    if any(pc.any(pc.invert(pc.is_finite(c))).as_py() for c in floats):
        return [dumps_values(dict(zip(names, r, strict=True))) for r in rows]  # NaN/inf
    encode = msgspec.json.encode  # what dumps_values does for finite values
    return [encode(dict(zip(names, r, strict=True))).decode() for r in rows]


def sealed_row(log: OfflineLog, view: str, entity: str, seq: int) -> LatestRecord | None:
    """Row ``seq`` of (view, entity) if it is in a sealed segment, as a record."""
    from ..events import dumps_values

    if not has_manifest(log.conn):
        return None
    for s in list_segments(log.conn, view):
        if not s.min_seq <= seq <= s.max_seq:
            continue
        t = read_segment(log.segments_dir / s.file, s.bytes, entities=[entity])
        t = t.filter(pc.equal(t.column("seq"), seq))
        if t.num_rows:
            r = t.drop_columns(["event_id", "source", "position", "def_version"]).to_pylist()[0]
            values = {k[len("feature:"):] if k.startswith("feature:") else k: v
                      for k, v in r.items() if k not in BASE_COLUMNS}
            return (view, entity, r["event_timestamp"], seq, r["ingest_ts"], dumps_values(values))
    return None
