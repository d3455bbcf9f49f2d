"""The tiered offline log: sealing, the scan over both tiers, dedupe, seq, compaction."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from asof_stream.config import Config
from asof_stream.ingest.sources.base import Record
from asof_stream.offline.manifest import Segment, list_segments
from asof_stream.offline.scan import latest_per_entity, scan_view
from asof_stream.offline.seal import compact, verify_segments
from asof_stream.offline.segments import SegmentError
from asof_stream.stores import Stores, open_stores

VIEW = "customer_stats"


def rec(i: int, **over: Any) -> Record:
    ev = {"view": VIEW, "customer_id": f"c{i % 7}", "event_timestamp": 1_767_600_000 + (i * 37) % 101,
          "spend_7d": float(i) / 3, "orders_7d": i, "tier": None if i % 5 == 0 else f"t{i % 3}",
          "event_id": f"e{i}", **over}
    return Record(json.dumps(ev).encode(), f"test:{i}")


def all_rows(log: Any, config: Config, view: str = VIEW) -> list[tuple[Any, ...]]:
    """Every row of the view over both tiers, as (seq, entity, ts, ingest, features...)."""
    out = []
    for tier in scan_view(log, config.defs, view):
        out.extend(zip(*(c.to_pylist() for c in tier.table.columns), strict=True))
    return sorted(out)


def head_rows(log: Any, config: Config) -> list[tuple[Any, ...]]:
    return all_rows(log, config)


def test_scan_is_the_same_log_before_and_after_sealing(config: Config) -> None:
    with open_stores(config) as s:
        c = s.committer()
        c.commit("src", [rec(i) for i in range(50)])
        before = all_rows(s.log, config)
        assert len(before) == 50 and before[0][:2] == (1, "c0")
        stats = compact(s.log, config.defs)
        assert stats.sealed_rows == 50
        assert s.log.conn.execute("SELECT count(*) FROM log").fetchone()[0] == 0
        assert all_rows(s.log, config) == before
        tiers = scan_view(s.log, config.defs, VIEW)
        assert [t.source == "head" for t in tiers] == [False, True]
        seg = tiers[0].table
        keys = list(zip(seg.column("entity").to_pylist(), seg.column("event_timestamp").to_pylist(),
                        seg.column("seq").to_pylist(), strict=True))
        assert keys == sorted(keys)
        assert str(seg.schema.field("orders_7d").type) == "int64"
        # A seq bound reads the log as it was.
        assert all_rows_upto(s.log, config, 20) == [r for r in before if r[0] <= 20]


def all_rows_upto(log: Any, config: Config, bound: int) -> list[tuple[Any, ...]]:
    out = []
    for tier in scan_view(log, config.defs, VIEW, max_seq=bound):
        out.extend(zip(*(c.to_pylist() for c in tier.table.columns), strict=True))
    return sorted(out)


def test_seq_keeps_increasing_after_the_head_is_emptied(config: Config) -> None:
    with open_stores(config) as s:
        c = s.committer()
        c.commit("src", [rec(i) for i in range(10)])
        compact(s.log, config.defs)
        assert s.log.max_seq() == 10
        r = c.commit("src", [rec(100)])
        assert r.high_seq == 11
        assert [row[0] for row in all_rows(s.log, config)] == list(range(1, 12))


def test_an_event_resent_after_sealing_is_a_duplicate(config: Config) -> None:
    with open_stores(config) as s:
        c = s.committer()
        c.commit("src", [rec(i) for i in range(200)])
        compact(s.log, config.defs)
        r = c.commit("src", [rec(5), rec(150), rec(300), rec(300)])
        assert (r.stored, r.duplicates) == (1, 3)
        assert s.log.view_stats()[VIEW]["rows"] == 201
        assert len(all_rows(s.log, config)) == 201
        ids = [json.loads(x.raw)["event_id"] for x in [rec(i) for i in range(200)]]
        assert len(set(ids)) == 200


def test_compaction_merges_levels_and_keeps_every_row(config: Config) -> None:
    with open_stores(config) as s:
        c = s.committer()
        rnd = random.Random(3)
        n = 0
        for _ in range(9):
            k = rnd.randint(1, 30)
            c.commit("src", [rec(n + i) for i in range(k)])
            n += k
            compact(s.log, config.defs, fanout=4)
        segs = list_segments(s.log.conn, VIEW)
        assert len(segs) < 9 and {g.level for g in segs} >= {1}
        assert len(all_rows(s.log, config)) == n
        assert sorted(r[0] for r in all_rows(s.log, config)) == list(range(1, n + 1))
        assert verify_segments(s.log) == []
        assert s.log.view_stats()[VIEW]["rows"] == n


def test_latest_per_entity_across_tiers(config: Config) -> None:
    with open_stores(config) as s:
        c = s.committer()
        c.commit("src", [rec(i) for i in range(40)])
        compact(s.log, config.defs)
        c.commit("src", [rec(i) for i in range(40, 60)])
        latest = latest_per_entity(s.log, config.defs, VIEW)
        rows = all_rows(s.log, config)
        best: dict[str, tuple[Any, ...]] = {}
        for r in rows:
            if r[1] not in best or (r[2], r[0]) > (best[r[1]][2], best[r[1]][0]):
                best[r[1]] = r
        got = list(zip(*(col.to_pylist() for col in latest.columns), strict=True))
        assert got == [best[e] for e in sorted(best)]


def one_sealed_segment(s: Stores, config: Config) -> tuple[Segment, Path]:
    """Commit 30 events and seal them: the first segment of the view and its file."""
    s.committer().commit("src", [rec(i) for i in range(30)])
    compact(s.log, config.defs)
    seg = list_segments(s.log.conn, VIEW)[0]
    return seg, s.log.segments_dir / seg.file


def test_a_damaged_segment_is_an_error_naming_the_file(config: Config) -> None:
    with open_stores(config) as s:
        seg, path = one_sealed_segment(s, config)
        data = path.read_bytes()
        path.write_bytes(data[:-10])
        with pytest.raises(SegmentError, match=seg.file.split("/")[-1]):
            scan_view(s.log, config.defs, VIEW)
        # Same size, one byte flipped: verify names it, reads never give silent rows.
        flipped = bytearray(data)
        flipped[len(data) // 3] ^= 0xFF
        path.write_bytes(bytes(flipped))
        assert [p for p in verify_segments(s.log) if seg.file.split("/")[-1] in p]
        path.unlink()
        with pytest.raises(SegmentError, match="missing"):
            scan_view(s.log, config.defs, VIEW)


def test_unregistered_files_are_removed_and_never_read(config: Config) -> None:
    with open_stores(config) as s:
        seg, path = one_sealed_segment(s, config)
        stray = path.with_name("L0-stray.parquet")
        stray.write_bytes(path.read_bytes())
        assert len(all_rows(s.log, config)) == 30
        stats = compact(s.log, config.defs)
        assert stats.orphans_removed == 1 and not stray.exists()


def test_background_sealer_while_commits_go_on_keeps_i2(config: Config) -> None:
    from asof_stream.offline.seal import Sealer
    from asof_stream.online.materialize import materialize

    sealer = Sealer(config.offline_path, config.defs, seal_rows=30, seal_age=None, interval=0.01,
                    fanout=3)
    with open_stores(config) as s:
        c = s.committer()
        sealer.start()
        try:
            for b in range(40):
                c.commit("src", [rec(b * 10 + i) for i in range(10)])
                c.commit("src", [rec(b * 10)])  # a re-sent event, maybe sealed already
        finally:
            sealer.stop()
        assert sealer.error is None and sealer.sealed > 0
        rows = all_rows(s.log, config)
        assert [r[0] for r in rows] == list(range(1, 401))
        assert s.log.view_stats()[VIEW]["rows"] == 400
        assert s.log.view_stats()[VIEW]["duplicates"] == 40
        incremental = {(r.view, r.entity): r for r in s.online.entries()}
        materialize(s.log, s.online)
        assert {(r.view, r.entity): r for r in s.online.entries()} == incremental


def test_config_log_section(make_config: Any) -> None:
    from asof_stream.config import ConfigError

    cfg = make_config("\n[log]\nseal_rows = 1000000\nseal_age = \"1h\"\n")
    assert cfg.defs.log.seal_rows == 1_000_000 and cfg.defs.log.seal_age == 3600 * 10**6
    default = make_config().defs.log  # on by default, by count only
    assert default.sealing and default.seal_rows == 100_000 and default.seal_age is None
    assert not make_config("\n[log]\nseal_rows = 0\n").defs.log.sealing
    with pytest.raises(ConfigError, match="seal_age"):
        make_config("\n[log]\nseal_age = \"soon\"\n")


@pytest.mark.parametrize("hashes", ["remembered", "cold", "over budget"])
def test_sealed_duplicates_are_found_whatever_the_id_hash_cache_holds(
        config: Config, hashes: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from asof_stream.offline import manifest

    monkeypatch.setattr(manifest, "ID_HASHES", manifest.IdHashes(budget=10**6))
    with open_stores(config) as s:
        c = s.committer()
        for b in range(4):  # four segments
            c.commit("src", [rec(i) for i in range(b * 300, b * 300 + 300)])
            compact(s.log, config.defs, fanout=10)
        assert len(list_segments(s.log.conn, VIEW)) == 4
        if hashes != "remembered":  # a new process, or a sealed tier over the budget
            monkeypatch.setattr(manifest, "ID_HASHES",
                                manifest.IdHashes(budget=10**6 if hashes == "cold" else 0))
        old = random.Random(3).sample(range(1200), 200)
        r = c.commit("src", [rec(i) for i in old] + [rec(i) for i in range(5000, 5300)])
        assert (r.stored, r.duplicates) == (300, 200)
        r = c.commit("src", [rec(i) for i in range(5300, 5400)] + [rec(old[0])])
        assert (r.stored, r.duplicates) == (100, 1)
        assert len(all_rows(s.log, config)) == 1600


def test_a_merge_that_reuses_a_segment_id_is_checked_with_its_own_bloom(config: Config) -> None:
    # Two segments (ids 1, 2) are cached by the committer; merging them deletes both and
    # SQLite gives the merged segment id 1 again: the cache must not answer with the old
    # filter of segment 1 (which knows nothing of segment 2's ids).
    with open_stores(config) as s:
        c = s.committer()
        for b in range(2):
            c.commit("src", [rec(i) for i in range(b * 100, b * 100 + 100)])
            compact(s.log, config.defs, fanout=10)
        assert c.commit("src", [rec(150)]).duplicates == 1  # both filters are cached now
        compact(s.log, config.defs, seal=False, fanout=2)
        assert [g.id for g in list_segments(s.log.conn, VIEW)] == [1]
        r = c.commit("src", [rec(i) for i in range(100, 200)])
        assert (r.stored, r.duplicates) == (0, 100)
        assert len(all_rows(s.log, config)) == 200


def test_feature_texts_are_the_logs_json_text() -> None:
    import pyarrow as pa

    from asof_stream.events import dumps_values
    from asof_stream.offline.scan import feature_texts

    values = {"x": [1.5, None, float("nan"), 1e16, -0.0], "n": [1, None, 2**62, 0, -3],
              "s": ["a", "é\"\n", None, "", "ü"], "b": [True, False, None, True, False]}
    base = {"seq": [1, 2, 3, 4, 5], "entity": ["a"] * 5, "event_timestamp": [0] * 5,
            "ingest_ts": [0] * 5}
    table = pa.table({**base, **values, "feature:seq": [7, 8, 9, 10, 11]})
    want = [dumps_values({**{k: v[i] for k, v in values.items()}, "seq": 7 + i})
            for i in range(5)]
    assert feature_texts(table) == want
    finite = table.set_column(4, "x", pa.array([1.5, None, 2.25, 1e16, -0.0]))
    assert feature_texts(finite) == [
        dumps_values({**{k: (finite.column(k)[i].as_py()) for k in values}, "seq": 7 + i})
        for i in range(5)]
