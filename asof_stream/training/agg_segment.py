"""An aggregation's source read straight into window bounds, when it is one sealed segment
(the usual state after ``compact``): the training set's fast path (docs/computed.md).

:func:`~.agg_source.coded_rows` makes every row's entity code and time as arrays over all
the rows, then :func:`~asof_stream.aggregations.bounds.window_bounds` makes a key per row
and searches the labels' edges in them: at 10M rows those arrays (and their fresh pages)
cost more than decoding the Parquet. Here each row group is decoded, keyed and searched on
its own, two at a time (pyarrow and numpy release the GIL; each thread reads through its
own file handle), so no per-row array is made but the value columns:

1. the entity columns (dictionary-encoded, small) of every row group; all the groups'
   dictionaries, one after the other, coded by entity run and the labels' keys looked up
   among them in one pass (:func:`~asof_stream.kernels.entity_codes.encode_entities`, the
   as-of join's coding: one segment is one tier, so codes need not be shared with others
   as the general path's are); the groups with none of the labels' entities are skipped;
2. the labels' edges (the window rule, :func:`~asof_stream.aggregations.bounds.
   edge_thresholds`) as keys of one layout (:class:`~asof_stream.kernels.sortkeys.
   PackedKeys`: ``code << b | (ts - base)``, ``b`` from the groups' time statistics),
   sorted (the upper edges' order mostly sorts the lower ones too: both grow with the
   label's time), while the first group is read;
3. per row group: its time and value columns, its rows' keys (checked sorted), each edge
   array's slice that falls in the group searched there (in the cache), the values
   copied to their place.

An edge's row count is then the rows of the groups wholly at or below it plus its count
in the group it falls in. Without time statistics, with codes and times that do not fit
in 64 bits together, or with several tiers, the general path reads the rows
(:func:`~.agg_source.coded_rows`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..aggregations.bounds import Windows, edge_thresholds
from ..definitions import Definitions
from ..kernels.buffers import bool_numpy, int_numpy
from ..kernels.entity_codes import encode_entities
from ..kernels.sortkeys import PackedKeys, packed_keys
from ..offline.log import OfflineLog
from ..offline.manifest import Segment
from ..offline.scan import _manifest_moved, _snapshot
from ..offline.segments import SegmentError, column_name, open_checked
from .agg_source import (
    _NUMPY,
    CodedRows,
    KeyCodes,
    _Numbers,
    check_columns,
    key_codes,
    label_dictionary,
    snapshot_rows,
)

THREADS = max(1, min(4, os.cpu_count() or 1))  # readers, each with its own file handle
T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class SegmentWindows:
    """The source rows' value columns (by feature name) and, per window length, every
    label's window over them."""

    n_rows: int
    values: dict[str, pa.Array]
    windows: dict[int | None, Windows]


@dataclass(slots=True)
class _Edges:
    """One array of edge keys in sorted order, and each one's count of rows at or below
    it within the group it falls in (filled a group at a time)."""

    keys: np.ndarray
    order: np.ndarray
    part: np.ndarray


def segment_windows(log: OfflineLog, seg: Segment, columns: Sequence[str],
                    labels: pa.DictionaryArray, label_ts: np.ndarray,
                    lengths: Sequence[int | None], *, strict: bool) -> SegmentWindows | None:
    """The windows of every length in ``lengths`` for labels (their keys ``labels``, their
    times ``label_ts``) over the rows of ``seg`` (every one of them: the caller checked
    the seq bound), with the ``columns`` features; None when the keys cannot be packed
    (no time statistics, or codes and times too wide for 64 bits together)."""
    path = log.segments_dir / seg.file
    files = [open_checked(path, seg.bytes, read_dictionary=["entity"]) for _ in range(THREADS)]
    try:
        return _read(files, path, columns, labels, label_ts, lengths, strict=strict)
    except (pa.ArrowException, OSError) as exc:
        raise SegmentError(f"segment {path} cannot be read: {exc}") from None


