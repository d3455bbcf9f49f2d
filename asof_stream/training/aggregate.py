"""Windowed aggregations in training sets: each aggregated feature at each label's time,
computed from the raw rows of the aggregation's source view (docs/computed.md).

For a label at ``t`` and a feature ``fn(of)`` over ``window``, the rows of the label's
entity with ``t - window < event_timestamp <= t`` count (``< t`` when strict; with
as-known-at also ``ingest_ts <= t``; no window: every row up to ``t``). An empty window
gives count 0 and sum 0, every other function null. A view's ttl does not apply.

How: :func:`~.agg_source.coded_rows` reads the source view's rows (every tier,
``seq <= upto_seq``, only the columns needed) with each row's entity as a code of the
labels' sorted keys; the tiers come as one ``(entity, event_timestamp, seq)`` order, the
window bounds are found once per distinct window length
(:func:`~asof_stream.aggregations.bounds.window_bounds`) and every feature of that window
is aggregated over them (:func:`~asof_stream.aggregations.window.aggregate`). When the
source is one sealed segment (not as known at), :mod:`.agg_segment` finds the windows while
it reads the segment, a row group at a time, and no per-row code or time array is made.
Nothing on
this path converts Python values to Arrow (pyarrow would import pandas, a quarter to half
a second); the CSV cells of numbers are rendered by Arrow (:mod:`.csv_text`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..aggregations.bounds import Windows, window_bounds
from ..aggregations.window import Prepared, aggregate
from ..config import Config
from ..definitions import Definitions
from ..kernels.buffers import int64_array, int_numpy
from ..kernels.sortkeys import I64_MAX
from ..offline.log import OfflineLog
from ..offline.segments import text_array
from .agg_segment import source_windows
from .agg_source import CodedRows, coded_rows, key_codes
from .matches import JoinMode

_EMPTY, _COMMA = text_array([""]), text_array([","])  # scalars from Python values import pandas
ARROW_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
               "bool": pa.bool_()}


@dataclass(slots=True)
class AggMatches:
    """For one aggregation, per feature, one value per label (in label order).

    It answers the same questions a :class:`~.matches.ViewMatches` does, so the
    training set writes both alike."""

    view: str
    arrays: dict[str, pa.Array]
    _lists: dict[str, list[Any]] | None = None

    def column(self, feature: str) -> list[Any]:
        if self._lists is None:
            self._lists = {}
        got = self._lists.get(feature)
        if got is None:
            got = self._lists[feature] = self.arrays[feature].to_pylist()
        return got

    def project(self, features: Sequence[str],
                convert: Callable[[Any], Any] | None = None) -> list[tuple[Any, ...]]:
        cols = [self.column(f) for f in features]
        if convert is not None:
            cols = [list(map(convert, c)) for c in cols]
        return list(zip(*cols, strict=True))

    def csv_fragments(self, features: Sequence[str]) -> list[str]:
        """Per label, these features as the end of a CSV line, ``,v1,v2...`` (the cells
        rendered as a view's features are; numbers and booleans in bulk by Arrow)."""
        if not features:
            return [""] * len(next(iter(self.arrays.values()), []))
        texts = self.csv_cells(features)
        return pc.binary_join_element_wise(_EMPTY[0], *texts, _COMMA[0]).to_pylist()

    def csv_cells(self, features: Sequence[str]) -> list[pa.Array]:
        """Per feature, its CSV cell per label (numbers and booleans by :mod:`.csv_text`,
        on the CPUs; a text column a cell at a time by :func:`~.writers.csv_column`)."""
        return _in_threads(_csv_cells, [self.arrays[f] for f in features])

    def table_of_rows(self, render_rows: Callable[[list[dict[str, Any]]], list[Any]]
                      ) -> list[Any]:
        names = list(self.arrays)
        cols = [self.column(f) for f in names]
        rows = [dict(zip(names, vals, strict=True)) for vals in zip(*cols, strict=True)]
        return render_rows(rows)


def _csv_cells(arr: pa.Array) -> pa.Array:
    from .csv_text import csv_text
    from .writers import csv_column

    text = csv_text(arr)
    return text_array(csv_column(arr.to_pylist())) if text is None else text


def _in_threads(fn: Callable[[pa.Array], pa.Array], arrays: list[pa.Array]) -> list[pa.Array]:
    """``[fn(a) for a in arrays]``, over the CPUs for long ones (Arrow's kernels release
    the GIL; the CSV text of 4 columns of 1M labels is 0.5 s of CPU)."""
    workers = min(len(arrays), os.cpu_count() or 1)
    if workers <= 1 or len(arrays[0]) < 50_000:
        return [fn(a) for a in arrays]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, arrays))


