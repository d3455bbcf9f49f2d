"""The columnar fast path of ``training-set``: CSV labels to a CSV training set in Arrow.

The same result as :func:`~.training_set.build_training_set` followed by
:meth:`~.training_set.TrainingSet.write` (byte for byte: tests/test_columnar.py compares
the two on random data), without a Python object per label or per cell:

- the label file is read once as bytes; each data line is kept verbatim (an Arrow slice of
  the file) and its cells are parsed by ``pyarrow.csv`` as strings;
- per view, the kernel (:mod:`asof_stream.kernels.asof_kernel`) finds each label's row in
  every tier of :func:`~asof_stream.offline.scan.open_view` (a segment a row group at a
  time, :mod:`.columnar_tiers`) and keeps the latest;
- each chosen row's features are rendered as CSV cells once (Arrow compute; floats with
  Python's ``repr``, the one rendering Arrow does not share), gathered per label with
  ``take``, and every output line is joined in Arrow and written as one buffer;
- an aggregation's features are computed by the general path's kernel
  (:func:`~.aggregate.aggregate_view`) from the labels' key and time columns as they are
  here (arrays, no Python value per label) and rendered by :mod:`.csv_text`.

What it covers (:func:`columnar_csv` returns None otherwise, and the general path runs):
one log (not partition shards); a ``.csv`` label file with neither quotes nor carriage
returns outside CRLF line ends (its lines are copied as they are; a quoted file is
re-rendered by ``csv.writer``) and at least one data row; a ``.csv`` output; every
reference a plain view with at least one sealed segment (a head-only view is faster by
SQLite probes) or an aggregation (any tiers), no transform, each of an entity with one
``string`` join key with no empty cell. Anything
unusual (a bad timestamp, a short row, a duplicate column) also takes the general path,
which names the problem.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..definitions import Definitions, output_names
from ..kernels.asof_kernel import pick_latest
from ..kernels.buffers import int64_array, int_numpy
from ..kernels.sortkeys import sorted_unique
from ..offline.log import OfflineLog
from ..offline.manifest import list_segments
from ..offline.scan import open_view
from ..offline.segments import column_name, text_array
from .columnar_labels import ColumnarLabels, read_plain_csv
from .columnar_tiers import (
    READ_AHEAD,
    LabelOrder,
    group_columns,
    head_match,
    read_first_group,
    segment_match,
)
from .csv_text import float_text
from .matches import JoinMode
from .segment_ahead import take as take_ahead

_NEEDS_QUOTES = '[,"\r\n]'


@dataclass
class ColumnarResult:
    """What the sidecar needs to know of a training set written by the fast path."""

    rows: int
    columns: list[str]
    pairs: list[tuple[str, str]]
    high_water_seq: int
    shard_high_water: dict[str, int] | None = None


_WORDS = text_array(["", "true", "false", '"', ",", ".0"])
_EMPTY, _TRUE, _FALSE, _QUOTE, _DOT_ZERO = (_WORDS[i] for i in (0, 1, 2, 3, 5))
_SEP = _WORDS[4]


def csv_cells(column: pa.ChunkedArray | pa.Array, dtype: str) -> pa.Array:
    """A typed feature column as CSV cells, exactly as :func:`~.writers.csv_cell`."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if dtype == "float64":  # Python's repr: the shortest text that reads back the same
        text = float_text(col)
    elif dtype == "bool":
        text = pc.if_else(col, _TRUE, _FALSE)
    elif dtype == "string":
        if not _has_special_bytes(col):  # the common case: no cell needs quotes
            text = col
        else:
            quoted = pc.binary_join_element_wise(_QUOTE, pc.replace_substring(col, '"', '""'),
                                                 _QUOTE, _EMPTY)
            text = pc.if_else(pc.match_substring_regex(col, _NEEDS_QUOTES), quoted, col)
    else:
        text = pc.cast(col, pa.string())
    return pc.fill_null(text, _EMPTY) if text.null_count else text


_SPECIAL = np.zeros(256, dtype=bool)
_SPECIAL[list(b',"\r\n')] = True