def _read(files: list[pq.ParquetFile], path: object, columns: Sequence[str],
          labels: pa.DictionaryArray, label_ts: np.ndarray, lengths: Sequence[int | None], *,
          strict: bool) -> SegmentWindows | None:
    meta = files[0].metadata
    groups = [g for g in range(meta.num_row_groups) if meta.row_group(g).num_rows]
    span = _time_span(files[0], groups)
    if span is None:
        return None
    with ThreadPoolExecutor(THREADS) as pool:
        entities = _in_halves(pool, files, groups, _entity_chunks)
        tables, label_codes = _dictionary_codes(entities, labels, path)
        present = np.flatnonzero(label_codes >= 0)
        layout = _layout(span, label_ts[present], int(tables[-1]) if len(tables) else 0)
        if layout is None:
            return None
        keep = _groups_needed(entities, tables, label_codes[present])
        groups, entities = [groups[i] for i in keep], [entities[i] for i in keep]
        key_bits = tables.astype(np.uint64) << layout.shift
        edges_job = pool.submit(_edges, layout, label_codes[present], label_ts[present],
                                lengths, strict)  # before the groups' jobs: no thread waits
        starts = np.zeros(len(groups) + 1, dtype=np.int64)  # for a job behind it
        np.cumsum([meta.row_group(g).num_rows for g in groups], out=starts[1:])
        n = int(starts[-1])
        types = {c: files[0].schema_arrow.field(column_name(c)).type for c in columns}
        numbers = {c: _Numbers(n, _NUMPY[t]) for c, t in types.items() if t in _NUMPY}
        texts: dict[str, list[list[pa.Array]]] = {c: [[] for _ in groups]
                                                  for c in columns if c not in numbers}
        firsts = np.zeros(len(groups), dtype=np.uint64)
        lasts = np.zeros(len(groups), dtype=np.uint64)

        def one(f: pq.ParquetFile, i: int) -> None:
            table = f.read_row_group(groups[i], use_threads=False,
                                     columns=["event_timestamp", *map(column_name, columns)])
            at = int(starts[i])
            for c in columns:
                col = table.column(column_name(c))
                if c in numbers:
                    numbers[c].fill(at, col)
                else:
                    texts[c][i].extend(col.chunks)
            keys = _group_keys(entities[i], key_bits, table.column("event_timestamp"), layout)
            bad = keys[1:] < keys[:-1]
            if bad.any():
                raise SegmentError(f"segment {path}: rows are not sorted by (entity,"
                                   f" event_timestamp) at row {at + int(np.argmax(bad)) + 1}")
            firsts[i], lasts[i] = keys[0], keys[-1]
            for e in edges_job.result():
                a, b = np.searchsorted(e.keys, keys[[0, -1]], side="left")
                e.part[a:b] = np.searchsorted(keys, e.keys[a:b], side="right")

        _in_halves(pool, files, list(range(len(groups))), one)
        edges = edges_job.result()
    bad = firsts[1:] < lasts[:-1]
    if bad.any():
        i = int(np.argmax(bad)) + 1
        raise SegmentError(f"segment {path}: rows are not sorted by (entity, event_timestamp)"
                           f" at row {int(starts[i]) + 1}")
    counts = []
    for e in edges:  # rows of the groups wholly at or below each edge, plus its part
        got = starts[np.searchsorted(lasts, e.keys, side="right")] + e.part
        out = np.empty(len(got), dtype=np.int64)
        out[e.order] = got
        counts.append(out)
    values = {c: numbers[c].array(types[c]) if c in numbers else
              pa.chunked_array([x for part in texts[c] for x in part], types[c]).combine_chunks()
              for c in columns}
    m = len(label_ts)
    windows = {}
    for k, length in enumerate(lengths):
        lo = np.zeros(m, dtype=np.int64)
        hi = np.zeros(m, dtype=np.int64)
        hi[present] = counts[0]
        lo[present] = np.minimum(counts[k + 1], counts[0])
        windows[length] = Windows(n, lo, hi, np.zeros(m, dtype=bool), np.zeros(0, np.int64))
    return SegmentWindows(n, values, windows)


