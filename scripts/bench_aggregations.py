#!/usr/bin/env python
"""Benchmark: a training set of windowed aggregations against DuckDB's SQL, end to end.

Generates N raw purchase events (about 50 per customer over a year, random microsecond
times) ingested through the commit path and sealed into segments, and M labels (random
customer, 2% unknown, random times). The aggregation is count, sum, mean and max of
``amount`` over 7 days. Each contender runs in its own subprocess, timed end to end
(interpreter start, reading the labels CSV, the aggregation, writing a CSV in label
order) with its peak RSS:

- ``asof-stream training-set --labels labels.csv --features spend --out out.csv``
  (reads the sealed Parquet segments of the log);
- DuckDB: labels LEFT JOIN events ON the entity AND ``event_timestamp > t - 7 days AND
  event_timestamp <= t``, GROUP BY label row, ``fsum`` for the sum, on the same rows
  exported to one Parquet file. (A window with ``RANGE BETWEEN INTERVAL 7 DAYS
  PRECEDING`` would include ``t - 7 days`` itself: wrong for our rule.)

Every cell of the two outputs is compared (counts and max exactly, sum and mean within
1e-12 relative): a benchmark of wrong answers is useless. Usage::

    python scripts/bench_aggregations.py --size 1m     # 1M events x 200k labels
    python scripts/bench_aggregations.py --size 10m    # 10M events x 1M labels

``--before DIR`` adds a contender: the same command with ``PYTHONPATH=DIR``, a checkout of
the code to compare with (``git archive REV | tar -x -C DIR``), in the same run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from _common import PRELUDE, YEAR_START, YEAR_US, training_set_command, write_labels  # noqa: E402
from bench_join import measure_cpu  # noqa: E402

from asof_stream.config import load_config  # noqa: E402
from asof_stream.ingest.commit import Record  # noqa: E402
from asof_stream.offline.log import OfflineLog  # noqa: E402
from asof_stream.offline.scan import scan_view  # noqa: E402
from asof_stream.offline.seal import compact  # noqa: E402
from asof_stream.stores import open_stores  # noqa: E402
from asof_stream.timestamps import to_iso  # noqa: E402

CONFIG = PRELUDE + """
[views.purchases]
entity = "customer"
features = { amount = "float64", qty = "int64" }

[aggregations.spend]
source = "purchases"