def _has_special_bytes(col: pa.Array) -> bool:
    """Whether the text of a string array holds a byte that makes a CSV cell need quotes
    (one pass over its data buffer rather than a regex per cell)."""
    if not len(col) or col.type != pa.string():
        return bool(len(col))
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)
    data = col.buffers()[2]
    if data is None:
        return False
    lo, hi = int(offsets[col.offset]), int(offsets[col.offset + len(col)])
    return bool(_SPECIAL[np.frombuffer(data, dtype=np.uint8)[lo:hi]].any())


#: a column of CSV cells, one per label: an array, or (distinct cells, per label the
#: position of its cell among them)
Cells: TypeAlias = pa.Array | tuple[pa.Array, np.ndarray]


def view_cells(log: OfflineLog, defs: Definitions, view: str, features: Sequence[str],
               keys: pa.Array, times: np.ndarray, mode: JoinMode, upto_seq: int,
               pool: Executor | None = None,
               early: dict[str, Future[pa.Table | None]] | None = None) -> dict[str, Cells]:
    """Per feature of ``view``, the CSV cell of each label's chosen row ("" for none), as
    the chosen rows' cells and each label's position among them.
    ``keys``: the labels' entity keys, dictionary-encoded (as ``dictionary_encode`` makes).
    ``pool``: reads the row groups ahead; ``early``: by segment file, its row group 0
    already being read (:func:`read_first_group`)."""
    spec = defs.views[view]
    if not pa.types.is_dictionary(keys.type):
        keys = keys.dictionary_encode()
    order = LabelOrder(keys)  # its sorted keys pick the row groups
    segments, head = open_view(log, defs, view, max_seq=upto_seq, columns=features,
                               entities=order.sorted_keys, ingest_ts=mode.as_known_at,
                               readers=READ_AHEAD if pool is not None else 1, presorted=True)
    tiers = [segment_match(t, order, times, mode, spec.ttl, features, pool,
                           (early or {}).pop(t.segment.file, None))
             for t in segments]
    if head.table.num_rows or not tiers:
        tiers.append(head_match(head.table, keys, times, mode, spec.ttl, features))
    parts: dict[str, list[pa.Array]] = {f: [] for f in features}
    if len(tiers) == 1:  # its candidates are distinct rows: each rendered once as it is
        where, offset = tiers[0].index.copy(), len(tiers[0].ts)
        for f in features:
            parts[f].append(csv_cells(tiers[0].features.column(column_name(f)),
                                      spec.feature(f).dtype))
        tiers = []
    else:
        tier_of, index = pick_latest([(t.index, t.ts, t.seq) for t in tiers])
        where, offset = np.full(len(times), -1, dtype=np.int64), 0
    for k, tier in enumerate(tiers):
        mine = np.flatnonzero(tier_of == k)
        if not len(mine):
            continue
        rows = sorted_unique(index[mine])  # each chosen row rendered once
        where[mine] = offset + np.searchsorted(rows, index[mine])
        offset += len(rows)
        for f in features:
            picked = take_sorted(tier.features.column(column_name(f)), rows)
            parts[f].append(csv_cells(picked, spec.feature(f).dtype))
    where[where < 0] = offset  # the empty cell, last
    empty = text_array([""])
    return {f: (pa.concat_arrays([*parts[f], empty]), where) for f in features}


def take_sorted(column: pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """``column.take(rows)`` for ascending ``rows``, chunk by chunk: a take over a chunked
    column concatenates its chunks first (picking 1M rows of a 10M-row segment copied all
    of them: 0.5 s)."""
    ends = np.cumsum([len(c) for c in column.chunks], dtype=np.int64)
    cuts = np.searchsorted(rows, ends)
    parts, lo, start = [], 0, 0
    for chunk, end, cut in zip(column.chunks, ends.tolist(), cuts.tolist(), strict=True):
        if cut > lo:
            parts.append(chunk.take(int64_array(rows[lo:cut] - start)))
        lo, start = cut, end
    if not parts:
        return column.slice(0, 0).combine_chunks()
    return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)