def _layout(span: tuple[int, int], label_ts: np.ndarray, top: int) -> PackedKeys | None:
    """The keys' layout for the rows' times ``span`` and codes up to ``top``, wide enough
    for the labels' times too when that fits (an upper edge then is never clipped, and
    the labels sorted by it have their lower edges in order too), else for the rows'."""
    if len(label_ts):
        wide = packed_keys(min(span[0], int(label_ts.min())), max(span[1], int(label_ts.max())),
                           top)
        if wide is not None:
            return wide
    return packed_keys(*span, top)


def _time_span(f: pq.ParquetFile, groups: list[int]) -> tuple[int, int] | None:
    """The least and greatest event time of the groups, from their statistics (no
    groups: any span)."""
    col = f.schema_arrow.get_field_index("event_timestamp")
    lo = hi = None
    for g in groups:
        stats = f.metadata.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            return None
        lo = stats.min if lo is None else min(lo, stats.min)
        hi = stats.max if hi is None else max(hi, stats.max)
    return (0, 0) if lo is None or hi is None else (int(lo), int(hi))


def _in_halves(pool: ThreadPoolExecutor, files: list[pq.ParquetFile], items: list[T],
              work: Callable[[pq.ParquetFile, T], R]) -> list[R]:
    """``[work(file, item) for item in items]``, the items dealt out to the threads (each
    with its own file), in order."""
    def share(k: int) -> list[R]:
        return [work(files[k], x) for x in items[k::THREADS]]

    jobs: list[Future[list[R]]] = [pool.submit(share, k) for k in range(THREADS)]
    parts = [j.result() for j in jobs]
    out: list[R] = []
    for i in range(len(items)):
        out.append(parts[i % THREADS][i // THREADS])
    return out


Chunks = list[tuple[pa.Array, np.ndarray | None, int]]  # (dictionary, indices, offset)


def _entity_chunks(f: pq.ParquetFile, group: int) -> Chunks:
    """A group's entity column as (dictionary, indices into it) per chunk (a chunk read
    as plain text: its own dictionary, indices None); offsets are set later."""
    out: Chunks = []
    for chunk in f.read_row_group(group, columns=["entity"], use_threads=False).column(0).chunks:
        if chunk.null_count:
            raise SegmentError("a segment has a null entity")
        if pa.types.is_dictionary(chunk.type):
            out.append((chunk.dictionary, int_numpy(chunk.indices), 0))
        elif len(chunk):
            out.append((chunk, None, 0))
    return out


def _dictionary_codes(entities: list[Chunks], labels: pa.DictionaryArray,
                      path: object) -> tuple[np.ndarray, np.ndarray]:
    """Per dictionary entry (all the groups' dictionaries one after the other, their
    offsets set in ``entities``), its entity's code, and per label its entity's code or
    -1: :func:`~asof_stream.kernels.entity_codes.encode_entities` of the entries, whose
    runs are the entities' (a group's dictionary holds its rows' entities in their order;
    one entity may end a group and start the next)."""
    offset = 0
    dictionaries = []
    for chunks in entities:
        for j, (dictionary, indices, _) in enumerate(chunks):
            chunks[j] = (dictionary, indices, offset)
            dictionaries.append(dictionary)
            offset += len(dictionary)
    if not dictionaries:
        return np.zeros(0, np.int64), np.full(len(labels), -1, np.int64)
    every = pa.concat_arrays(dictionaries)
    ordered = len(every) < 2 or not bool_numpy(
        pc.less(every.slice(1), every.slice(0, len(every) - 1))).any()  # so grouped
    try:
        return encode_entities(every, labels, known_grouped=ordered)
    except ValueError as exc:  # not grouped: a segment not written sorted
        raise SegmentError(f"segment {path}: {exc}") from None


def _groups_needed(entities: list[Chunks], codes: np.ndarray, wanted: np.ndarray) -> list[int]:
    """The groups whose entities' codes hold one of the labels' codes ``wanted``."""
    if not len(codes):
        return []
    have = np.zeros(int(codes[-1]) + 2, dtype=np.int64)  # have[c + 1]: labels' codes <= c
    have[wanted + 1] = 1
    np.cumsum(have, out=have)
    keep = []
    for i, chunks in enumerate(entities):
        if chunks:
            lo = codes[chunks[0][2]]
            hi = codes[chunks[-1][2] + len(chunks[-1][0]) - 1]
            if have[hi + 1] > have[lo]:
                keep.append(i)
    return keep


def _group_keys(chunks: Chunks, key_bits: np.ndarray, ts: pa.ChunkedArray,
                layout: PackedKeys) -> np.ndarray:
    """The group's rows' keys: ``code << b | (ts - base)``."""
    first = chunks[0][1]
    if len(chunks) == 1 and first is not None:
        dictionary, idx, at = chunks[0][0], first, chunks[0][2]
        bits_of = key_bits[at:at + len(dictionary)]
    else:
        idx = np.concatenate([np.arange(at, at + len(d)) if i is None else i + at
                              for d, i, at in chunks])
        bits_of = key_bits
    times = [int_numpy(c) for c in ts.chunks if len(c)]
    keys = ((times[0] if len(times) == 1 else np.concatenate(times)) - layout.base).view(np.uint64)
    keys |= np.take(bits_of, idx)
    return keys


def _edges(layout: PackedKeys, codes: np.ndarray, ts: np.ndarray,
           lengths: Sequence[int | None], strict: bool) -> list[_Edges]:
    """The labels' upper edges (first), then their lower edge per window length, as keys
    sorted by the upper edges' order where that sorts them too (both grow with the time;
    but labels of one entity after its last row share a clipped upper edge, not a lower
    one: then the lower edges are sorted on their own)."""
    up_thr, up_neg, _, _ = edge_thresholds(ts, window_us=None, strict=strict)
    up = layout.probes(codes, up_thr, up_neg)
    order = np.argsort(up)
    edges = [_Edges(up[order], order, np.zeros(len(up), dtype=np.int64))]
    for length in lengths:
        _, _, low_thr, low_neg = edge_thresholds(ts, window_us=length, strict=strict)
        low = layout.probes(codes, low_thr, low_neg)
        own, keys = order, low[order]
        if len(keys) > 1 and (keys[1:] < keys[:-1]).any():
            own = np.argsort(low)
            keys = low[own]
        edges.append(_Edges(keys, own, np.zeros(len(low), dtype=np.int64)))
    return edges


def source_windows(log: OfflineLog, defs: Definitions, view: str, columns: Sequence[str],
                   keys: Sequence[str | None] | pa.Array, label_ts: np.ndarray,
                   lengths: Sequence[int | None], *, strict: bool, as_known_at: bool,
                   upto_seq: int | None) -> SegmentWindows | tuple[CodedRows, KeyCodes]:
    """The windows straight from the segment (:func:`segment_windows`) when the view's
    rows up to ``upto_seq`` are one sealed segment, whole, and the labels are not as known
    at; else the coded rows of every tier (:func:`~.agg_source.snapshot_rows`), with
    their ingest times when as known at, and the labels' codes."""
    check_columns(defs, view, columns)
    labels = label_dictionary(keys)
    for _attempt in range(5):
        snapshot = _snapshot(log, view, upto_seq, labels.dictionary)
        bound, segments, head = snapshot
        try:
            if not as_known_at and not head and len(segments) == 1 \
                    and segments[0].max_seq <= bound:
                got = segment_windows(log, segments[0], columns, labels, label_ts, lengths,
                                      strict=strict)
                if got is not None:
                    return got
            coded = key_codes(labels)
            return snapshot_rows(log, defs, view, columns, coded.wanted, snapshot,
                                 ingest=as_known_at), coded
        except SegmentError:
            if not _manifest_moved(log, segments):
                raise
            # a compaction replaced files after the snapshot: read the new state
    raise SegmentError(f"{log.segments_dir}: the segments kept changing while being read")
