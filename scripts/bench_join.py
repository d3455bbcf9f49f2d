#!/usr/bin/env python
"""Benchmark: ``asof-stream training-set`` end to end against pandas and DuckDB.

Generates N feature rows for one view (about 50 events per customer, random
microsecond times over a year, per-customer times distinct so every engine has one
right answer) and M labels (random customer, including 2% unknown ones, and random
times). The feature rows are ingested through the commit path (timed: rows/s).

Then each contender runs in its own subprocess, timed end to end (interpreter start,
imports, reading the labels CSV and, for pandas/DuckDB, the features Parquet, the
join, writing a CSV in label order), with its peak RSS:

- ``asof-stream training-set --labels labels.csv --features stats --out out.csv``
- pandas ``merge_asof(by="customer_id")`` (sorted inputs, label order restored)
- DuckDB ``ASOF LEFT JOIN`` (label order restored)

The Parquet file is exported from the log (timed, not counted in the pandas and
DuckDB times). The three outputs are compared on a sample of rows: a benchmark of wrong answers is
useless. Usage::

    python scripts/bench_join.py            # 1M feature rows x 200k labels
    python scripts/bench_join.py --small    # 100k x 20k, a quick check
    python scripts/bench_join.py --large    # 10M x 1M (not in CI)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import PRELUDE, YEAR_START, YEAR_US, training_set_command, write_labels  # noqa: E402

from asof_stream.config import load_config  # noqa: E402
from asof_stream.ingest.commit import Record  # noqa: E402
from asof_stream.stores import open_stores  # noqa: E402
from asof_stream.timestamps import to_iso  # noqa: E402

CONFIG = PRELUDE + """
[views.stats]
entity = "customer"
features = { spend = "float64", orders = "int64", tier = "string" }
"""
TIERS = ["bronze", "silver", "gold", "platinum"]
BATCH = 10_000


def feature_rows(n: int, seed: int) -> Iterator[tuple[str, int, float, int, str]]:
    """(customer_id, event_timestamp, spend, orders, tier), per-customer times distinct."""
    rng = random.Random(seed)
    customers = max(1, n // 50)
    seen: set[tuple[int, int]] = set()
    made = 0
    while made < n:
        c = rng.randrange(customers)
        ts = YEAR_START + rng.randrange(YEAR_US)
        if (c, ts) in seen:
            continue
        seen.add((c, ts))
        made += 1
        yield (f"c{c:07d}", ts, round(rng.uniform(0, 500), 2), rng.randrange(40), rng.choice(TIERS))


def prepare(work: Path, n: int, m: int, seed: int) -> dict[str, float]:
    """Write the config, ingest N rows via the commit path, export the log to
    features.parquet (what pandas and DuckDB read), write labels.csv."""
    (work / "asof.toml").write_text(CONFIG)
    config = load_config(work / "asof.toml")
    started = time.perf_counter()
    commit_s = 0.0
    with open_stores(config) as stores:
        committer = stores.committer()
        batch: list[Record] = []
        for i, (cid, ts, spend, orders, tier) in enumerate(feature_rows(n, seed)):
            batch.append(Record(json.dumps({
                "view": "stats", "customer_id": cid, "event_timestamp": to_iso(ts),
                "spend": spend, "orders": orders, "tier": tier}).encode(), f"gen:{i}"))
            if len(batch) >= BATCH or i == n - 1:
                result = committer.commit("bench", batch)
                assert result.stored == len(batch), result
                commit_s += result.seconds
                batch = []
    total_s = time.perf_counter() - started
    started = time.perf_counter()
    export_parquet(config.offline_path, work / "features.parquet")
    export_s = time.perf_counter() - started
    write_labels(work / "labels.csv", max(1, n // 50), m, seed + 1)
    return {"commit_s": commit_s, "total_s": total_s, "export_s": export_s}


def export_parquet(log_path: Path, out: Path) -> None:
    """The log's rows of view ``stats`` as a Parquet file, as a DuckDB or pandas user would
    need them (the time it takes is reported, not counted in their runs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    decode = msgspec.json.Decoder().decode
    conn = sqlite3.connect(log_path)
    rows = conn.execute("SELECT entity, event_timestamp, seq, features FROM log"
                        " WHERE view = 'stats'").fetchall()
    conn.close()
    values = [decode(r[3]) for r in rows]
    table = pa.table({
        "customer_id": pa.array([r[0] for r in rows], pa.string()),
        "event_timestamp": pa.array([r[1] for r in rows], pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        "seq": pa.array([r[2] for r in rows], pa.int64()),
        "spend": pa.array([v["spend"] for v in values], pa.float64()),
        "orders": pa.array([v["orders"] for v in values], pa.int64()),
        "tier": pa.array([v["tier"] for v in values], pa.string()),
    })
    pq.write_table(table, out)


PANDAS = """
import sys, pandas as pd
labels, feats, out = sys.argv[1:4]
l = pd.read_csv(labels, dtype={"customer_id": str, "event_timestamp": str})
l["_t"] = pd.to_datetime(l["event_timestamp"], utc=True, format="ISO8601")
l["_i"] = range(len(l))
f = pd.read_parquet(feats).rename(columns={"event_timestamp": "_t"}).sort_values(["_t", "seq"])
j = pd.merge_asof(l.sort_values("_t"), f.drop(columns=["seq"]), on="_t", by="customer_id",
                  direction="backward", allow_exact_matches=True)
j = j.sort_values("_i").drop(columns=["_t", "_i"])
j.to_csv(out, index=False)
"""

DUCKDB = """
import sys, duckdb
labels, feats, out = sys.argv[1:4]
con = duckdb.connect()
con.execute(f'''
COPY (
  SELECT l.customer_id, l.event_timestamp, l.churned, f.spend, f.orders, f.tier
  FROM (SELECT *, row_number() OVER () AS _i, event_timestamp::TIMESTAMPTZ AS _t
        FROM read_csv('{labels}', header = true, all_varchar = true)) AS l
  ASOF LEFT JOIN read_parquet('{feats}') AS f
    ON l.customer_id = f.customer_id AND l._t >= f.event_timestamp
  ORDER BY l._i
) TO '{out}' (HEADER, DELIMITER ',')''')
"""

MEASURE = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
dt = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(rc, dt, ru.ru_maxrss, ru.ru_utime + ru.ru_stime)
"""


def measure(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Run one command in a fresh wrapper process: (wall seconds, peak RSS in MB)."""
    secs, _, mb = measure_cpu(cmd, cwd)
    return secs, mb


def measure_cpu(cmd: list[str], cwd: Path, env: dict[str, str] | None = None
                ) -> tuple[float, float, float]:
    """:func:`measure` with the CPU seconds (user + sys) too: (wall, CPU, peak MB)."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], cwd=cwd, check=True,
                         capture_output=True, text=True, env=env)
    rc, secs, rss_kb, cpu = out.stdout.split()
    if rc != "0":
        raise SystemExit(f"{cmd[:3]} failed ({rc}): {out.stderr[-2000:]}")
    return float(secs), float(cpu), int(rss_kb) / 1024


def read_sample(path: Path, rows: list[int]) -> dict[int, tuple[str, str, str]]:
    want = set(rows)
    out = {}
    with path.open(newline="") as fh:
        r = csv.reader(fh)
        header = next(r)
        idx = [header.index(c) for c in ("spend", "orders", "tier")]
        for i, row in enumerate(r):
            if i in want:
                s, o, t = (row[j] for j in idx)
                out[i] = (s, o, t)
    return out


def same(a: tuple[str, str, str], b: tuple[str, str, str]) -> bool:
    def num(x: str) -> float | None:
        return None if x == "" else float(x)

    na, nb = (num(a[0]), num(a[1])), (num(b[0]), num(b[1]))
    for x, y in zip(na, nb, strict=True):
        if (x is None) != (y is None) or (x is not None and y is not None
                                          and not math.isclose(x, y)):
            return False
    return a[2] == b[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--small", action="store_true", help="100k feature rows x 20k labels")
    size.add_argument("--large", action="store_true", help="10M feature rows x 1M labels")
    ap.add_argument("--rows", type=int, help="feature rows (overrides the size flags)")
    ap.add_argument("--labels", type=int, help="label rows (overrides the size flags)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender (best is shown)")
    ap.add_argument("--workdir", help="keep data here (reused when it exists)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    n, m = (100_000, 20_000) if args.small else (10_000_000, 1_000_000) if args.large \
        else (1_000_000, 200_000)
    n, m = args.rows or n, args.labels or m

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="asof-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if (work / "labels.csv").exists() and (work / "features.parquet").exists():
            print(f"reusing data in {work}", file=sys.stderr)
            ingest = None
        else:
            print(f"generating and ingesting {n:,} feature rows, {m:,} labels in {work}",
                  file=sys.stderr)
            ingest = prepare(work, n, m, args.seed)
        contenders = {
            "asof-stream training-set": training_set_command("stats"),
            "pandas merge_asof": [sys.executable, "-c", PANDAS, "labels.csv", "features.parquet",
                                  "out_pandas.csv"],
            "DuckDB ASOF LEFT JOIN": [sys.executable, "-c", DUCKDB, "labels.csv",
                                      "features.parquet", "out_duckdb.csv"],
        }
        results: dict[str, tuple[float, float]] = {}
        for name, cmd in contenders.items():
            runs = [measure(cmd, work) for _ in range(args.repeat)]
            results[name] = min(runs)
            print(f"{name}: {results[name][0]:.2f} s, {results[name][1]:.0f} MB", file=sys.stderr)

        sample = sorted(random.Random(1).sample(range(m), min(m, 5000)))
        outs = {k: read_sample(work / f, sample) for k, f in
                (("asof", "out_asof.csv"), ("pandas", "out_pandas.csv"),
                 ("duckdb", "out_duckdb.csv"))}
        bad = [i for i in sample if not (same(outs["asof"][i], outs["pandas"][i])
                                         and same(outs["asof"][i], outs["duckdb"][i]))]
        filled = sum(1 for i in sample if outs["asof"][i][2])
        if bad:
            i = bad[0]
            raise SystemExit(f"outputs differ on {len(bad)} of {len(sample)} sampled rows, e.g. "
                             f"row {i}: {outs['asof'][i]} {outs['pandas'][i]} {outs['duckdb'][i]}")

        duck = results["DuckDB ASOF LEFT JOIN"][0]
        print(f"\n{n:,} feature rows x {m:,} labels; outputs agree on {len(sample):,} sampled rows "
              f"({filled:,} with features). Python {sys.version.split()[0]}, {os.cpu_count()} cores.")
        if ingest:
            print(f"Ingest through the commit path (decode, validate, log + online store, one "
                  f"transaction per {BATCH:,} events): {ingest['commit_s']:.1f} s, "
                  f"{n / ingest['commit_s']:,.0f} rows/s ({ingest['total_s']:.1f} s with "
                  "generating the events).")
            print(f"Exporting the log to features.parquet for pandas and DuckDB (not counted "
                  f"in their times): {ingest['export_s']:.1f} s.")
        print("\n| contender | feature rows | labels | seconds | vs DuckDB | peak MB |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, (secs, mb) in results.items():
            print(f"| {name} | {n:,} | {m:,} | {secs:.2f} | {secs / duck:.2f}x | {mb:.0f} |")
        if ingest:  # what a DuckDB user of the log pays: export first, then join
            secs = ingest["export_s"] + duck
            print(f"| DuckDB, counting the export from the log | {n:,} | {m:,} | {secs:.2f} | "
                  f"{secs / duck:.2f}x | |")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