def _single_string_key(defs: Definitions, view: str) -> str | None:
    entity = defs.entity_of(view)
    if len(entity.join_keys) != 1:
        return None
    name, dtype = next(iter(entity.join_keys.items()))
    return name if dtype == "string" else None


def columnar_csv(log: OfflineLog, defs: Definitions, labels_path: str | os.PathLike[str],
                 refs: Sequence[str], out: str | os.PathLike[str], *, timestamp_column: str,
                 mode: JoinMode, full_feature_names: bool, upto_seq: int | None = None,
                 progress: Callable[[int], None] | None = None) -> ColumnarResult | None:
    """Build and write the training set by the fast path, or None where it does not apply
    (nothing is written then). The output is written to a temporary file and renamed."""
    source, target = Path(labels_path), Path(out)
    if source.suffix.lower() != ".csv" or target.suffix.lower() != ".csv" or not source.is_file():
        return None
    pairs = defs.resolve_refs(list(refs))
    views = list(dict.fromkeys(v for v, _ in pairs))
    key_of: dict[str, str] = {}
    for v in views:
        key = _single_string_key(defs, v) if defs.kind(v) != "transform" else None
        if key is None:
            return None
        key_of[v] = key
    if not log.has_tiers():
        return None
    bound = log.max_seq() if upto_seq is None else upto_seq
    if any(not list_segments(log.conn, v, bound) for v in views if v in defs.views):
        return None
    with ThreadPoolExecutor(max_workers=READ_AHEAD, thread_name_prefix="asof-read") as pool:
        # the first view's first segment's first row group is decoded while the labels
        # are parsed (an aggregation's source is read by the aggregation kernel)
        plain = [v for v in views if v in defs.views]
        early: dict[str, Future[pa.Table | None]] = {}
        if plain:
            first = list_segments(log.conn, plain[0], bound)[0]
            feats = [f for v, f in pairs if v == plain[0]]
            ahead = take_ahead(log.segments_dir / first.file, first.bytes,
                               group_columns(feats, mode), 0)
            early[first.file] = ahead if ahead is not None else pool.submit(
                read_first_group, log, first.file, first.bytes, feats, mode)
        return _columnar(log, defs, source, target, pairs, views, key_of, bound,
                         timestamp_column, mode, full_feature_names, progress, pool, early)


def _columnar(log: OfflineLog, defs: Definitions, source: Path, target: Path,
              pairs: list[tuple[str, str]], views: list[str], key_of: dict[str, str],
              bound: int, timestamp_column: str, mode: JoinMode, full_feature_names: bool,
              progress: Callable[[int], None] | None, pool: Executor,
              early: dict[str, Future[pa.Table | None]]) -> ColumnarResult | None:
    labels = read_plain_csv(source, timestamp_column, sorted(set(key_of.values())))
    if labels is None:
        return None
    names = output_names(pairs, full_feature_names)
    if set(names) & set(labels.columns) or any(k not in labels.columns for k in key_of.values()):
        return None  # the general path says what is wrong
    for key in set(key_of.values()):
        if (int_numpy(pc.binary_length(labels.cells.column(key))) == 0).any():
            return None
    cells: dict[tuple[str, str], Cells] = {}
    for v in views:
        feats = [f for vv, f in pairs if vv == v]
        keys = labels.cells.column(key_of[v]).combine_chunks().dictionary_encode()
        if v in defs.views:
            got = view_cells(log, defs, v, feats, keys, labels.times, mode, bound, pool, early)
        else:
            got = aggregation_cells(log, defs, v, feats, keys, labels.times, mode, bound)
        for f, arr in got.items():
            cells[(v, f)] = arr
        if progress is not None:
            progress(len(labels) * len(feats))
    write_csv(target, labels, names, [cells[p] for p in pairs])
    return ColumnarResult(len(labels), labels.columns + names, pairs, bound)


