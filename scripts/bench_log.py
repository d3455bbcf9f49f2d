#!/usr/bin/env python3
"""Offline-log benchmark: ingest with and without background sealing, seal and merge
throughput, commit latency, materialize from segments, checksum cost.

    python scripts/bench_log.py [--rows 3000000] [--entities 200000] [--batch 20000]

1. Commits --rows events (in --batch-event transactions, through the daemon's Committer:
   decode, validate, dedupe by event_id, log, online upsert) twice: sealing off, and with
   the background Sealer thread (seal_rows = 10 batches, merge fanout 4). Prints the rate
   of each million and the p50/p99 commit latency of each run.
2. Seals a head of --rows rows in one go (rows/s) and merges four segments.
3. Materialize: rebuilds the online store from the sealed log (--rows rows over
   --entities entities), and from the same rows left in the head (the old path).
4. sha256 vs crc32 of the segment files (MB/s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--entities", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=20000)
    ap.add_argument("--only", choices=["ingest", "seal"], default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-log-") as tmp:
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
