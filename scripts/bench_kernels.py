#!/usr/bin/env python
"""Benchmark: the as-of and window kernels against DuckDB on the same in-memory arrays.

Rows: one view, random µs times over 90 days, per-entity times distinct (duplicates dropped)
so DuckDB's ASOF JOIN has one right answer; values float64 with ~2% nulls.  Labels: random
entities (2% unknown) at random times, 10% exactly at a row's time and 10% exactly 7 days after
one (the window edges).  Timed from in-memory arrays (no file I/O):

- as-of: ``encode_entities`` + ``asof_indices``   vs  DuckDB ``ASOF LEFT JOIN``
- window: ``window_bounds`` + count/sum/mean/max over 7 days  vs  DuckDB LEFT JOIN on entity with
  ``ts > t - 7d AND ts <= t`` grouped by label row (``fsum``, compensated, for sum and mean)

Every cell is compared (sums/means to 1e-12 relative, the rest exactly).  Usage::

    python scripts/bench_kernels.py              # 1M rows x 200k labels, 20k entities
    python scripts/bench_kernels.py --size 10m   # 10M rows x 1M labels, 1M entities
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from asof_stream.aggregations.bounds import window_bounds
from asof_stream.aggregations.window import aggregate
from asof_stream.kernels.asof_kernel import asof_indices, encode_entities

SIZES = {"1m": (1_000_000, 200_000, 20_000), "10m": (10_000_000, 1_000_000, 1_000_000)}
DAY = 86_400_000_000
WEEK = 7 * DAY


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def make_data(n: int, m: int, e: int, seed: int = 7) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)
    ent = rng.integers(0, e, n)
    ts = rng.integers(0, 90 * DAY, n)
    order = np.lexsort((ts, ent))
    ent, ts = ent[order], ts[order]
    dup = np.zeros(n, bool)
    dup[1:] = (ent[1:] == ent[:-1]) & (ts[1:] == ts[:-1])
    ent, ts = ent[~dup], ts[~dup]
    n = len(ent)
    names = np.char.add("e", np.char.zfill(np.arange(e).astype(str), 7))
    vals = rng.lognormal(3, 2, n) * rng.choice([-1.0, 1.0], n)
    rows = pa.table({
        "entity": pa.array(names[ent]), "ts": ts, "seq": np.arange(n, dtype=np.int64),
        "v": pa.array(vals, mask=rng.random(n) < 0.02),
    })  # fmt: skip
    lent = rng.integers(0, e, m)
    lt = rng.integers(0, 100 * DAY, m)
    pick = rng.integers(0, n, m)
    kind = rng.random(m)
    lt = np.where(kind < 0.1, ts[pick], np.where(kind < 0.2, ts[pick] + WEEK, lt))
    lent = np.where(kind < 0.2, ent[pick], lent)
    lnames = names[lent].astype(object)
    lnames[rng.random(m) < 0.02] = "unknown"
    labels = pa.table({"lid": np.arange(m, dtype=np.int64), "entity": pa.array(lnames, pa.string()), "t": lt})
    return rows, labels


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=sorted(SIZES), default="1m")
    args = ap.parse_args()
    n, m, e = SIZES[args.size]
    rows, labels = make_data(n, m, e)
    print(f"rows {rows.num_rows:,}  labels {labels.num_rows:,}  entities {e:,}  (data RSS {rss_mb():.0f} MB)")
    ts = rows["ts"].to_numpy()
    seq = rows["seq"].to_numpy()
    lt = labels["t"].to_numpy()
    res: list[tuple[str, float, float, float]] = []

    def ours_asof() -> np.ndarray:
        rc, lc = encode_entities(rows["entity"], labels["entity"])
        return asof_indices(rc, ts, seq, lc, lt)

    idx, t_ours = timed(ours_asof)
    rss_ours = rss_mb()
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.register("r", rows)
    con.register("l", labels)
    q = "SELECT l.lid, r.seq FROM l ASOF LEFT JOIN r ON l.entity = r.entity AND l.t >= r.ts ORDER BY l.lid"
    duck, t_duck = timed(lambda: con.sql(q).to_arrow_table())
    dseq = np.asarray(duck["seq"].fill_null(-1).to_numpy(), dtype=np.int64)
    assert np.array_equal(np.where(idx >= 0, seq[np.maximum(idx, 0)], -1), dseq), "as-of mismatch"
    res.append(("as-of", t_ours, t_duck, rss_ours))

    def ours_window() -> dict[str, pa.Array]:
        rc, lc = encode_entities(rows["entity"], labels["entity"])
        w = window_bounds(rc, ts, seq, lc, lt, window_us=WEEK)
        return {f: aggregate(w, f, rows["v"]) for f in ("count", "sum", "mean", "max")}  # type: ignore[arg-type]

    agg, t_ours_w = timed(ours_window)
    rss_w = rss_mb()
    qw = f"""SELECT l.lid, count(r.v) AS count, fsum(r.v) AS sum,
                    fsum(r.v) / count(r.v) AS mean, max(r.v) AS max
             FROM l LEFT JOIN r ON r.entity = l.entity AND r.ts > l.t - {WEEK} AND r.ts <= l.t
             GROUP BY l.lid ORDER BY l.lid"""
    dw, t_duck_w = timed(lambda: con.sql(qw).to_arrow_table())
    assert agg["count"].to_pylist() == dw["count"].to_pylist(), "count mismatch"
    assert agg["max"].to_pylist() == dw["max"].to_pylist(), "max mismatch"
    worst = {}
    for f in ("sum", "mean"):
        ours = agg[f].to_numpy(zero_copy_only=False).astype(float)
        theirs = dw[f].to_numpy().astype(float)
        if f == "sum":
            theirs = np.nan_to_num(theirs, nan=0.0)  # SQL gives NULL for an empty sum; ours 0.0
        both = ~np.isnan(ours) | ~np.isnan(theirs)
        assert np.array_equal(np.isnan(ours), np.isnan(theirs)), f"{f} null mismatch"
        rel = np.abs(ours[both] - theirs[both]) / np.maximum(np.abs(theirs[both]), 1e-300)
        worst[f] = float(np.nanmax(rel)) if rel.size else 0.0
        assert worst[f] <= 1e-12, f"{f} differs by {worst[f]:.3g}"
    res.append(("window 7d x4", t_ours_w, t_duck_w, rss_w))
    print(f"{'kernel':<14}{'ours s':>9}{'duckdb s':>10}{'ratio':>8}{'peak RSS MB':>13}")
    for name, a, b, r in res:
        print(f"{name:<14}{a:>9.3f}{b:>10.3f}{b / a:>7.2f}x{r:>13.0f}")
    print(f"all cells equal (sum/mean worst relative diff vs duckdb fsum: {worst})")
    print(f"peak RSS overall {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
