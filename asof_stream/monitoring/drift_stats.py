"""Drift statistics in plain Python: PSI (numeric deciles or categories) and two-sample KS.

PSI (population stability index) of a current sample against a reference:
``sum over bins of (c_i - r_i) * ln(c_i / r_i)`` where ``r_i`` and ``c_i`` are the
shares of each sample in bin ``i``.

- Numeric bins: the reference's deciles (the 10%, ..., 90% quantiles, linear
  interpolation between order statistics, as numpy's default) are the inner edges;
  equal edges (ties, e.g. a feature that is 0 half of the time) are merged, so a
  heavily tied reference gives fewer than 10 bins. Bins are closed on the right:
  ``(-inf, e1], (e1, e2], ..., (ek, +inf)``, so a value equal to an edge falls in the
  bin below it and every tied value lands in one bin.
- Categorical bins: one per reference category, then one per category only the
  current sample has (unseen categories get their own bin each).
- Empty bins: a share of 0 is replaced by :data:`EPSILON` (1e-4) before the formula, on
  both sides (no renormalisation), so PSI stays finite.

KS: the largest distance between the two empirical distribution functions. Its
p-value is exact (counting lattice paths, as ``scipy.stats.ks_2samp(method="exact")``)
when ``m * n <= EXACT_MAX``, else the asymptotic Kolmogorov distribution with
Stephens' effective-n correction: ``lambda = (sqrt(ne) + 0.12 + 0.11 / sqrt(ne)) * D``
with ``ne = m * n / (m + n)``, ``p = Q_KS(lambda)``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

EPSILON = 1e-4
EXACT_MAX = 10_000
DECILES = tuple(i / 10 for i in range(1, 10))


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, linear interpolation (numpy's default)."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("quantile of no values")
    h = (n - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    a, b = sorted_values[lo], sorted_values[hi]
    return a + (h - lo) * (b - a) if a != b else a


def decile_edges(reference: Sequence[float]) -> list[float]:
    """The distinct inner bin edges: the reference's deciles, ties merged."""
    values = sorted(reference)
    edges: list[float] = []
    for q in DECILES:
        e = quantile(values, q)
        if not edges or e > edges[-1]:
            edges.append(e)
    return edges


