"""Bottom-up segment trees queried for many half-open ranges [lo, hi) at once, level by level.

Each level halves the previous one (an odd tail is padded with the identity before pairing).
A query touches at most two nodes per level, so m ranges cost O(m log n) vectorized work,
and ranges that finish early drop out of the active set.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .dd import dd_add


def _pad_even(a: np.ndarray, fill: float | int) -> np.ndarray:
    return a if len(a) % 2 == 0 else np.append(a, np.array([fill], dtype=a.dtype))


Visit = Callable[[int, np.ndarray, np.ndarray], None]


def _walk(n_levels: int, lo: np.ndarray, hi: np.ndarray, visit: Visit) -> None:
    """Call ``visit(level, which_ranges, node_index)`` for every node of every range's decomposition."""
    l_idx = np.asarray(lo, dtype=np.int64).copy()
    r_idx = np.asarray(hi, dtype=np.int64).copy()
    active = np.flatnonzero(l_idx < r_idx)
    for k in range(n_levels):
        if active.size == 0:
            return
        la, ra = l_idx[active], r_idx[active]
        m = (la & 1) == 1
        if m.any():
            visit(k, active[m], la[m])
            la[m] += 1
        m = ((ra & 1) == 1) & (la < ra)
        if m.any():
            ra[m] -= 1
            visit(k, active[m], ra[m])
        la >>= 1
        ra >>= 1
        l_idx[active], r_idx[active] = la, ra
        active = active[la < ra]


class SumTree:
    """Double-double sums of ranges: error about log2(n) * 2**-104 * sum(|x|) before the final rounding."""

    def __init__(self, hi: np.ndarray, lo: np.ndarray | None = None) -> None:
        h = np.ascontiguousarray(hi, dtype=np.float64)
        low = np.zeros_like(h) if lo is None else np.ascontiguousarray(lo, dtype=np.float64)
        self.levels = [(h, low)]
        while len(h) > 1:
            h, low = _pad_even(h, 0.0), _pad_even(low, 0.0)
            h, low = dd_add(h[0::2], low[0::2], h[1::2], low[1::2])
            self.levels.append((h, low))

    def query(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        acc_h = np.zeros(len(lo), dtype=np.float64)
        acc_l = np.zeros(len(lo), dtype=np.float64)

        def visit(k: int, which: np.ndarray, node: np.ndarray) -> None:
            nh, nl = self.levels[k]
            acc_h[which], acc_l[which] = dd_add(acc_h[which], acc_l[which], nh[node], nl[node])

        _walk(len(self.levels), lo, hi, visit)
        return acc_h, acc_l


class ExtremeTree:
    """Range minimum or maximum (``op`` np.minimum / np.maximum) with the given identity."""

    def __init__(self, values: np.ndarray, op: np.ufunc, identity: float | int) -> None:
        a = np.ascontiguousarray(values)
        self.op, self.identity = op, identity
        self.levels = [a]
        while len(a) > 1:
            a = _pad_even(a, identity)
            a = op(a[0::2], a[1::2])
            self.levels.append(a)

    def query(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        acc = np.full(len(lo), self.identity, dtype=self.levels[0].dtype)

        def visit(k: int, which: np.ndarray, node: np.ndarray) -> None:
            acc[which] = self.op(acc[which], self.levels[k][node])

        _walk(len(self.levels), lo, hi, visit)
        return acc
