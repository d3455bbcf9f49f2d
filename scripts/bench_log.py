#!/usr/bin/env python3
"""Offline-log benchmark: ingest with and without background sealing, seal and merge
throughput, commit latency, materialize from segments, checksum cost.

    python scripts/bench_log.py [--rows 3000000] [--entities 200000] [--batch 20000]
    python scripts/bench_log.py --daemon [--rows 10000000] [--no-baseline]

1. Commits --rows events (in --batch-event transactions, through the daemon's Committer:
   decode, validate, dedupe by event_id, log, online upsert) twice: sealing off, and with
   a background Sealer thread in the same process (seal_rows = 10 batches, merge
   fanout 4). Prints the rate of each million and the p50/p99 commit latency of each run.
2. Seals a head of --rows rows in one go (rows/s) and merges four segments.
3. Materialize: rebuilds the online store from the sealed log (--rows rows over
   --entities entities), and from the same rows left in the head (the old path).
4. sha256 vs crc32 of the segment files (MB/s).

With --daemon: the real daemon instead, `asof-stream run --until-caught-up` over a JSONL
file source of --rows events, with the default `[log]` sealing (seal_rows = 100000, the
sealer child process beside the daemon) and then, unless --no-baseline, with sealing off
(seal_rows = 0). From the daemon's own per-batch log lines (--log-json, INFO): the rate
of each million rows (and the daemon's CPU seconds for it, steadier on a shared machine;
the sealer process's CPU seconds are reported apart, sampled while they run),
the 10th (or last) million against the first, and the commit
time of a batch (p50, p99, max) against the batch interval (batch_timeout_ms and the
median time between commits).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from _common import PRELUDE

TOML = PRELUDE + """
[views.customer_stats]
entity = "customer"
features = { spend_7d = "float64", orders_7d = "int64", tier = "string" }
"""


def records(start: int, n: int, entities: int) -> list:
    from asof_stream.ingest.sources.base import Record

    out = []
    for i in range(start, start + n):
        ev = {"view": "customer_stats", "customer_id": f"c{(i * 7919) % entities}",
              "event_timestamp": 1_700_000_000 + i // 10, "spend_7d": (i % 1000) / 7,
              "orders_7d": i % 97, "tier": ("gold", "silver", "bronze")[i % 3],
              "event_id": f"e{i}"}
        out.append(Record(json.dumps(ev).encode(), f"bench:{i}"))
    return out


def make(root: Path):  # type: ignore[no-untyped-def]
    from asof_stream.config import parse_config

    root.mkdir(parents=True, exist_ok=True)
    path = root / "asof.toml"
    path.write_text(TOML)
    return parse_config(TOML, path)


def ingest(root: Path, rows: int, entities: int, batch: int, seal: bool) -> dict[str, object]:
    from asof_stream.offline.seal import Sealer
    from asof_stream.offline.sqlite import tune_writer
    from asof_stream.stores import open_stores

    config = make(root)
    sealer = Sealer(config.offline_path, config.defs, seal_rows=batch * 10, seal_age=None,
                    interval=0.5, fanout=4) if seal else None
    lat: list[float] = []
    per_million: list[float] = []
    with open_stores(config) as s:
        tune_writer(s.log.conn)
        c = s.committer("customer_stats")
        if sealer is not None:
            sealer.start()
        t_m = time.perf_counter()
        done = 0
        for start in range(0, rows, batch):
            recs = records(start, min(batch, rows - start), entities)
            decoded = c.decode(recs)
            t0 = time.perf_counter()
            c.commit("bench", recs, decoded=decoded)
            lat.append(time.perf_counter() - t0)
            done += len(recs)
            if done % 1_000_000 == 0 or done == rows:
                now = time.perf_counter()
                per_million.append(round((done - len(per_million) * 1_000_000) / (now - t_m)))
                t_m = now
        if sealer is not None:
            sealer.stop()
        head = s.log.conn.execute("SELECT count(*) FROM log").fetchone()[0]
    lat.sort()
    return {"sealing": seal, "rows_per_s_by_million": per_million,
            "commit_p50_ms": round(statistics.median(lat) * 1000, 1),
            "commit_p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1),
            "head_rows_left": head, "sealed_by_thread": sealer.sealed if sealer else 0}


def seal_and_materialize(root: Path, rows: int, entities: int, batch: int) -> dict[str, object]:
    from asof_stream.offline.manifest import list_segments
    from asof_stream.offline.seal import compact_view, seal_view, segments_lock
    from asof_stream.offline.segments import file_checksum
    from asof_stream.online.materialize import materialize
    from asof_stream.stores import open_stores

    config = make(root)
    out: dict[str, object] = {}
    with open_stores(config) as s:
        c = s.committer("customer_stats")
        for start in range(0, rows, batch):
            c.commit("bench", records(start, min(batch, rows - start), entities))
        t0 = time.perf_counter()
        materialize(s.log, s.online)
        out["materialize_head_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        with segments_lock(s.log):
            quarter = rows // 4
            for q in range(1, 5):
                seal_view(s.log, config.defs, "customer_stats", upto_seq=q * quarter)
        dt = time.perf_counter() - t0
        out["seal_rows_per_s"] = round(rows / dt)
        segs = list_segments(s.log.conn)
        out["segment_mb"] = round(sum(g.bytes for g in segs) / 1e6, 1)
        t0 = time.perf_counter()
        for g in segs:
            file_checksum(s.log.segments_dir / g.file)
        mb = sum(g.bytes for g in segs) / 1e6
        out["sha256_mb_per_s"] = round(mb / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for g in segs:
            zlib.crc32((s.log.segments_dir / g.file).read_bytes())
        out["crc32_mb_per_s"] = round(mb / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        materialize(s.log, s.online)
        out["materialize_4_segments_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        with segments_lock(s.log):
            compact_view(s.log, "customer_stats", fanout=4)
        out["merge_rows_per_s"] = round(rows / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        n = materialize(s.log, s.online)
        out["materialize_1_segment_s"] = round(time.perf_counter() - t0, 2)
        out["entities"] = n
    return out


def write_events(path: Path, rows: int, entities: int) -> None:
    """The events of :func:`records` as one JSONL file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for start in range(0, rows, 100_000):
            fh.write(b"".join(r.raw + b"\n" for r in records(start, min(100_000, rows - start),
                                                               entities)))


