"""Each label's match in one tier of a view, for the columnar fast path (columnar.py).

A sealed segment is read a row group at a time (:class:`~asof_stream.offline.scan.OpenTier`),
so peak memory and fresh pages are those of one row group (256k rows), not of the file:
at 10M rows the whole-file read and the kernel's 10M-element arrays cost more in page
faults than in decoding on the machine measured (README "Performance"). Labels are
ordered by entity once (:class:`LabelOrder`); a row group's rows are sorted by entity,
so the labels it can answer are one slice of that order, matched by the kernel
(:func:`~asof_stream.kernels.asof_kernel.asof_indices`) against the group alone. An
entity whose rows run on into the next row group is matched in both: the later group's
match, when there is one, is the later row. The ttl is applied once every group is seen.

A tier's answer (:class:`TierMatch`) keeps, of the rows chosen, only their features,
``event_timestamp`` and ``seq`` (the "candidates"); the head tier, small, is matched whole.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..kernels.asof_kernel import asof_indices, encode_entities
from ..kernels.buffers import int64_array, int_numpy, valid_numpy
from ..kernels.sortkeys import ordered_u64, sorted_unique
from ..offline.log import OfflineLog
from ..offline.scan import BASE_COLUMNS, OpenTier
from ..offline.segments import SegmentGroups, column_name
from .matches import JoinMode
from .segment_ahead import take as take_ahead


@dataclass
class TierMatch:
    """Per label, the index of its candidate in this tier (-1: none); per candidate, its
    ``event_timestamp``, ``seq`` and feature columns (named by ``column_name``)."""

    index: np.ndarray
    ts: np.ndarray
    seq: np.ndarray
    features: pa.Table


class LabelOrder:
    """The labels of one view ordered by their key's rank among the distinct keys sorted
    as text (the segments' order): ``order`` (label positions), ``ranks`` (ascending, one
    per position; -1 first for a null key) and ``sorted_keys``."""

    def __init__(self, keys: pa.DictionaryArray) -> None:
        distinct = keys.dictionary
        by_text = int_numpy(pc.sort_indices(distinct)).astype(np.int64)
        self.sorted_keys = distinct.take(int64_array(by_text))
        rank_of = np.empty(len(distinct), dtype=np.int64)
        rank_of[by_text] = np.arange(len(distinct), dtype=np.int64)
        found = valid_numpy(keys.indices)
        ranks = np.where(found, rank_of[np.where(found, int_numpy(keys.indices), 0)]
                         if len(distinct) else -1, -1)
        self.order = stable_order(ranks + 1)
        self.ranks = ranks[self.order]

    def rank_range(self, first: str, last: str) -> tuple[int, int]:
        """The ranks of the keys from ``first`` to ``last`` (inclusive), as [lo, hi)."""
        return self._bisect(first, right=False), self._bisect(last, right=True)

    def _bisect(self, value: str, *, right: bool) -> int:
        lo, hi = 0, len(self.sorted_keys)
        while lo < hi:
            mid = (lo + hi) // 2
            at = str(self.sorted_keys[mid].as_py())
            if at < value or (right and at == value):
                lo = mid + 1
            else:
                hi = mid
        return lo


def stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for keys in [0, 2**32), by numpy's radix sort of
    16-bit keys (once, or on the low then the high halves): a tenth of the time of the
    int64 timsort at 200k keys."""
    if not len(keys) or int(keys.max()) < 2**16:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    if int(keys.max()) >= 2**32:
        return np.argsort(keys, kind="stable")
    by_low = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    return by_low[np.argsort((keys[by_low] >> 16).astype(np.uint16), kind="stable")]


def read_first_group(log: OfflineLog, file: str, size: int, features: Sequence[str],
                     mode: JoinMode) -> pa.Table:
    """Row group 0 of a segment with the columns :func:`~.offline.scan.open_view` reads
    for ``features`` in ``mode`` (to start before the labels, which pick the groups)."""
    return SegmentGroups(log.segments_dir / file, size, group_columns(features, mode)).read(0)


def group_columns(features: Sequence[str], mode: JoinMode) -> list[str]:
    """The columns :func:`~.offline.scan.open_view` reads for ``features`` in ``mode``."""
    base = [c for c in BASE_COLUMNS if mode.as_known_at or c != "ingest_ts"]
    return [*base, *(column_name(f) for f in features)]


#: row groups being read ahead of the one matched (each read on its own thread)
READ_AHEAD = 2


