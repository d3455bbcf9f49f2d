"""An aggregation's source rows, read coded by the labels' entities (docs/computed.md).

The labels' entity keys are numbered in sorted order: the ``i``-th distinct key has the
code ``2i + 1`` (-1: no key). A row of the source view (every tier, ``seq <= upto_seq``)
whose entity is the ``i``-th key gets the same code; a row of another entity gets an
even code, ``2j + 2`` where ``j`` is the last key seen before it in the tier's order
(0 before any), so the codes of a sorted tier stay sorted and no label's code is even:
those rows are kept (taking them out was a copy of every column) but fall in no window,
and their event times are set to the tier's earliest (several entities can share an even
code, and the rows stay sorted by code and time). A segment's entity column is read as
its dictionary (one per row group: the group's distinct entities), all the dictionaries
are matched against the keys in one lookup and their indices mapped to the rows, so no
entity string is made per row (10M rows: the cast to strings and a string filter were
most of the read). Columns come as numpy arrays
(``seq`` and ``ingest_ts`` only when needed) and the values as Arrow arrays; nothing
here converts Python values, which would make pyarrow import pandas.

Entity codes follow byte order, the order the segments and the head are sorted in, so
a single tier comes out in ``(code, event_timestamp, seq)`` order as it is; several are
merged by one sort on ``(code, event_timestamp, seq)`` (without the even-coded rows).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..definitions import Definitions
from ..kernels.buffers import bool_array, bool_numpy, int64_array, int_numpy, valid_numpy
from ..offline.log import OfflineLog
from ..offline.manifest import Segment
from ..offline.scan import _manifest_moved, _snapshot, head_table
from ..offline.segments import (
    SegmentError,
    column_name,
    open_checked,
    row_groups_with,
    text_array,
)


@dataclass(slots=True)
class KeyCodes:
    """The labels' distinct entity keys, sorted, and each label's code (the ``i``-th key:
    ``2i + 1``; -1: no key)."""

    wanted: pa.Array
    label_codes: np.ndarray


def key_codes(keys: Sequence[str | None] | pa.Array) -> KeyCodes:
    """Number the distinct keys in sorted (byte) order. ``keys``: Python strings (None:
    no key) or an Arrow array of them (maybe dictionary-encoded)."""
    enc = label_dictionary(keys)
    order = int_numpy(pc.array_sort_indices(enc.dictionary)).astype(np.int64)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    idx = int_numpy(enc.indices).astype(np.int64)
    codes = 2 * rank[idx] + 1 if len(rank) else np.full(len(idx), -1, np.int64)
    if enc.indices.null_count:
        codes[~valid_numpy(enc.indices)] = -1
    return KeyCodes(enc.dictionary.take(int64_array(order)), codes)


def label_dictionary(keys: Sequence[str | None] | pa.Array) -> pa.DictionaryArray:
    """The keys dictionary-encoded (as they are when they are): Python strings (None: no
    key, a null index) or an Arrow array of them."""
    if isinstance(keys, pa.Array):
        arr = keys
    else:
        missing = None in keys
        arr = text_array([k or "" for k in keys] if missing else list(keys))  # type: ignore[arg-type]
        if missing:
            nulls = np.fromiter((k is None for k in keys), dtype=bool, count=len(keys))
            arr = pc.if_else(bool_array(nulls), pa.nulls(1, pa.string())[0], arr)
    return arr if pa.types.is_dictionary(arr.type) else arr.dictionary_encode()


@dataclass(slots=True)
class CodedRows:
    """Rows in ``(code, event_timestamp, seq)`` order: codes, times, optional seq and
    ingest times, and the value columns (by feature name)."""

    codes: np.ndarray
    ts: np.ndarray
    seq: np.ndarray | None
    ingest: np.ndarray | None
    values: dict[str, pa.Array] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.codes)

    def keep(self, mask: np.ndarray) -> CodedRows:
        if mask.all():
            return self
        where = np.flatnonzero(mask)
        return self.take(where)

    def take(self, where: np.ndarray) -> CodedRows:
        idx = int64_array(where)
        return CodedRows(self.codes[where], self.ts[where],
                         None if self.seq is None else self.seq[where],
                         None if self.ingest is None else self.ingest[where],
                         {k: v.take(idx) for k, v in self.values.items()})


def coded_rows(log: OfflineLog, defs: Definitions, view: str, columns: Sequence[str],
               wanted: pa.Array, *, upto_seq: int | None, ingest: bool) -> CodedRows:
    """The rows of ``view`` (``seq <= upto_seq``), coded by ``wanted`` (sorted; see the
    module doc), with the ``columns`` features; ``ingest``: also their ingest times."""
    check_columns(defs, view, columns)
    for _attempt in range(5):
        snapshot = _snapshot(log, view, upto_seq, wanted)
        try:
            return snapshot_rows(log, defs, view, columns, wanted, snapshot, ingest=ingest)
        except SegmentError:
            if not _manifest_moved(log, snapshot[1]):
                raise
            # a compaction replaced files after the snapshot: read the new state
    raise SegmentError(f"{log.segments_dir}: the segments kept changing while being read")


Snapshot: TypeAlias = tuple[int, list[Segment], list[tuple[int, str, int, int, str]]]


def check_columns(defs: Definitions, view: str, columns: Sequence[str]) -> None:
    """A KeyError/ValueError naming a feature ``view`` does not have."""
    spec = defs.views[view]
    for name in columns:
        spec.feature(name)


def snapshot_rows(log: OfflineLog, defs: Definitions, view: str, columns: Sequence[str],
                  wanted: pa.Array, snapshot: Snapshot, *, ingest: bool) -> CodedRows:
    """:func:`coded_rows` of one snapshot (seq bound, segments, head rows)."""
    bound, segments, head = snapshot
    sources = len(segments) + bool(head)
    tiers = [_segment_rows(log, s, columns, bound, wanted, ingest=ingest,
                           seq=sources > 1) for s in segments]
    if head or not tiers:
        tiers.append(_head_rows(head, defs, view, columns, wanted))
    return _merge([t for t in tiers if len(t)] or tiers[-1:], columns)


def _head_rows(rows: list[tuple[int, str, int, int, str]], defs: Definitions, view: str,
               columns: Sequence[str], wanted: pa.Array) -> CodedRows:
    table = head_table(rows, defs, view, columns)  # the head's rows are only wanted ones
    codes = _run_codes(_index_codes(table.column("entity").combine_chunks(), wanted))
    got = CodedRows(codes, _ints(table.column("event_timestamp")), _ints(table.column("seq")),
                    _ints(table.column("ingest_ts")),
                    {c: _one(table.column(column_name(c))) for c in columns})
    return got


def _segment_rows(log: OfflineLog, seg: Segment, columns: Sequence[str], bound: int,
                  wanted: pa.Array, *, ingest: bool, seq: bool) -> CodedRows:
    """One segment's rows, read a row group at a time into arrays made for all of them
    (the whole table and its copies at once were twice the memory)."""
    path = log.segments_dir / seg.file
    pf = open_checked(path, seg.bytes, read_dictionary=["entity"])
    filter_seq = seg.max_seq > bound
    ints = ["event_timestamp", *(["seq"] if seq or filter_seq else []),
            *(["ingest_ts"] if ingest else [])]
    names = ["entity", *ints, *map(column_name, columns)]
    try:
        groups = row_groups_with(pf, wanted, presorted=True)
        n = sum(pf.metadata.row_group(g).num_rows for g in groups)
        # each row's entity as an index into all the dictionaries
        index = np.empty(n, dtype=np.int32 if n < 2**31 else np.int64)
        out = {c: np.empty(n, dtype=np.int64) for c in ints}
        types = {c: pf.schema_arrow.field(column_name(c)).type for c in columns}
        numbers = {c: _Numbers(n, _NUMPY[t]) for c, t in types.items() if t in _NUMPY}
        chunks: dict[str, list[pa.Array]] = {c: [] for c in columns if c not in numbers}
        dictionaries: list[pa.Array] = []
        at = offset = 0
        for g in groups:
            table = pf.read_row_group(g, columns=names)
            for c in ints:
                _fill(out[c], at, table.column(c))
            for c in columns:
                if c in numbers:
                    numbers[c].fill(at, table.column(column_name(c)))
                else:
                    chunks[c].extend(table.column(column_name(c)).chunks)
            for chunk in table.column("entity").chunks:
                offset = _fill_index(index, at, chunk, dictionaries, offset)
                at += len(chunk)
            del table
    except (pa.ArrowException, OSError) as exc:
        raise SegmentError(f"segment {path} cannot be read: {exc}") from None
    assert at == n
    values = {c: numbers[c].array(types[c]) if c in numbers else
              pa.chunked_array(chunks.pop(c), types[c]).combine_chunks() for c in columns}
    codes, other = _codes_of(index, dictionaries, wanted)
    del index
    ts = out["event_timestamp"]
    if len(ts) and other.any():  # see the module doc (ts is this function's own array)
        ts[other] = ts.min()
    got = CodedRows(codes, ts, out.get("seq"), out.get("ingest_ts"), values)
    if filter_seq:
        assert got.seq is not None
        got = got.keep(got.seq <= bound)
    if not seq:
        got.seq = None
    return got


_NUMPY = {pa.int64(): np.int64, pa.float64(): np.float64}


class _Numbers:
    """An int64 or float64 column filled a chunk at a time (with its validity when a
    chunk has nulls), then made an Arrow array over the same memory."""

    def __init__(self, n: int, dtype: type) -> None:
        self.data: np.ndarray = np.empty(n, dtype=dtype)
        self.valid: np.ndarray | None = None
        self._lock = threading.Lock()  # chunks may be filled from several threads

    def fill(self, at: int, column: pa.ChunkedArray) -> None:
        for chunk in column.chunks:
            k = len(chunk)
            if not k:
                continue
            self.data[at:at + k] = int_numpy(chunk)
            if chunk.null_count:
                with self._lock:
                    if self.valid is None:
                        self.valid = np.ones(len(self.data), dtype=bool)
                self.valid[at:at + k] = valid_numpy(chunk)
            at += k

    def array(self, kind: pa.DataType) -> pa.Array:
        bits = None if self.valid is None else \
            pa.py_buffer(np.packbits(self.valid, bitorder="little"))
        return pa.Array.from_buffers(kind, len(self.data), [bits, pa.py_buffer(self.data)])


def _fill(out: np.ndarray, at: int, column: pa.ChunkedArray) -> None:
    for chunk in column.chunks:
        if len(chunk):
            out[at:at + len(chunk)] = int_numpy(chunk)
            at += len(chunk)


def _fill_index(index: np.ndarray, at: int, chunk: pa.Array, dictionaries: list[pa.Array],
                offset: int) -> int:
    """The chunk's entities as indices into all the dictionaries so far (a chunk read as
    plain text is its own dictionary); returns the next dictionary offset."""
    if chunk.null_count:
        raise SegmentError("a segment has a null entity")
    if not pa.types.is_dictionary(chunk.type):
        index[at:at + len(chunk)] = np.arange(offset, offset + len(chunk))
        dictionaries.append(chunk)
        return offset + len(chunk)
    index[at:at + len(chunk)] = int_numpy(chunk.indices)
    index[at:at + len(chunk)] += offset
    dictionaries.append(chunk.dictionary)
    return offset + len(chunk.dictionary)


def _codes_of(index: np.ndarray, dictionaries: list[pa.Array],
              wanted: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the code of its entity and whether it is even (in no window): every
    dictionary matched in one lookup. When the dictionaries, one after the other, are in
    order (a segment's row groups are sorted, and so is each one's dictionary), the codes
    are made per dictionary entry and then given to the rows; otherwise per row."""
    if not dictionaries:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    every = pa.concat_arrays(dictionaries)
    found = _index_codes(every, wanted)
    if len(every) < 2 or not bool_numpy(pc.less(every.slice(1),
                                                 every.slice(0, len(every) - 1))).any():
        codes = _run_codes(found)
        if len(codes) and codes[-1] < 2**31:  # half the memory per row
            codes = codes.astype(np.int32)
        return codes[index], (codes & 1 == 0)[index]  # no 10M-row temporaries
    codes = _run_codes(found[index])
    return codes, codes & 1 == 0