def aggregation_cells(log: OfflineLog, defs: Definitions, name: str, features: Sequence[str],
                      keys: pa.Array, times: np.ndarray, mode: JoinMode, upto_seq: int
                      ) -> dict[str, Cells]:
    """Per feature of the aggregation ``name``, the CSV cell of its value at each label
    (:func:`~.aggregate.aggregate_view`, the general path's kernel, fed the labels' keys
    and times as arrays; cells rendered as :class:`~.aggregate.AggMatches` does)."""
    from .aggregate import aggregate_view

    matches = aggregate_view(log, defs, name, features, keys, times, mode, upto_seq=upto_seq)
    return dict(zip(features, matches.csv_cells(features), strict=True))


#: label rows per block of output lines (bounded memory, and a block is written while
#: the next one is gathered: Arrow's take and the file write release the GIL)
WRITE_ROWS = 1 << 17


def write_csv(target: Path, labels: ColumnarLabels, names: list[str],
              cells: Sequence[Cells]) -> None:
    """The label lines with these feature columns (``names``, one CSV cell per label each)
    appended, written to ``target`` (atomically). Columns given as (cells, positions)
    with the same positions (one view's) are joined into one text per distinct row
    first; each block of output lines is then one ``take`` over the label lines and those
    texts, whose bytes are the file's (a take per column and a join per label cost
    more), written while the next block is gathered."""
    from .writers import csv_cell

    head = labels.header + "," + ",".join(map(csv_cell, names))
    values, index = _gather_plan(labels.lines, cells)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh, ThreadPoolExecutor(max_workers=1) as writer:
            fh.write(head.encode("utf-8"))
            pending: Future[int] | None = None
            for lo in range(0, len(index), WRITE_ROWS):
                block = values.take(int64_array(index[lo:lo + WRITE_ROWS].ravel()))
                if pending is not None:
                    pending.result()
                pending = writer.submit(fh.write, _data_view(block))
            if pending is not None:
                pending.result()
            fh.write(b"\n")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _gather_plan(lines: pa.Array, cells: Sequence[Cells]) -> tuple[pa.Array, np.ndarray]:
    """One array holding the label lines and, per run of columns with the same positions,
    their cells joined as ``,a,b,...``; and per label the positions of its line and of its
    texts in it."""
    n = len(lines)
    runs: list[tuple[list[pa.Array], np.ndarray | None]] = []
    for column in cells:
        values, at = column if isinstance(column, tuple) else (column, None)
        if runs and runs[-1][1] is at:  # the same positions, or both one cell per label
            runs[-1][0].append(values)
        else:
            runs.append(([values], at))
    parts: list[pa.Array] = [lines]
    index = np.empty((n, 1 + len(runs)), dtype=np.int64)
    index[:, 0] = np.arange(n, dtype=np.int64)
    base = n
    for j, (columns, at) in enumerate(runs):
        text = pc.binary_join_element_wise(_EMPTY, *columns, _SEP)  # ",a,b"
        index[:, 1 + j] = base + (np.arange(n, dtype=np.int64) if at is None else at)
        parts.append(text)
        base += len(text)
    # a cell may be picked for many labels: a block of WRITE_ROWS rows holds at most that
    # many times the widest line and texts, which must stay below 2 GiB for ``string``
    widest = sum(_widest(p) for p in parts)
    kind = pa.large_string() if WRITE_ROWS * widest >= 2**31 or any(
        p.type == pa.large_string() for p in parts) else pa.string()
    if sum(_data_size(p) for p in parts) >= 2**31:
        kind = pa.large_string()
    return pa.concat_arrays([p.cast(kind) if p.type != kind else p for p in parts]), index


def _data_size(arr: pa.Array) -> int:
    data = arr.buffers()[2]
    return 0 if data is None else int(data.size)


def _widest(arr: pa.Array) -> int:
    """The length of the longest element of a string array (bytes)."""
    if not len(arr):
        return 0
    dtype = np.int64 if arr.type == pa.large_string() else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset:arr.offset + len(arr) + 1]
    return int(np.diff(offsets).max())


def _data_view(chunk: pa.Array) -> memoryview:
    """The bytes of a string array's values, end to end."""
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32 if chunk.type == pa.string()
                            else np.int64)[chunk.offset:]
    data = chunk.buffers()[2]
    if data is None:
        return memoryview(b"")
    return memoryview(data)[offsets[0]:offsets[len(chunk)]]
