#!/usr/bin/env python
"""Benchmark: the join over the head only vs over sealed segments, and the old SQLite join.

Reuses the data of ``scripts/bench_join.py --workdir DIR`` (1M rows x 200k labels by
default): copies its log, seals the copy into segments (``compact``), then times

- in one process, the join alone (``asof_join``) for the labels: the old SQLite index
  probes (one process, and ``jobs=2`` forked parts), the vectorized join on the head-only
  log, and on the sealed log;
- end to end (``asof-stream training-set`` in a subprocess, CSV out) on both logs (the
  sealed one by the columnar fast path, training/columnar.py), next to DuckDB
  ``ASOF LEFT JOIN`` on the exported Parquet; outputs compared on a sample
  (``--e2e-only``: just these).

Usage: ``python scripts/bench_join.py --workdir /tmp/b && python scripts/bench_join_tiers.py /tmp/b``
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_join import DUCKDB, measure_cpu, read_sample, same  # noqa: E402

from asof_stream.config import load_config  # noqa: E402
from asof_stream.offline.log import OfflineLog  # noqa: E402
from asof_stream.offline.seal import compact  # noqa: E402
from asof_stream.training.asof import asof_join  # noqa: E402
from asof_stream.training.join import JoinMode, gc_paused, kernel_view, tune_reader  # noqa: E402
from asof_stream.training.labels import labels_from_any  # noqa: E402
from asof_stream.training.parallel_join import parallel_join  # noqa: E402
from asof_stream.training.sqlite_join import sqlite_view  # noqa: E402


def best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        with gc_paused():
            fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdir", help="a bench_join.py --workdir with its data")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--e2e-only", action="store_true",
                    help="only the end-to-end runs (skip the in-process join timings)")
    args = ap.parse_args()
    src = Path(args.workdir)
    sealed = src.parent / (src.name + "-sealed")
    if not (sealed / "data" / "offline.sqlite").exists():
        shutil.rmtree(sealed, ignore_errors=True)
        (sealed / "data").mkdir(parents=True)
        for name in ("asof.toml", "labels.csv", "features.parquet"):
            shutil.copy(src / name, sealed / name)
        shutil.copy(src / "data" / "offline.sqlite", sealed / "data" / "offline.sqlite")
        config = load_config(sealed / "asof.toml")
        started = time.perf_counter()
        with OfflineLog(config.offline_path) as log:
            stats = compact(log, config.defs)
        print(f"sealed {stats.sealed_rows:,} rows into {stats.segments_written} segment(s) "
              f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    config = load_config(src / "asof.toml")
    labels = labels_from_any(str(src / "labels.csv"), config.defs)
    keys = {"stats": labels.entity_keys("stats")}
    m = len(labels)
    mode = JoinMode()
    rows: list[tuple[str, float]] = []
    if args.e2e_only:
        end_to_end(src, sealed, m, args.repeat)
        return
    with OfflineLog(config.offline_path, readonly=True) as log:
        tune_reader(log.conn)
        n = log.max_seq()
        upto = n
        rows.append(("old: SQLite index probes, 1 process", best(
            lambda: sqlite_view(log, config.defs, "stats", keys["stats"], labels.times, mode,
                                upto_seq=upto), args.repeat)))
        rows.append(("old: SQLite index probes, jobs=2", best(
            lambda: parallel_join(log, config.defs, keys, labels.times, mode, upto_seq=upto,
                                  jobs=2), args.repeat)))
        if n <= 2_000_000:  # 10M head rows decoded to dicts would take several GB
            rows.append(("new: kernel forced on the head only (decodes every head row)", best(
                lambda: kernel_view(log, config.defs, "stats", keys["stats"], labels.times,
                                    mode), args.repeat)))
        rows.append(("new: asof_join, head only (no segment: SQLite probes)", best(
            lambda: asof_join(log, config.defs, keys, labels.times, mode), args.repeat)))
    sconfig = load_config(sealed / "asof.toml")
    with OfflineLog(sconfig.offline_path, readonly=True) as log:
        tune_reader(log.conn)
        rows.append(("new: asof_join, sealed segments (kernel)", best(
            lambda: asof_join(log, sconfig.defs, keys, labels.times, mode), args.repeat)))
    print(f"\nThe join alone, in one process ({n:,} rows x {m:,} labels, best of {args.repeat}):")
    print("\n| join | seconds |\n|---|---:|")
    for name, secs in rows:
        print(f"| {name} | {secs:.2f} |")
    end_to_end(src, sealed, m, args.repeat)


def end_to_end(src: Path, sealed: Path, m: int, repeat: int) -> None:
    """Each contender in its own process, CSV out; the sealed run takes the columnar
    fast path (training/columnar.py)."""
    # an installed package has its bytecode; an editable checkout run with
    # PYTHONDONTWRITEBYTECODE set (as here) would compile ~60 modules in every timed run
    # (0.25 s of CPU), which no user pays
    compileall.compile_dir(ROOT / "asof_stream", quiet=1)
    with OfflineLog(load_config(src / "asof.toml").offline_path, readonly=True) as log:
        rows_in_log = log.max_seq()
    exe = shutil.which("asof-stream", path=str(Path(sys.executable).parent)) or "asof-stream"
    contenders = {
        "asof-stream training-set, head only": (src, [exe, "training-set", "--config", "asof.toml",
                                                      "--labels", "labels.csv", "--features",
                                                      "stats", "--out", "out_asof.csv"]),
        "asof-stream training-set, sealed": (sealed, [exe, "training-set", "--config",
                                                      "asof.toml", "--labels", "labels.csv",
                                                      "--features", "stats", "--out",
                                                      "out_asof.csv"]),
        "DuckDB ASOF LEFT JOIN": (src, [sys.executable, "-c", DUCKDB, "labels.csv",
                                        "features.parquet", "out_duckdb.csv"]),
    }
    # each contender once per round, in turn, so a change of load hits all alike; best
    # wall and best CPU seconds (user + sys) of the rounds, reported apart
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, (cwd, cmd) in contenders.items():
            runs[name].append(measure_cpu(cmd, cwd))
    results = {name: (min(r[0] for r in rs), min(r[1] for r in rs), max(r[2] for r in rs))
               for name, rs in runs.items()}
    sample = sorted(random.Random(1).sample(range(m), min(m, 5000)))
    outs = [read_sample(cwd / cmd[-1], sample) for cwd, cmd in contenders.values()]
    bad = [i for i in sample if not all(same(outs[0][i], o[i]) for o in outs[1:])]
    if bad:
        raise SystemExit(f"outputs differ on {len(bad)} of {len(sample)} sampled rows")
    duck, duck_cpu, _ = results["DuckDB ASOF LEFT JOIN"]
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nEnd to end ({rows_in_log:,} rows x {m:,} labels, CSV out; outputs agree on "
          f"{len(sample):,} sampled rows; best of {repeat} rounds in turn; load average "
          f"{load} after):")
    print("\n| contender | seconds | vs DuckDB | CPU s | vs DuckDB | peak MB |\n"
          "|---|---:|---:|---:|---:|---:|")
    for name, (secs, cpu, mb) in results.items():
        print(f"| {name} | {secs:.2f} | {secs / duck:.2f}x | {cpu:.2f} | {cpu / duck_cpu:.2f}x"
              f" | {mb:.0f} |")


if __name__ == "__main__":
    main()