@dataclass(slots=True)
class SourceRows:
    """An aggregation's source rows for some labels (:mod:`.agg_source`), and the labels'
    entity codes; or (``rows`` None) the value columns and the windows already found for
    some labels' times (:mod:`.agg_segment`), by (window length, strict)."""

    rows: CodedRows | None
    label_codes: np.ndarray
    prepared: dict[str, Prepared]
    columns: dict[str, pa.Array] = field(default_factory=dict)
    found: dict[tuple[int | None, bool], Windows] = field(default_factory=dict)

    def values(self, column: str) -> Prepared:
        got = self.prepared.get(column)
        if got is None:
            arr = self.columns[column] if self.rows is None else self.rows.values[column]
            got = self.prepared[column] = Prepared(arr)
        return got

    def windows(self, times: np.ndarray, window: int | None, mode: JoinMode) -> Windows:
        if self.rows is None:  # found for these labels' times, not as known at
            assert not mode.as_known_at
            return self.found[(window, mode.strict)]
        return window_bounds(self.rows.codes, self.rows.ts, self.rows.seq, self.label_codes,
                             times, window_us=window, strict=mode.strict,
                             row_ingest=self.rows.ingest, as_known_at=mode.as_known_at)


Keys: TypeAlias = Sequence[str | None] | pa.Array  # Arrow: strings, or a dictionary of them


def source_rows(log: OfflineLog, defs: Definitions, name: str, columns: Sequence[str],
                keys: Keys, *, upto_seq: int | None,
                ingest: bool = True) -> SourceRows:
    """The source view's rows (``seq <= upto_seq``) of the labels' entities (``ingest``:
    with their ingest times, which as-known-at needs)."""
    agg = defs.aggregations[name]
    coded = key_codes(keys)
    rows = coded_rows(log, defs, agg.source, columns, coded.wanted, upto_seq=upto_seq,
                      ingest=ingest)
    return SourceRows(rows, coded.label_codes, {})


def aggregate_view(log: OfflineLog, defs: Definitions, name: str, features: Sequence[str],
                   keys: Keys, times: Sequence[int] | np.ndarray,
                   mode: JoinMode = JoinMode(), *, upto_seq: int | None = None,
                   progress: Callable[[int], None] | None = None,
                   source: SourceRows | None = None) -> AggMatches:
    """The aggregation ``name``'s ``features`` for labels given as entity keys and times."""
    with small_pages():
        return _aggregate_view(log, defs, name, features, keys, times, mode,
                               upto_seq=upto_seq, progress=progress, source=source)


_NP_CORE = getattr(np, "_core", None) or np.core  # numpy 1.x: np.core
# numpy's own switch (private; NUMPY_MADVISE_HUGEPAGE=0 sets it for a whole process)
_set_madvise_hugepage: Callable[[bool], bool] | None = getattr(
    getattr(_NP_CORE, "multiarray", None), "_set_madvise_hugepage", None)


@contextmanager
def small_pages() -> Iterator[None]:
    """numpy asks for transparent huge pages for arrays of 4 MB and more; where the kernel
    compacts memory to make one on first touch (THP defrag "madvise", the default), a
    fresh 80 MB array cost 0.12-0.18 s of CPU against 0.03-0.04 s in small pages, and the
    aggregation's arrays live for a second: small pages while it runs (10M rows x 1M
    labels: 0.25-0.35 s less CPU, most of it the kernel's)."""
    if _set_madvise_hugepage is None:  # a numpy without the switch
        yield
        return
    before = _set_madvise_hugepage(False)
    try:
        yield
    finally:
        _set_madvise_hugepage(before)


def _aggregate_view(log: OfflineLog, defs: Definitions, name: str, features: Sequence[str],
                    keys: Keys, times: Sequence[int] | np.ndarray, mode: JoinMode, *,
                    upto_seq: int | None, progress: Callable[[int], None] | None,
                    source: SourceRows | None) -> AggMatches:
    agg = defs.aggregations[name]
    specs = [agg.feature(f) for f in features]
    n = len(keys)
    if n != len(times):
        raise ValueError("keys and times differ in length")
    label_ts = times.astype(np.int64, copy=False) if isinstance(times, np.ndarray) else \
        np.fromiter(times, dtype=np.int64, count=n)
    if source is None:
        columns = list(dict.fromkeys(s.of for s in specs if s.of is not None))
        lengths = list(dict.fromkeys(s.window for s in specs))
        got = source_windows(log, defs, agg.source, columns, keys, label_ts, lengths,
                             strict=mode.strict, as_known_at=mode.as_known_at,
                             upto_seq=upto_seq)
        source = SourceRows(got[0], got[1].label_codes, {}) if isinstance(got, tuple) else \
            SourceRows(None, np.zeros(0, np.int64), {}, got.values,
                       {(w, mode.strict): b for w, b in got.windows.items()})
    bounds: dict[int | None, Windows] = {}
    arrays: dict[str, pa.Array] = {}
    for spec in specs:
        if spec.window not in bounds:
            bounds[spec.window] = source.windows(label_ts, spec.window, mode)
        values = None if spec.of is None else source.values(spec.of)
        result = aggregate(bounds[spec.window], spec.fn, values)
        arrays[spec.name] = result.cast(ARROW_TYPES[defs.dtype_of(name, spec.name)])
    if progress is not None:
        progress(n)
    return AggMatches(name, arrays)


