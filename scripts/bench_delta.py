#!/usr/bin/env python
"""Benchmark: registering sealed segments by our SQLite manifest vs a Delta Lake table.

The question the README answers with it: is Delta Lake's snapshot isolation (the
``deltalake`` package) worth its weight beside the manifest table in the head's SQLite
file? Both sides get the same sorted rows (``--rows``, in appends of ``--batch``):

- ours: ``offline/segments.write_segment`` (zstd, page checksums, temp name, fsync,
  rename, sha256) then one SQLite transaction registering the file (the real seal also
  deletes the rows from the head in that same transaction);
- Delta: ``write_deltalake(mode="append")`` with zstd (a Parquet file plus a JSON commit
  in ``_delta_log``; deleting the rows from the head would be a second commit beside it).

Then a snapshot of the last version is read by DuckDB (``read_parquet`` over the file
list: ours from the manifest, Delta's from ``DeltaTable(version=...).file_uris()``).
Each side runs in its own process so import time and peak RSS are its own.

Usage: ``pip install deltalake && python scripts/bench_delta.py [--rows N] [--repeat K]``
(without ``deltalake`` it says so and times our side only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rows_table(n: int) -> object:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(7)
    entities = np.sort(rng.integers(0, n // 50 + 1, n))
    return pa.table({
        "entity": pa.array([f"c{e:07d}" for e in entities]),
        "event_timestamp": pa.array(np.arange(n, dtype=np.int64) * 1000, pa.int64()),
        "seq": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        "ingest_ts": pa.array(np.arange(n, dtype=np.int64) * 1000 + 5, pa.int64()),
        "spend": pa.array(rng.random(n) * 100),
        "orders": pa.array(rng.integers(0, 50, n)),
    })


def child(side: str, work: Path, n: int, batch: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    import duckdb

    table = rows_table(n)
    parts = [table.slice(i, batch) for i in range(0, n, batch)]  # type: ignore[attr-defined]
    if side == "delta":
        from deltalake import DeltaTable, WriterProperties, write_deltalake
    else:
        from asof_stream.offline.segments import write_segment
    appends = []
    files: list[str] = []
    if side == "delta":
        props = WriterProperties(compression="ZSTD")
        for part in parts:
            t = time.perf_counter()
            write_deltalake(str(work / "delta"), part, mode="append", writer_properties=props)
            appends.append(time.perf_counter() - t)
        t = time.perf_counter()
        files = DeltaTable(str(work / "delta"), version=len(parts) - 1).file_uris()
    else:
        db = sqlite3.connect(work / "log.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE segments (file TEXT, rows INTEGER, size INTEGER, sha256 TEXT)")
        for i, part in enumerate(parts):
            t = time.perf_counter()
            path = work / "ours" / f"L0-{i:06d}.parquet"
            size, checksum = write_segment(path, part)
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO segments VALUES (?, ?, ?, ?)",
                       (str(path), part.num_rows, size, checksum))
            db.execute("COMMIT")
            appends.append(time.perf_counter() - t)
        t = time.perf_counter()
        files = [r[0] for r in db.execute("SELECT file FROM segments ORDER BY rowid")]
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    query = f"SELECT count(*), sum(seq) FROM read_parquet([{listing}])"
    [(count, total)] = duckdb.sql(query).fetchall()
    snapshot = time.perf_counter() - t
    assert count == n and total == n * (n + 1) // 2, (count, total)
    disk = sum(f.stat().st_size for f in work.rglob("*") if f.is_file())
    appends.sort()
    return {"appends": sum(appends), "p50": appends[len(appends) // 2],
            "max": appends[-1], "snapshot": snapshot, "disk_mb": disk / 2**20,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per side (best total shown)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        side, work = args.child.split(":", 1)
        print(json.dumps(child(side, Path(work), args.rows, args.batch)))
        return
    sides = ["ours"]
    try:
        import deltalake  # noqa: F401
        sides.append("delta")
    except ImportError:
        print("deltalake is not installed (pip install deltalake): timing our side only",
              file=sys.stderr)
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for side in sides:
            work = Path(tempfile.mkdtemp(prefix=f"asof-delta-{side}-"))
            try:
                out = subprocess.run([sys.executable, __file__, "--rows", str(args.rows),
                                      "--batch", str(args.batch), "--child", f"{side}:{work}"],
                                     check=True, capture_output=True, text=True).stdout
            finally:
                shutil.rmtree(work, ignore_errors=True)
            got = json.loads(out)
            if side not in best or got["appends"] < best[side]["appends"]:
                best[side] = got
    print(f"\n{args.rows:,} sorted rows in appends of {args.batch:,}, best of {args.repeat} "
          f"(load average {os.getloadavg()[0]:.1f}):\n")
    print("| side | appends s | p50 append ms | max append ms | DuckDB snapshot "
          "read ms | disk MB | peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    names = {"ours": "SQLite manifest + write_segment", "delta": "deltalake write_deltalake"}
    for side, r in best.items():
        print(f"| {names[side]} | {r['appends']:.2f} | {r['p50'] * 1000:.0f} | "
              f"{r['max'] * 1000:.0f} | {r['snapshot'] * 1000:.0f} | {r['disk_mb']:.1f} | "
              f"{r['rss_mb']:.0f} |")
    if "delta" in best:
        from importlib.metadata import distribution

        files = distribution("deltalake").files or []
        size = sum((f.size or 0) for f in files)
        print(f"\ndeltalake {distribution('deltalake').version}: {size / 2**20:.0f} MB installed.")


if __name__ == "__main__":
    main()
