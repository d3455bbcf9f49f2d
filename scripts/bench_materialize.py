#!/usr/bin/env python3
"""Materialize benchmark: rebuild the online store from a sealed log, beside Feast's.

    python scripts/bench_materialize.py [--rows 1000000] [--entities 200000] [--repeat 3]
        [--workdir W] [--feast-python /path/to/venv/bin/python]

1. Builds (once per --workdir) a log of --rows events over --entities entities through
   the commit path, then seals it with `asof-stream compact` (one segment, empty head),
   and writes the same rows as Parquet for Feast.
2. Times, best of --repeat, each in its own process:
   - `asof-stream materialize` end to end (process start to exit), and the
     `materialize()` call alone (in-process, after imports and opening the stores);
   - Feast's `FeatureStore.materialize()` over the same rows (a FileSource on the Parquet
     file, the SQLite online store, the local provider), the call alone, after `apply`.
     Feast runs under --feast-python (default: this Python); when it cannot import
     `feast` that contender is skipped with a note. Install it apart from the project
     (its pins clash with ours): `python -m venv V && V/bin/pip install feast`.
3. Checks both online stores hold one row per entity, and prints the table and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path

from _common import PRELUDE

TOML = PRELUDE + """
[views.customer_stats]
entity = "customer"
features = { spend_7d = "float64", orders_7d = "int64", tier = "string" }
"""
BASE_TS = 1_700_000_000


def event(i: int, entities: int) -> dict[str, object]:
    return {"view": "customer_stats", "customer_id": f"c{(i * 7919) % entities}",
            "event_timestamp": BASE_TS + i // 10, "spend_7d": (i % 1000) / 7,
            "orders_7d": i % 97, "tier": ("gold", "silver", "bronze")[i % 3],
            "event_id": f"e{i}"}


def build(work: Path, rows: int, entities: int) -> None:
    """The sealed log (through the commit path and `compact`) and the Parquet for Feast."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from asof_stream.config import parse_config
    from asof_stream.ingest.sources.base import Record
    from asof_stream.offline.sqlite import tune_writer
    from asof_stream.stores import open_stores

    done = work / "built.json"
    if done.exists() and json.loads(done.read_text()) == {"rows": rows, "entities": entities}:
        return
    shutil.rmtree(work / "asof", ignore_errors=True)
    (work / "asof").mkdir(parents=True)
    (work / "asof" / "asof.toml").write_text(TOML)
    config = parse_config(TOML, work / "asof" / "asof.toml")
    cols: dict[str, list[object]] = {"customer_id": [], "event_timestamp": [], "spend_7d": [],
                                     "orders_7d": [], "tier": []}
    with open_stores(config) as s:
        tune_writer(s.log.conn)
        c = s.committer("customer_stats")
        for start in range(0, rows, 100_000):
            evs = [event(i, entities) for i in range(start, min(rows, start + 100_000))]
            c.commit("bench", [Record(json.dumps(e).encode(), f"bench:{start + k}")
                               for k, e in enumerate(evs)])
            for e in evs:
                for k in cols:
                    cols[k].append(e[k])
    subprocess.run([_exe(), "compact", "--config", str(work / "asof" / "asof.toml")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (work / "feast" / "data").mkdir(parents=True, exist_ok=True)
    ts = pa.array([t * 1_000_000 for t in cols["event_timestamp"]], pa.int64())
    table = pa.table({"customer_id": pa.array(cols["customer_id"], pa.string()),
                      "event_timestamp": ts.cast(pa.timestamp("us", tz="UTC")),
                      "spend_7d": pa.array(cols["spend_7d"], pa.float64()),
                      "orders_7d": pa.array(cols["orders_7d"], pa.int64()),
                      "tier": pa.array(cols["tier"], pa.string())})
    pq.write_table(table, work / "feast" / "data" / "events.parquet")
    done.write_text(json.dumps({"rows": rows, "entities": entities}))


def _exe() -> str:
    return shutil.which("asof-stream", path=str(Path(sys.executable).parent)) or "asof-stream"


def measure(cmd: list[str]) -> dict[str, float]:
    """Run one process: wall time and CPU from its rusage, and its JSON output if any."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed: {err.strip().splitlines()[-1:] or status}")
    result = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
              "rss_mb": usage.ru_maxrss / 1024}
    last = out.strip().splitlines()[-1:] or [""]
    if last[0].startswith("{"):
        result.update(json.loads(last[0]))
    return result


def asof_call(config: str) -> None:
    """In this process: open the stores, time `materialize()` alone; print JSON."""
    from asof_stream.config import load_config
    from asof_stream.online.materialize import materialize
    from asof_stream.stores import open_stores

    with open_stores(load_config(Path(config))) as s:
        t0 = time.perf_counter()
        n = materialize(s.log, s.online)
        seconds = time.perf_counter() - t0
        count = s.online.count("customer_stats")
    print(json.dumps({"timed": seconds, "rows": n, "online_rows": count}))


FEAST_YAML = """project: bench
registry: data/registry.db
provider: local
online_store:
  type: sqlite
  path: data/online.db
entity_key_serialization_version: 3
"""


def feast_call(folder: str) -> None:
    """In this process (Feast's venv): apply the definitions, time `materialize()`."""
    from datetime import datetime, timedelta

    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64, Int64, String
    from feast.value_type import ValueType

    root = Path(folder)
    (root / "data" / "online.db").unlink(missing_ok=True)
    (root / "data" / "registry.db").unlink(missing_ok=True)
    (root / "feature_store.yaml").write_text(FEAST_YAML)
    store = FeatureStore(repo_path=str(root))
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    source = FileSource(path=str(root / "data" / "events.parquet"),
                        timestamp_field="event_timestamp")
    view = FeatureView(name="customer_stats", entities=[customer], ttl=timedelta(days=3650),
                       schema=[Field(name="spend_7d", dtype=Float64),
                               Field(name="orders_7d", dtype=Int64),
                               Field(name="tier", dtype=String)], source=source, online=True)
    store.apply([customer, view])
    start = datetime.fromtimestamp(BASE_TS - 86_400, tz=UTC)
    end = datetime.now(tz=UTC)
    t0 = time.perf_counter()
    store.materialize(start_date=start, end_date=end)
    seconds = time.perf_counter() - t0
    import sqlite3

    conn = sqlite3.connect(root / "data" / "online.db")
    table = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
             if n.endswith("customer_stats")][0]
    keys = conn.execute(f"SELECT count(DISTINCT entity_key) FROM {table}").fetchone()[0]
    conn.close()
    print(json.dumps({"timed": seconds, "online_rows": keys}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--entities", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="Data folder, kept for later runs "
                    "(default: a temporary one).")
    ap.add_argument("--feast-python", default=sys.executable,
                    help="A Python that can import feast (default: this one).")
    ap.add_argument("--mode", choices=["all", "asof", "feast"], default="all",
                    help=argparse.SUPPRESS)
    ap.add_argument("--target", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode == "asof":
        asof_call(args.target)
        return 0
    if args.mode == "feast":
        feast_call(args.target)
        return 0
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-mat-") as tmp:
        work = Path(args.workdir or tmp)
        t0 = time.perf_counter()
        build(work, args.rows, args.entities)
        print(f"# data ready in {time.perf_counter() - t0:.0f} s", flush=True)
        run(args, work)
    return 0


def run(args: argparse.Namespace, work: Path) -> None:
    config = str(work / "asof" / "asof.toml")
    me = [sys.executable, __file__]
    has_feast = subprocess.run([args.feast_python, "-c", "import feast"], capture_output=True,
                               check=False).returncode == 0
    results: dict[str, list[dict[str, float]]] = {"cli": [], "call": [], "feast": []}
    for _ in range(args.repeat):
        results["cli"].append(measure([_exe(), "materialize", "--config", config]))
        results["call"].append(measure(me + ["--mode", "asof", "--target", config]))
        if has_feast:
            results["feast"].append(measure([args.feast_python, __file__, "--mode", "feast",
                                             "--target", str(work / "feast")]))
    for name in ("call", "feast"):
        for r in results[name]:
            if r["online_rows"] != args.entities:
                sys.exit(f"{name}: {r['online_rows']} online rows, expected {args.entities}")

    def best(name: str, key: str) -> float:
        return min(r[key] for r in results[name])

    print(f"\n{args.rows:,} rows over {args.entities:,} entities, one sealed segment;"
          f" best of {args.repeat}; load average"
          f" {' '.join(Path('/proc/loadavg').read_text().split()[:3])}\n")
    print("| what | seconds (best) | all runs | CPU s (best) | peak RSS MB |")
    print("|---|---:|---|---:|---:|")
    rows = [("asof-stream materialize (process start to exit)", "cli", "wall"),
            ("asof-stream materialize() call alone", "call", "timed")]
    if has_feast:
        rows.append(("Feast FeatureStore.materialize() call alone", "feast", "timed"))
    for label, name, key in rows:
        runs = ", ".join(f"{r[key]:.2f}" for r in results[name])
        print(f"| {label} | {best(name, key):.2f} | {runs} | {best(name, 'cpu'):.2f} |"
              f" {best(name, 'rss_mb'):.0f} |")
    if has_feast:
        feast = best("feast", "timed")
        print(f"\nasof-stream call / Feast call: {best('call', 'timed') / feast:.2f}")
        print(f"asof-stream process / Feast call: {best('cli', 'wall') / feast:.2f}")
    else:
        print(f"\nFeast skipped: {args.feast_python} cannot import feast"
              " (pass --feast-python with a venv that has it)")


if __name__ == "__main__":
    sys.exit(main())