[aggregations.spend.features]
n_7d = { fn = "count", window = "7d" }
sum_7d = { fn = "sum", of = "amount", window = "7d" }
mean_7d = { fn = "mean", of = "amount", window = "7d" }
max_7d = { fn = "max", of = "amount", window = "7d" }
"""
BATCH = 20_000
SIZES = {"1m": (1_000_000, 200_000), "10m": (10_000_000, 1_000_000),
         "100k": (100_000, 20_000)}

DUCKDB = """
import sys, duckdb
labels, feats, out = sys.argv[1:4]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute(f'''
COPY (
  SELECT any_value(l.customer_id) AS customer_id, any_value(l.event_timestamp) AS event_timestamp,
         any_value(l.churned) AS churned, count(f.amount) AS n_7d,
         coalesce(fsum(f.amount), 0.0) AS sum_7d, avg(f.amount) AS mean_7d,
         max(f.amount) AS max_7d
  FROM (SELECT *, row_number() OVER () AS _i, event_timestamp::TIMESTAMPTZ AS _t
        FROM read_csv('{labels}', header = true, all_varchar = true)) AS l
  LEFT JOIN read_parquet('{feats}') AS f
    ON l.customer_id = f.customer_id AND f.event_timestamp > l._t - INTERVAL 168 HOURS
       AND f.event_timestamp <= l._t
  GROUP BY l._i
  ORDER BY l._i
) TO '{out}' (HEADER, DELIMITER ',')''')
"""


def prepare(work: Path, n: int, m: int, seed: int) -> dict[str, float]:
    """Config, N events through the commit path, sealed; features.parquet; labels.csv."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (work / "asof.toml").write_text(CONFIG)
    config = load_config(work / "asof.toml")
    rng = random.Random(seed)
    customers = max(1, n // 50)
    started = time.perf_counter()
    with open_stores(config) as stores:
        committer = stores.committer()
        batch: list[Record] = []
        for i in range(n):
            ts = YEAR_START + rng.randrange(YEAR_US)
            batch.append(Record(json.dumps({
                "view": "purchases", "customer_id": f"c{rng.randrange(customers):07d}",
                "event_timestamp": to_iso(ts), "amount": round(rng.uniform(0, 500), 2),
                "qty": rng.randrange(1, 9)}).encode(), f"gen:{i}"))
            if len(batch) >= BATCH or i == n - 1:
                result = committer.commit("bench", batch)
                assert result.stored == len(batch), result
                batch = []
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    with OfflineLog(config.offline_path) as log:
        compact(log, config.defs)
        tables = [t.table for t in scan_view(log, config.defs, "purchases")]
    seal_s = time.perf_counter() - started
    table = pa.concat_tables(tables)
    pq.write_table(pa.table({
        "customer_id": table.column("entity"),
        "event_timestamp": table.column("event_timestamp").cast(pa.timestamp("us", tz="UTC")),
        "amount": table.column("amount")}), work / "features.parquet")
    write_labels(work / "labels.csv", customers, m, seed + 1)
    return {"ingest_s": ingest_s, "seal_s": seal_s}


def phases(work: Path) -> dict[str, float]:
    """The asof-stream run's phases, in this process, by the pieces of the CSV fast path
    the CLI takes (training/columnar.py): reading the labels, the aggregation (reading
    the segments, windows, aggregates), the cells and the CSV."""
    from asof_stream.training.aggregate import aggregate_view
    from asof_stream.training.columnar import write_csv
    from asof_stream.training.columnar_labels import read_plain_csv

    config = load_config(work / "asof.toml")
    features = config.defs.aggregations["spend"].feature_names
    t0 = time.perf_counter()
    labels = read_plain_csv(work / "labels.csv", "event_timestamp", ["customer_id"])
    assert labels is not None
    t1 = time.perf_counter()
    keys = labels.cells.column("customer_id").combine_chunks().dictionary_encode()
    with OfflineLog(config.offline_path, readonly=True) as log:
        got = aggregate_view(log, config.defs, "spend", features, keys, labels.times)
    t2 = time.perf_counter()
    write_csv(work / "out_phases.csv", labels, features, got.csv_cells(features))
    t3 = time.perf_counter()
    return {"labels": t1 - t0, "aggregate": t2 - t1, "write": t3 - t2}


def compare(a_path: Path, b_path: Path) -> tuple[int, int]:
    """(rows, rows with a non-empty window); raises on the first differing cell."""
    def num(x: str) -> float | None:
        return None if x == "" else float(x)

    rows = filled = 0
    with a_path.open(newline="") as fa, b_path.open(newline="") as fb:
        ra, rb = csv.reader(fa), csv.reader(fb)
        ha, hb = next(ra), next(rb)
        ia = [ha.index(c) for c in ("n_7d", "sum_7d", "mean_7d", "max_7d")]
        ib = [hb.index(c) for c in ("n_7d", "sum_7d", "mean_7d", "max_7d")]
        for i, (x, y) in enumerate(zip(ra, rb, strict=True)):
            (n1, s1, m1, x1), (n2, s2, m2, x2) = ([r[j] for j in ix] for r, ix in
                                                  ((x, ia), (y, ib)))
            ok = int(n1) == int(n2) and num(x1) == num(x2)
            for p, q in ((num(s1), num(s2)), (num(m1), num(m2))):
                ok = ok and (p is None) == (q is None) and (
                    p is None or q is None or abs(p - q) <= 1e-12 * abs(q))
            if not ok:
                raise SystemExit(f"outputs differ at label row {i}: {x} vs {y}")
            rows += 1
            filled += int(n1) > 0
    return rows, filled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="1m")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender (best is shown)")
    ap.add_argument("--workdir", help="keep data here (reused when it exists)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--before", help="a checkout of the code to compare with (PYTHONPATH)")
    args = ap.parse_args()
    n, m = SIZES[args.size]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="asof-agg-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        prep = None
        if not (work / "labels.csv").exists():
            print(f"generating, ingesting and sealing {n:,} events, {m:,} labels in {work}",
                  file=sys.stderr)
            prep = prepare(work, n, m, args.seed)
        ours = training_set_command("spend")
        contenders: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "asof-stream training-set": (ours, None),
            "DuckDB LEFT JOIN + GROUP BY": ([sys.executable, "-c", DUCKDB, "labels.csv",
                                             "features.parquet", "out_duckdb.csv"], None),
        }
        if args.before:
            contenders["asof-stream training-set, before"] = (
                [*ours[:-1], "out_before.csv"], {**os.environ, "PYTHONPATH": args.before})
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in contenders}
        for _ in range(args.repeat):  # interleaved: a change of load hits every contender
            for name, (cmd, env) in contenders.items():
                runs[name].append(measure_cpu(cmd, work, env))
        results = {name: (min(r[0] for r in got), min(r[1] for r in got),
                          min(r[2] for r in got)) for name, got in runs.items()}
        for name, (secs, cpu, mb) in results.items():
            print(f"{name}: {secs:.2f} s, {cpu:.2f} s CPU, {mb:.0f} MB", file=sys.stderr)
        rows, filled = compare(work / "out_asof.csv", work / "out_duckdb.csv")
        if args.before:
            same = (work / "out_asof.csv").read_bytes() == (work / "out_before.csv").read_bytes()
            print(f"before and now write the same bytes: {same}", file=sys.stderr)
        ph = phases(work)
        duck = results["DuckDB LEFT JOIN + GROUP BY"][0]
        print(f"\n{n:,} events x {m:,} labels, count/sum/mean/max over 7d; every cell equal "
              f"({rows:,} rows, {filled:,} with a non-empty window). Python "
              f"{sys.version.split()[0]}, {os.cpu_count()} cores.")
        if prep:
            print(f"Ingest (commit path) {prep['ingest_s']:.1f} s, sealing {prep['seal_s']:.1f} s.")
        print(f"Best of {args.repeat} (each column its own best); load average "
              f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])} at the end.")
        print("\n| contender | events | labels | seconds | CPU s | vs DuckDB | peak MB |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, (secs, cpu, mb) in results.items():
            print(f"| {name} | {n:,} | {m:,} | {secs:.2f} | {cpu:.2f} | {secs / duck:.2f}x "
                  f"| {mb:.0f} |")
        print(f"\nasof-stream phases (in one process): reading the labels {ph['labels']:.2f} s,"
              f" the aggregation (segments read, windows, aggregates) {ph['aggregate']:.2f} s,"
              f" the cells and the CSV {ph['write']:.2f} s; the rest is interpreter start and"
              " imports.")
        assert math.isfinite(duck)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