def naive_aggregate(log: OfflineLog, defs: Definitions, name: str, features: Sequence[str],
                    keys: Sequence[str | None], times: Sequence[int], mode: JoinMode, *,
                    upto_seq: int | None) -> tuple[AggMatches, AggMatches, list[bool]]:
    """For the leakage report: the point-in-time values, the naive ones (each feature over
    ALL the entity's rows, whatever the label's time and the window), and per label whether
    the naive ones used a row the point-in-time rule excludes at any window (a row after
    ``t``, at ``t`` when strict, or ingested after ``t`` as known at)."""
    agg = defs.aggregations[name]
    specs = [agg.feature(f) for f in features]
    columns = list(dict.fromkeys(s.of for s in specs if s.of is not None))
    source = source_rows(log, defs, name, columns, keys, upto_seq=upto_seq)
    pit = aggregate_view(log, defs, name, features, keys, times, mode, source=source)
    label_ts = np.fromiter(times, dtype=np.int64, count=len(times))
    everything = source.windows(np.full(len(times), I64_MAX, np.int64), None, JoinMode())
    naive = AggMatches(name, {
        s.name: aggregate(everything, s.fn, None if s.of is None else source.values(s.of)
                          ).cast(ARROW_TYPES[defs.dtype_of(name, s.name)]) for s in specs})
    usable = source.windows(label_ts, None, mode)
    total = int_numpy(aggregate(everything, "count"))
    seen = int_numpy(aggregate(usable, "count"))
    return pit, naive, (total > seen).tolist()


def aggregate_all(log: OfflineLog, defs: Definitions, wanted: dict[str, list[str]],
                  keys_by_name: dict[str, list[str]], times: Sequence[int], mode: JoinMode,
                  *, upto_seq: int | None,
                  progress: Callable[[int], None] | None = None) -> dict[str, AggMatches]:
    """:func:`aggregate_view` for several aggregations against one state of the log."""
    return {name: aggregate_view(log, defs, name, feats, keys_by_name[name], times, mode,
                                 upto_seq=upto_seq, progress=progress)
            for name, feats in wanted.items()}


def sharded_aggregate(config: Config, defs: Definitions, wanted: dict[str, list[str]],
                      keys_by_name: dict[str, list[str]], times: Sequence[int], mode: JoinMode,
                      *, marks: Mapping[str, int],
                      progress: Callable[[int], None] | None = None) -> dict[str, AggMatches]:
    """:func:`aggregate_all` over partition shards: every row of an entity is in its
    shard (:mod:`.sharded_join`), so each label is computed there, up to the shard's mark,
    and the values put back in label order. A label whose shard does not exist (yet) has
    an empty window."""
    from ..offline.log import open_log
    from ..offline.shards import Router, existing_shards, partition_count, shard_name

    n = len(times)
    shards = existing_shards(config)
    partitions = partition_count(config)
    route = Router(partitions) if partitions else None
    out: dict[str, AggMatches] = {}
    for name, feats in wanted.items():
        keys = keys_by_name[name]
        groups: dict[int, list[int]] = {}
        if route is not None:
            for i, key in enumerate(keys):
                groups.setdefault(route(key), []).append(i)
        parts: list[tuple[np.ndarray, AggMatches]] = []
        covered = np.zeros(n, dtype=bool)
        for p, idx in sorted(groups.items()):
            mark = marks.get(shard_name(p))
            if p not in shards or mark is None:
                continue
            with open_log(shards[p], readonly=True) as log:
                parts.append((np.asarray(idx, dtype=np.int64), aggregate_view(
                    log, defs, name, feats, [keys[i] for i in idx], [times[i] for i in idx],
                    mode, upto_seq=mark)))
            covered[idx] = True
        rest = np.flatnonzero(~covered)  # no shard: every window empty
        if len(rest):
            parts.append((rest, empty_windows(defs, name, feats, len(rest))))
        where = np.empty(n, dtype=np.int64)
        where[np.concatenate([ix for ix, _ in parts])] = np.arange(n)
        out[name] = AggMatches(name, {
            f: pa.concat_arrays([m.arrays[f] for _, m in parts]).take(int64_array(where))
            for f in feats})
        if progress is not None:
            progress(n)
    return out


def empty_windows(defs: Definitions, name: str, features: Sequence[str], n: int) -> AggMatches:
    """Every feature over an empty window, for ``n`` labels: count 0, sum 0, others null."""
    arrays = {}
    for f in features:
        fn = defs.aggregations[name].feature(f).fn
        dtype = ARROW_TYPES[defs.dtype_of(name, f)]
        arrays[f] = int64_array(np.zeros(n, np.int64)).cast(dtype) if fn in ("count", "sum") \
            else pa.nulls(n, dtype)
    return AggMatches(name, arrays)