def daemon_run(root: Path, events: Path, seal_rows: int | None) -> dict[str, Any]:
    """`asof-stream run --until-caught-up` over ``events``; rates and commit times from its
    per-batch log lines. ``seal_rows`` None: the default [log] (sealing on)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "events").mkdir(exist_ok=True)
    os.link(events, root / "events" / events.name)
    toml = TOML + '\n[sources.events]\nkind = "file"\npath = "events/*.jsonl"\n' \
        'view = "customer_stats"\n'
    if seal_rows is not None:
        toml += f"\n[log]\nseal_rows = {seal_rows}\n"
    (root / "asof.toml").write_text(toml)
    exe = shutil.which("asof-stream", path=str(Path(sys.executable).parent)) or "asof-stream"
    log_path = root / "daemon.log"
    started = time.time()
    cpu: list[tuple[float, float]] = []  # (unix time, CPU seconds of the daemon so far)
    child_cpu: list[tuple[float, float]] = []  # the same for its child processes (the sealer)
    tick = os.sysconf("SC_CLK_TCK")
    with log_path.open("wb") as err:
        proc = subprocess.Popen([exe, "--log-level", "INFO", "--log-json", "run", "--config",
                                 str(root / "asof.toml"), "--until-caught-up"],
                                stdout=subprocess.DEVNULL, stderr=err)
        children: dict[int, float] = {}  # the sealer process(es): CPU seconds last seen
        while proc.poll() is None:
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                own = (int(fields[11]) + int(fields[12])) / tick
                children.update(_children_cpu(proc.pid, tick))
                cpu.append((time.time(), own))
                child_cpu.append((time.time(), sum(children.values())))
            except (OSError, IndexError):
                pass
            time.sleep(0.25)
    wall = time.time() - started
    if proc.returncode != 0:
        sys.exit(f"the daemon exited with {proc.returncode}; see {log_path}")
    batches = []  # (unix time of the log line, high_seq, commit_ms)
    locks = []  # how long each seal or merge held the write lock (the sealer's log lines)
    for line in log_path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        if rec.get("msg") == "segment registered":
            locks.append(float(rec["lock_ms"]))
        if rec.get("msg") == "batch committed" and rec.get("stored"):
            ts = time.mktime(time.strptime(rec["ts"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            batches.append((ts + int(rec["ts"][20:23]) / 1000, int(rec["high_seq"]),
                            float(rec["commit_ms"])))
    per_million: list[int] = []
    cpu_per_million: list[float] = []  # the daemon's CPU seconds (all threads) per million

    def cpu_at(ts: float, series: list[tuple[float, float]] = cpu) -> float:
        before = [c for t, c in series if t <= ts]
        return before[-1] if before else 0.0

    t_prev, c_prev, mark = started, 0.0, 1_000_000
    for ts, seq, _ in batches:
        if seq >= mark:
            per_million.append(round(1_000_000 / (ts - t_prev)) if ts > t_prev else 0)
            cpu_per_million.append(round(cpu_at(ts) - c_prev, 1))
            t_prev, c_prev, mark = ts, cpu_at(ts), mark + 1_000_000
    commits = sorted(c for _, _, c in batches)
    gaps = sorted(b[0] - a[0] for a, b in zip(batches, batches[1:], strict=False))
    with contextlib.closing(sqlite3.connect(root / "data" / "offline.sqlite")) as conn:
        head, sealed = conn.execute(
            "SELECT (SELECT count(*) FROM log), (SELECT coalesce(sum(rows), 0) FROM segments)"
        ).fetchone()
    last = batches[-1][0] if batches else wall
    return {"sealing": seal_rows != 0, "wall_s": round(wall, 1),
            "rows_per_s_by_million": per_million, "cpu_s_by_million": cpu_per_million,
            "cpu_s_daemon": round(cpu_at(last), 1),
            "cpu_s_sealer_process": round(cpu_at(last, child_cpu), 1),
            "last_vs_first_million": round(per_million[-1] / per_million[0], 2)
            if len(per_million) > 1 else None,
            "commit_p50_ms": round(statistics.median(commits), 1),
            "commit_p99_ms": round(commits[int(len(commits) * 0.99) - 1], 1),
            "commit_max_ms": round(commits[-1], 1),
            "between_commits_p50_ms": round(statistics.median(gaps) * 1000, 1) if gaps else None,
            "sealer_lock_max_ms": max(locks, default=None), "registrations": len(locks),
            "batches": len(batches), "head_rows_left": head, "sealed_rows": sealed}


def _children_cpu(pid: int, tick: int) -> dict[int, float]:
    """CPU seconds (user + sys) of each live child process of ``pid``."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def daemon_main(args: argparse.Namespace, tmp: Path) -> None:
    # Kept in --workdir for the next run (10M events take minutes to write).
    events = Path(args.workdir or tmp) / f"events-{args.rows}x{args.entities}.jsonl"
    t0 = time.perf_counter()
    if not events.exists():
        write_events(events.with_suffix(".part"), args.rows, args.entities)
        events.with_suffix(".part").rename(events)
    print(f"# {args.rows:,} events over {args.entities:,} entities written in"
          f" {time.perf_counter() - t0:.0f} s; load average {_loadavg()}", flush=True)
    runs: list[int | None] = [None] if args.no_baseline else [None, 0]
    results = []
    for seal_rows in runs:
        r = daemon_run(tmp / f"daemon-{seal_rows}", events, seal_rows)
        r["load_average_after"] = _loadavg()
        print(json.dumps(r), flush=True)
        results.append(r)
        shutil.rmtree(tmp / f"daemon-{seal_rows}")
    print(blocking_summary(results))


