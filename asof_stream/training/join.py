"""The point-in-time (as-of) join: the one join behind every training set.

docs/join.md. For a label at time ``t`` and a view ``V``, the chosen log row is,
among the rows of ``V`` with the label's entity key, the one with the greatest
``(event_timestamp, seq)`` such that ``event_timestamp <= t`` (``< t`` when strict),
``t - event_timestamp <= ttl`` when ``V`` has a ttl, and ``ingest_ts <= t`` with
as-known-at. No such row: nulls.

How: a vectorized sort-merge over both tiers of the log. :func:`~asof_stream.offline.scan.scan_view`
reads the view's rows of the labels' entities, one sorted table per sealed segment and one
for the head; per tier, :func:`~asof_stream.kernels.asof_kernel.asof_indices` finds each
label's latest qualifying row, and :func:`~asof_stream.kernels.asof_kernel.pick_latest`
keeps the greatest ``(event_timestamp, seq)`` across tiers. The distinct chosen rows are
then turned into Python dicts once each (``take`` + ``to_pylist``), not once per label.
A view with no sealed segment is joined by SQLite index probes instead (:mod:`.sqlite_join`,
also the path of partition shards): see :func:`asof_view`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..definitions import Definitions
from ..kernels.asof_kernel import asof_indices, encode_entities, pick_latest
from ..kernels.buffers import int_numpy
from ..kernels.sortkeys import sorted_unique
from ..offline.log import OfflineLog
from ..offline.manifest import list_segments
from ..offline.scan import scan_view
from ..offline.segments import column_name
from .matches import JoinMode, ViewMatches, gc_paused, tune_reader
from .sqlite_join import sqlite_view

__all__ = ["JoinMode", "ViewMatches", "asof_view", "gc_paused", "kernel_view", "tune_reader"]


def asof_view(log: OfflineLog, defs: Definitions, view: str, keys: Sequence[str | None],
              times: Sequence[int], mode: JoinMode = JoinMode(), *,
              upto_seq: int | None = None,
              progress: Callable[[int], None] | None = None) -> ViewMatches:
    """Join one view for labels given as entity keys and times (same length, any order).

    ``upto_seq`` bounds the log to the rows committed when the join started (None: all
    committed now), so every view of one training set sees the same log even while the
    daemon appends and seals.

    A view with no sealed segment (under [log] seal_rows, or sealing off) is joined by SQLite's
    index probes (:mod:`.sqlite_join`) in the same read transaction that found no
    segment: decoding a big head into columns for the kernel cost 4x the probes
    (1M rows x 200k labels: 4.7 s vs 1.1 s). Otherwise :func:`kernel_view`.
    """
    if len(keys) != len(times):
        raise ValueError("keys and times differ in length")
    conn = log.conn
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        bound = log.max_seq() if upto_seq is None else upto_seq
        if not log.has_tiers() or not list_segments(conn, view, bound):
            return sqlite_view(log, defs, view, keys, times, mode,  # type: ignore[arg-type]
                               upto_seq=bound, progress=progress)
    finally:
        if own:
            conn.execute("COMMIT")
    return kernel_view(log, defs, view, keys, times, mode, upto_seq=bound, progress=progress)


def kernel_view(log: OfflineLog, defs: Definitions, view: str, keys: Sequence[str | None],
              times: Sequence[int], mode: JoinMode = JoinMode(), *,
              upto_seq: int | None = None,
              progress: Callable[[int], None] | None = None) -> ViewMatches:
    """:func:`asof_view` by the vectorized kernel over every tier (scan_view)."""
    n = len(keys)
    if n != len(times):
        raise ValueError("keys and times differ in length")
    if n == 0:
        return ViewMatches.empty(view, 0)
    spec = defs.views[view]
    features = spec.feature_names
    wanted = sorted({k for k in keys if k is not None})
    tiers = [t.table for t in scan_view(log, defs, view, max_seq=upto_seq, entities=wanted)]
    tiers = [t for t in tiers if t.num_rows] or tiers[-1:]
    label_entities = pa.array(keys, pa.string())
    label_ts = np.fromiter(times, dtype=np.int64, count=n)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for table in tiers:
        row_codes, label_codes = encode_entities(table.column("entity"), label_entities)
        ets = _numpy(table.column("event_timestamp"))
        seq = _numpy(table.column("seq"))
        idx = asof_indices(row_codes, ets, seq, label_codes, label_ts, strict=mode.strict,
                           ttl_us=spec.ttl, row_ingest=_numpy(table.column("ingest_ts")),
                           as_known_at=mode.as_known_at)
        found.append((idx, ets, seq))
    tier_of, index = pick_latest(found)
    chosen = np.full(n, -1, dtype=np.int64)
    by_seq: dict[int, dict[str, Any]] = {}
    times_by_seq: dict[int, int] = {}
    for k, table in enumerate(tiers):
        mine = tier_of == k
        if not mine.any():
            continue
        rows = sorted_unique(index[mine])  # each chosen row once
        chosen[mine] = found[k][2][index[mine]]
        picked = table.take(pa.array(rows))
        seqs = picked.column("seq").to_pylist()
        times_by_seq.update(zip(seqs, picked.column("event_timestamp").to_pylist(), strict=True))
        columns = [picked.column(column_name(f)).to_pylist() for f in features]
        by_seq.update(zip(seqs, (dict(zip(features, vals, strict=True))
                                 for vals in zip(*columns, strict=True)) if columns
                          else ({} for _ in seqs), strict=True))
    seq_list: list[int | None] = pa.array(chosen, mask=chosen < 0).to_pylist()
    if progress is not None:
        progress(n)
    return ViewMatches(view, seq_list, by_seq, times_by_seq)


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    """An int64 column without nulls as a numpy array."""
    return int_numpy(column)