def _run_codes(index: np.ndarray) -> np.ndarray:
    """Indices in the keys (-1: none) of entities in sorted order, as codes: ``2i + 1``
    for the ``i``-th key, ``2j + 2`` for another entity after the ``j``-th key."""
    last = np.maximum.accumulate(index) if len(index) else index
    return np.where(index >= 0, 2 * index + 1, 2 * last + 2)


def _index_codes(entities: pa.Array, wanted: pa.Array) -> np.ndarray:
    """Per entity, its index in ``wanted`` or -1."""
    if len(entities) == 0:
        return np.zeros(0, dtype=np.int64)
    idx = pc.index_in(entities, value_set=wanted)
    codes = int_numpy(idx).astype(np.int64)
    if idx.null_count:
        codes[~valid_numpy(idx)] = -1
    return codes


def _one(arr: pa.ChunkedArray) -> pa.Array:
    if arr.num_chunks == 1:
        return arr.chunk(0)
    return arr.combine_chunks()


def _ints(arr: pa.ChunkedArray) -> np.ndarray:
    """An int64 column without nulls as one numpy array (a copy when it has chunks)."""
    chunks = [c for c in arr.chunks if len(c)]
    if len(chunks) == 1:
        return int_numpy(chunks[0])
    if not chunks:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([int_numpy(c) for c in chunks])


def _merge(tiers: list[CodedRows], columns: Sequence[str]) -> CodedRows:
    """The tiers (each sorted) as one run in ``(code, event_timestamp, seq)`` order. One
    tier is that already (its seq is dropped: the check that rows are sorted then skips
    it, since the even-coded rows' times were set, not their seqs); of several, the rows
    in no window are dropped before they are sorted together."""
    if len(tiers) == 1:
        tiers[0].seq = None
        return tiers[0]
    tiers = [t.keep((t.codes & 1) == 1) for t in tiers]
    codes = np.concatenate([t.codes for t in tiers])
    ts = np.concatenate([t.ts for t in tiers])
    seqs = [t.seq for t in tiers if t.seq is not None]
    assert len(seqs) == len(tiers), "several tiers are read with their seq"
    seq = np.concatenate(seqs)
    ingests = [t.ingest for t in tiers if t.ingest is not None]
    ingest = np.concatenate(ingests) if len(ingests) == len(tiers) else None
    values = {c: pa.concat_arrays([t.values[c] for t in tiers]) for c in columns}
    merged = CodedRows(codes, ts, seq, ingest, values)
    order = np.lexsort((seq, ts, codes))
    return merged.take(order)