def blocking_summary(results: list[dict[str, Any]]) -> str:
    """Whether sealing blocked a commit for more than one batch interval, in words.

    A commit waits for the sealer only while the sealer holds the write lock (it
    registers a segment and deletes its rows from the head, in one transaction), so the
    longest hold bounds what sealing adds to a commit; the batch interval is the median
    time between two commits of the run with sealing (at full speed, a commit's own time).
    """
    from asof_stream.definitions_settings import IngestConfig

    ingest = IngestConfig()
    on = next(r for r in results if r["sealing"])
    off = next((r for r in results if not r["sealing"]), None)
    interval = on["between_commits_p50_ms"]
    hold = on["sealer_lock_max_ms"]
    lines = [f"commit latency with sealing: p50 {on['commit_p50_ms']} ms, p99"
             f" {on['commit_p99_ms']} ms, max {on['commit_max_ms']} ms ({on['batches']} commits)"]
    if off is not None:
        lines.append(f"without sealing: p50 {off['commit_p50_ms']} ms, p99 {off['commit_p99_ms']}"
                     f" ms, max {off['commit_max_ms']} ms ({off['batches']} commits); added at"
                     f" p99 {on['commit_p99_ms'] - off['commit_p99_ms']:+.1f} ms, at max"
                     f" {on['commit_max_ms'] - off['commit_max_ms']:+.1f} ms")
    lines.append(f"batch interval (median time between commits, sealing on): {interval} ms"
                 f" (the default [ingest]: batch_timeout_ms {ingest.batch_timeout_ms},"
                 f" batch_size {ingest.batch_size})")
    if hold is None or interval is None:
        lines.append("the sealer registered no segment: nothing to compare")
    else:
        verdict = "holds" if hold <= interval else "does NOT hold"
        lines.append(f"longest write-lock hold by the sealer: {hold} ms in"
                     f" {on['registrations']} registrations; the one-interval bound {verdict}")
    return "\n".join(lines)


def _loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--entities", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=20000)
    ap.add_argument("--only", choices=["ingest", "seal"], default=None)
    ap.add_argument("--daemon", action="store_true",
                    help="The real daemon over a JSONL file, sealing on then off.")
    ap.add_argument("--no-baseline", action="store_true",
                    help="With --daemon: only the run with sealing on.")
    ap.add_argument("--workdir", default=None,
                    help="Where to put the data (default: a temporary folder).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-log-", dir=args.workdir) as tmp:
        if args.daemon:
            daemon_main(args, Path(tmp))
            return 0
        if args.only in (None, "ingest"):
            for seal in (False, True):
                r = ingest(Path(tmp) / f"ingest-{seal}", args.rows, args.entities, args.batch, seal)
                print(json.dumps(r), flush=True)
        if args.only in (None, "seal"):
            r = seal_and_materialize(Path(tmp) / "seal", min(args.rows, 1_000_000), args.entities,
                                     args.batch)
            print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