def prefetched_groups(tier: OpenTier, pool: Executor | None,
                      group0: Future[pa.Table | None] | None = None
                      ) -> Iterator[tuple[int, pa.Table]]:
    """``tier``'s row groups read in order, :data:`READ_AHEAD` of them read in ``pool``
    while the one before is matched (Arrow decodes without the GIL, so with two threads
    both cores decode; READ_AHEAD + 1 row groups held at most). ``group0``: row group 0
    of the same file, already being read (used when that group is picked); a group read
    ahead of the config (:mod:`.segment_ahead`) is used too. A read that gave None is
    done again here."""
    groups = tier.groups.groups
    if pool is None:
        for g in groups:
            yield g, tier.groups.read(g)
        return
    first = group0 if groups and groups[0] == 0 else None
    del group0
    pending: deque[Future[pa.Table | None]] = deque()
    for i, g in enumerate(groups):
        while len(pending) <= READ_AHEAD and i + len(pending) < len(groups):
            at = i + len(pending)
            ahead = take_ahead(tier.groups.path, tier.segment.bytes, tier.groups.columns,
                               groups[at])
            if at == 0 and first is not None:
                pending.append(first)
                first = None
            elif ahead is not None:
                pending.append(ahead)
            else:
                pending.append(pool.submit(tier.groups.read, groups[at]))
        table = pending.popleft().result()
        yield g, table if table is not None else tier.groups.read(g)


def segment_match(tier: OpenTier, order: LabelOrder, times: np.ndarray, mode: JoinMode,
                  ttl_us: int | None, features: Sequence[str], pool: Executor | None = None,
                  group0: Future[pa.Table | None] | None = None) -> TierMatch:
    """Each label's match in a sealed tier, a row group at a time (see the module doc;
    ``pool``, ``group0``: as :func:`prefetched_groups` reads them)."""
    index = np.full(len(times), -1, dtype=np.int64)
    ts_parts: list[np.ndarray] = []
    seq_parts: list[np.ndarray] = []
    cells: dict[str, list[pa.Array]] = {f: [] for f in features}
    count = 0
    last: tuple[str, int, int] | None = None
    reads = prefetched_groups(tier, pool, group0)
    del group0  # not to hold row group 0 to the end
    for g, group in reads:
        table = tier.within_bound(group)
        if not table.num_rows:
            continue
        entity = table.column("entity")
        ets, seq = int_numpy(table.column("event_timestamp")), int_numpy(table.column("seq"))
        first = (str(entity[0].as_py()), int(ets[0]), int(seq[0]))
        if last is not None and first <= last:
            raise ValueError(f"segment {tier.segment.file}: rows are not sorted by (entity, "
                             f"event_timestamp, seq) at row group {g}")
        last = (str(entity[-1].as_py()), int(ets[-1]), int(seq[-1]))
        lo, hi = order.rank_range(first[0], last[0])
        a, b = np.searchsorted(order.ranks, [lo, hi], side="left").tolist()
        if a == b:
            continue
        row_codes, key_codes = encode_entities(entity, order.sorted_keys.slice(lo, hi - lo))
        labels = order.order[a:b]
        local = asof_indices(row_codes, ets, seq, key_codes[order.ranks[a:b] - lo],
                             times[labels], strict=mode.strict,
                             row_ingest=int_numpy(table.column("ingest_ts"))
                             if mode.as_known_at else None, as_known_at=mode.as_known_at)
        hit = np.flatnonzero(local >= 0)
        if not len(hit):
            continue
        rows = sorted_unique(local[hit])
        index[labels[hit]] = count + np.searchsorted(rows, local[hit])
        count += len(rows)
        ts_parts.append(ets[rows])
        seq_parts.append(seq[rows])
        for f in features:
            cells[f].extend(table.column(column_name(f)).take(int64_array(rows)).chunks)
    ts = np.concatenate(ts_parts) if ts_parts else np.zeros(0, np.int64)
    seqs = np.concatenate(seq_parts) if seq_parts else np.zeros(0, np.int64)
    if ttl_us is not None:
        hit = np.flatnonzero(index >= 0)
        # t >= ts for a chosen row, so the modular uint64 difference is the true age
        age = ordered_u64(times[hit]) - ordered_u64(ts[index[hit]])
        index[hit[age > np.uint64(ttl_us)]] = -1
    schema = tier.groups.file.schema_arrow
    columns = {column_name(f): pa.chunked_array(cells[f], schema.field(column_name(f)).type)
               for f in features}
    return TierMatch(index, ts, seqs, pa.table(columns) if columns else
                     pa.Table.from_arrays([], names=[]))


def head_match(table: pa.Table, keys: pa.Array, times: np.ndarray, mode: JoinMode,
               ttl_us: int | None, features: Sequence[str]) -> TierMatch:
    """Each label's match in a tier read whole (the head)."""
    row_codes, label_codes = encode_entities(table.column("entity"), keys)
    ets, seq = int_numpy(table.column("event_timestamp")), int_numpy(table.column("seq"))
    idx = asof_indices(row_codes, ets, seq, label_codes, times, strict=mode.strict,
                       ttl_us=ttl_us, row_ingest=int_numpy(table.column("ingest_ts"))
                       if mode.as_known_at else None, as_known_at=mode.as_known_at)
    hit = np.flatnonzero(idx >= 0)
    rows = sorted_unique(idx[hit])
    index = np.full(len(times), -1, dtype=np.int64)
    index[hit] = np.searchsorted(rows, idx[hit])
    picked = table.select([column_name(f) for f in features]).take(int64_array(rows))
    return TierMatch(index, ets[rows], seq[rows], picked)
