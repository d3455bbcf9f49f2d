"""The point-in-time (as-of) join: the one implementation behind every training set.

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
The older SQLite index-probe join lives on in :mod:`.sqlite_join` (partition shards).
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..definitions import Definitions
from ..kernels.asof_kernel import asof_indices, encode_entities, pick_latest
from ..offline.log import OfflineLog
from ..offline.scan import scan_view
from ..offline.segments import column_name


@dataclass(frozen=True, slots=True)
class JoinMode:
    """The options of the join rule (docs/join.md) that change which row is chosen."""

    strict: bool = False
    as_known_at: bool = False


@dataclass(slots=True)
class ViewMatches:
    """For one view, per label (in label order): the chosen row's seq, time and features.

    ``seqs[i]``, ``event_ts[i]`` and ``values[i]`` are None when no row qualifies.
    Labels that chose the same row share one dict: treat it as read-only. The per-label
    lists of times and values are made on first use (writing a CSV needs neither).
    """

    view: str
    seqs: list[int | None]
    by_seq: dict[int, dict[str, Any]]  # each chosen row's values, once
    times_by_seq: dict[int, int]  # each chosen row's event_timestamp
    _values: list[dict[str, Any] | None] | None = field(default=None, repr=False)
    _event_ts: list[int | None] | None = field(default=None, repr=False)

    @classmethod
    def empty(cls, view: str, n: int) -> ViewMatches:
        """No row chosen yet for any of ``n`` labels."""
        return cls(view, [None] * n, {}, {})

    # dict.get(None) is None: labels without a row get nulls, in one pass in C.
    @property
    def values(self) -> list[dict[str, Any] | None]:
        if self._values is None:
            self._values = list(map(self.by_seq.get, self.seqs))  # type: ignore[arg-type]
        return self._values

    @property
    def event_ts(self) -> list[int | None]:
        if self._event_ts is None:
            self._event_ts = list(map(self.times_by_seq.get, self.seqs))  # type: ignore[arg-type]
        return self._event_ts

    def table(self, render: Callable[[dict[str, Any]], Any]) -> list[Any]:
        """Per label, ``render(values)`` of its chosen row, computed once per row.

        Labels with no row get ``render({})`` (every feature missing).
        """
        return self.table_of_rows(lambda rows: list(map(render, rows)))

    def table_of_rows(self, render_rows: Callable[[list[dict[str, Any]]], list[Any]]
                      ) -> list[Any]:
        """Like :meth:`table`, with ``render_rows`` rendering every chosen row (and the
        empty row, last) in one call, so it can work a column at a time."""
        seqs: list[int | None] = [*self.by_seq, None]
        rendered = dict(zip(seqs, render_rows([*self.by_seq.values(), {}]), strict=True))
        return list(map(rendered.__getitem__, self.seqs))

    def column(self, feature: str) -> list[Any]:
        """One feature's values per label (None where nothing qualified or it is absent)."""
        return [None if v is None else v.get(feature) for v in self.values]

    def project(self, features: Sequence[str],
                convert: Callable[[Any], Any] | None = None) -> list[tuple[Any, ...]]:
        """Per label, a tuple of these features' values (each converted)."""
        if convert is None:
            return self.table(lambda v: tuple(map(v.get, features)))
        return self.table(lambda v: tuple(convert(v.get(f)) for f in features))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of acyclic objects are made."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def tune_reader(conn: sqlite3.Connection) -> None:
    """Settings for a connection of the join's own: temporary tables (the naive join's)
    in memory, and a 16 MiB page cache (as fast here as 64 MiB: probes in entity order
    revisit few pages).

    Memory-mapped reads made a 1M-row join about 10% faster, but counted the touched
    log file in the process's memory, which should grow with the labels, not the log.
    """
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -16384")




def asof_view(log: OfflineLog, defs: Definitions, view: str, keys: Sequence[str | None],
              times: Sequence[int], mode: JoinMode = JoinMode(), *,
              upto_seq: int | None = None,
              progress: Callable[[int], None] | None = None) -> ViewMatches:
    """Join one view for labels given as entity keys and times (same length, any order).

    ``upto_seq`` bounds the log to the rows committed when the join started (None: all
    committed now), so every view of one training set sees the same log even while the
    daemon appends and seals.
    """
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
        rows = np.unique(index[mine])  # each chosen row once
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
    return column.to_numpy()
