"""Per label, the rows of its window: ``t - w < event_timestamp <= t`` (``< t`` when strict),
and with ``as_known_at`` also ``ingest_ts <= t``.

Rows are sorted by (entity code, event_timestamp, seq), so without ``as_known_at`` a window is
the contiguous row range ``[lo, hi)``.  With it the window may have holes: labels whose range has
``max(ingest_ts) <= t`` (a range-max tree answers this) keep the contiguous range; the others are
expanded row by row, filtered on ``ingest_ts <= t``, and become contiguous ranges of a gather array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asof_stream.kernels.sortkeys import I64_MIN, check_sorted, composite_keys, packed_keys

from .segtree import ExtremeTree


@dataclass(frozen=True)
class Windows:
    """Label i's window is rows ``[lo[i], hi[i])``, or, where ``gathered[i]``, rows
    ``gather[lo[i]:hi[i]]`` (still in (event_timestamp, seq) order)."""

    n_rows: int
    lo: np.ndarray
    hi: np.ndarray
    gathered: np.ndarray
    gather: np.ndarray


def window_bounds(
    row_codes: np.ndarray,
    row_ts: np.ndarray,
    row_seq: np.ndarray | None,
    label_codes: np.ndarray,
    label_ts: np.ndarray,
    *,
    window_us: int | None,
    strict: bool = False,
    row_ingest: np.ndarray | None = None,
    as_known_at: bool = False,
) -> Windows:
    """Windows for labels in any order (label code -1: absent entity, empty window). None = all history.

    ``row_seq`` None: the rows are known to be in seq order on ties of (code, event_timestamp)
    (one segment's rows); only (code, event_timestamp) order is checked (windows depend on no more)."""
    row_codes = np.asarray(row_codes)
    if row_codes.dtype not in (np.int32, np.int64):  # int32 codes are kept (half the memory)
        row_codes = row_codes.astype(np.int64)
    row_ts = np.asarray(row_ts, dtype=np.int64)
    codes = np.asarray(label_codes, dtype=np.int64)
    t = np.asarray(label_ts, dtype=np.int64)
    if window_us is not None and window_us < 0:
        raise ValueError("window_us must be >= 0")
    if as_known_at and row_ingest is None:
        raise ValueError("as_known_at needs row_ingest")
    if row_seq is None:
        _check_grouped(row_codes, row_ts)
    else:
        check_sorted(row_codes, row_ts, np.asarray(row_seq, dtype=np.int64))
    m = len(t)
    lo = np.zeros(m, dtype=np.int64)
    hi = np.zeros(m, dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    present = np.flatnonzero(codes >= 0)
    if len(row_codes) and len(present):
        pc_, pt = codes[present], t[present]
        up_thr, up_neg, low_thr, low_neg = edge_thresholds(pt, window_us=window_us,
                                                           strict=strict)
        row_keys, probe_keys = _keys(
            row_codes,
            row_ts,
            np.concatenate([pc_, pc_]),
            np.concatenate([up_thr, low_thr]),
            np.concatenate([up_neg, low_neg]),
        )
        # searchsorted is right for needles in any order; in key order it is cache-friendly.
        # One sort (of the upper keys) orders the lower keys nearly as well: half the work.
        k = len(pt)
        order = np.argsort(probe_keys[:k])
        up = np.empty(k, dtype=np.int64)
        low = np.empty(k, dtype=np.int64)
        up[order] = np.searchsorted(row_keys, probe_keys[:k][order], side="right")
        low[order] = np.searchsorted(row_keys, probe_keys[k:][order], side="right")
        hi[present] = up
        lo[present] = np.minimum(low, up)
    gathered = np.zeros(m, dtype=bool)
    if not as_known_at:
        return Windows(len(row_codes), lo, hi, gathered, empty)
    assert row_ingest is not None
    ingest = np.asarray(row_ingest, dtype=np.int64)
    nonempty = np.flatnonzero(lo < hi)
    max_ing = ExtremeTree(ingest, np.maximum, I64_MIN).query(lo[nonempty], hi[nonempty])
    slow = nonempty[max_ing > t[nonempty]]
    gathered[slow] = True
    lengths = hi[slow] - lo[slow]
    owner = np.repeat(np.arange(len(slow)), lengths)
    starts = np.cumsum(lengths) - lengths
    pos = lo[slow][owner] + (np.arange(len(owner)) - starts[owner])
    keep = ingest[pos] <= t[slow][owner]
    gather = pos[keep]
    kept = np.bincount(owner[keep], minlength=len(slow))
    ends = np.cumsum(kept)
    lo, hi = lo.copy(), hi.copy()
    lo[slow], hi[slow] = ends - kept, ends
    return Windows(len(row_codes), lo, hi, gathered, gather)


def edge_thresholds(t: np.ndarray, *, window_us: int | None, strict: bool
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The window rule as thresholds on event_timestamp, per label time ``t``:
    ``(up_thr, up_neg, low_thr, low_neg)``. A row counts when ``ts <= up_thr`` and not
    ``ts <= low_thr``; ``*_neg`` marks a threshold below every int64 (no row is at or
    before it). Upper edge ``ts <= t`` (strict: ``ts <= t - 1``); lower edge: rows with
    ``ts <= t - w`` are out (``t - w`` below int64: none are; no window: none are). Both
    are non-decreasing in ``t``."""
    up_neg = (t == I64_MIN) if strict else np.zeros(len(t), dtype=bool)
    up_thr = np.where(up_neg, 0, t - 1) if strict else t
    if window_us is None:
        return up_thr, up_neg, np.zeros(len(t), dtype=np.int64), np.ones(len(t), dtype=bool)
    w = int(window_us)
    low_neg = t < I64_MIN + w if w <= -I64_MIN else np.ones(len(t), dtype=bool)
    low_thr = np.where(low_neg, 0, t - np.int64(min(w, -I64_MIN - 1)))
    return up_thr, up_neg, low_thr, low_neg


def _keys(row_codes: np.ndarray, row_ts: np.ndarray, probe_codes: np.ndarray,
          probe_thr: np.ndarray, probe_neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~asof_stream.kernels.sortkeys.composite_keys` with one new array over the
    rows instead of six (a row's key is ``code << b | (ts - min + 1)``, a probe's
    ``code << b | clip(thr - min + 1, 0, span)``) when they fit in 64 bits: at 10M rows
    the fresh memory of its temporaries was most of the windows' time."""
    top = max(int(row_codes[-1]), int(probe_codes.max()))  # rows are sorted by code
    layout = packed_keys(int(row_ts.min()), int(row_ts.max()), top)
    if layout is None:
        return composite_keys(row_codes, row_ts, probe_codes, probe_thr, probe_neg)
    row_keys = row_codes.astype(np.uint64)
    step = 1 << 20  # the time offsets a block at a time: no temporary over every row
    for at in range(0, len(row_keys), step):
        block = row_keys[at:at + step]
        block <<= layout.shift
        block |= (row_ts[at:at + step] - layout.base).view(np.uint64)
    return row_keys, layout.probes(probe_codes, probe_thr, probe_neg)


def _check_grouped(row_codes: np.ndarray, row_ts: np.ndarray) -> None:
    """Raise ValueError unless rows are sorted by (code, ts)."""
    if len(row_codes) < 2:
        return
    c0, c1 = row_codes[:-1], row_codes[1:]
    bad = (c1 < c0) | ((c1 == c0) & (row_ts[1:] < row_ts[:-1]))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"rows are not sorted by (entity, event_timestamp) at row {i + 1}")