def bin_counts(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """How many values fall in each bin ``(-inf, e1], (e1, e2], ..., (ek, +inf)``."""
    counts = [0] * (len(edges) + 1)
    for v in values:
        counts[bisect_left(edges, v)] += 1
    return counts


def shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def psi_from_counts(reference: Sequence[int], current: Sequence[int],
                    epsilon: float = EPSILON) -> float:
    """PSI of two binned samples; empty bins count as ``epsilon``."""
    if len(reference) != len(current):
        raise ValueError("the two samples need the same bins")
    total = 0.0
    for r, c in zip(shares(reference), shares(current), strict=True):
        r = max(r, epsilon)
        c = max(c, epsilon)
        total += (c - r) * math.log(c / r)
    return total


@dataclass(frozen=True)
class Binned:
    """Bins (labels), the counts of each sample in them, and the PSI."""

    labels: list[str]
    reference: list[int]
    current: list[int]
    psi: float


def _edge(x: float) -> str:
    return f"{x:.6g}"


def numeric_psi(reference: Sequence[float], current: Sequence[float]) -> Binned:
    """PSI over the reference's deciles (both samples non-empty)."""
    edges = decile_edges(reference)
    labels = []
    bounds = [-math.inf, *edges, math.inf]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        left = "(-inf" if lo == -math.inf else f"({_edge(lo)}"
        right = "+inf)" if hi == math.inf else f"{_edge(hi)}]"
        labels.append(f"{left}, {right}")
    ref, cur = bin_counts(reference, edges), bin_counts(current, edges)
    return Binned(labels, ref, cur, psi_from_counts(ref, cur))


def categorical_psi(reference: Sequence[str], current: Sequence[str]) -> Binned:
    """PSI over categories: the reference's (most common first), then unseen ones."""
    rc, cc = Counter(reference), Counter(current)
    cats = sorted(rc, key=lambda k: (-rc[k], k))
    cats += sorted(k for k in cc if k not in rc)
    ref = [rc.get(k, 0) for k in cats]
    cur = [cc.get(k, 0) for k in cats]
    return Binned(cats, ref, cur, psi_from_counts(ref, cur))


# --- Kolmogorov-Smirnov ---------------------------------------------------------------


def ks_statistic_counts(a: Sequence[float], b: Sequence[float]) -> tuple[int, int, int]:
    """``(k, m, n)`` with ``D = k / (m * n)``: the exact KS distance as an integer ratio.

    At each distinct value, after both samples' values up to and including it, the
    distance ``|i/m - j/n|`` is ``|i*n - j*m| / (m*n)``; ties are passed together.
    """
    xs, ys = sorted(a), sorted(b)
    m, n = len(xs), len(ys)
    if m == 0 or n == 0:
        raise ValueError("KS needs two non-empty samples")
    i = j = 0
    best = 0
    while i < m or j < n:
        if j >= n or (i < m and xs[i] <= ys[j]):
            v = xs[i]
        else:
            v = ys[j]
        while i < m and xs[i] == v:
            i += 1
        while j < n and ys[j] == v:
            j += 1
        best = max(best, abs(i * n - j * m))
    return best, m, n


def kolmogorov_sf(lam: float) -> float:
    """``Q_KS(lambda) = P(K > lambda)`` for the Kolmogorov distribution."""
    if lam <= 0:
        return 1.0
    if lam < 1.18:  # the theta-function form converges fast for small lambda
        s = 0.0
        for k in range(1, 50):
            s += math.exp(-((2 * k - 1) ** 2) * math.pi ** 2 / (8 * lam * lam))
        return min(1.0, max(0.0, 1.0 - math.sqrt(2 * math.pi) / lam * s))
    s = 0.0
    for k in range(1, 101):
        term = math.exp(-2 * k * k * lam * lam)
        s += term if k % 2 else -term
        if term < 1e-17:
            break
    return min(1.0, max(0.0, 2 * s))


def ks_pvalue_asymptotic(d: float, m: int, n: int) -> float:
    """Asymptotic two-sided p-value, Stephens' correction with ``ne = m n / (m + n)``."""
    ne = m * n / (m + n)
    root = math.sqrt(ne)
    return kolmogorov_sf((root + 0.12 + 0.11 / root) * d)


def ks_pvalue_exact(k: int, m: int, n: int) -> float:
    """Exact two-sided p-value ``P(D >= k / (m n))`` under the null, by lattice paths.

    Counts the monotone paths from (0, 0) to (m, n) that stay strictly inside
    ``|i n - j m| < k`` at every point (Python integers, no rounding), then
    ``p = 1 - inside / C(m + n, m)``.
    """
    if k <= 0:
        return 1.0
    row = [0] * (n + 1)
    for j in range(n + 1):  # i = 0
        if j * m < k:
            row[j] = 1
        else:
            break
    for i in range(1, m + 1):
        new = [0] * (n + 1)
        for j in range(n + 1):
            if abs(i * n - j * m) >= k:
                continue
            new[j] = row[j] + (new[j - 1] if j else 0)
        row = new
    inside = row[n]
    total = comb(m + n, m)
    return float((total - inside) / total)


@dataclass(frozen=True)
class KS:
    statistic: float
    pvalue: float
    method: str  # "exact" or "asymptotic"


def ks_2samp(a: Sequence[float], b: Sequence[float], *, exact_max: int = EXACT_MAX) -> KS:
    """The two-sample KS statistic and two-sided p-value (exact for small samples)."""
    k, m, n = ks_statistic_counts(a, b)
    d = k / (m * n)
    if m * n <= exact_max:
        return KS(d, ks_pvalue_exact(k, m, n), "exact")
    return KS(d, ks_pvalue_asymptotic(d, m, n), "asymptotic")
