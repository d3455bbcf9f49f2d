"""The join over both tiers: rows sealed into segments (several per entity, merged or
not) and rows still in the head are all seen, in every mode, and equal the oracle over
every row ever committed (collected before sealing removed them from the head)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asof_stream.events import EventDecoder
from asof_stream.ingest.commit import Committer
from asof_stream.offline.log import OfflineLog
from asof_stream.offline.seal import compact_view, seal_view, segments_lock
from asof_stream.training.join import JoinMode, asof_view
from asof_stream.training.labels import labels_from_any
from asof_stream.training.leakage import leakage_report
from asof_stream.training.naive import naive_view
from asof_stream.training.training_set import build_training_set
from tests.join_helpers import BASE, S, commit, event, join_config, label_rows
from tests.oracles_log import LogRow, naive_rows_oracle, oracle_rows
from tests.test_join_properties import events, labels, modes, times

CONFIG = join_config()
VIEWS = ("cs", "cm", "mr", "pr")
ROWS_SQL = "SELECT seq, entity, event_timestamp, ingest_ts, features FROM log WHERE view = ?"

# A history: batches, each with its ingest time, then what to do after it: nothing,
# seal every view, seal only up to part of the batch, or seal and merge segments.
steps = st.sampled_from(["none", "seal", "seal-part", "seal-merge"])
histories = st.lists(st.tuples(times, st.lists(events(), min_size=1, max_size=8), steps),
                     min_size=1, max_size=5)


def collect(log: OfflineLog, seen: dict[str, dict[int, LogRow]]) -> None:
    """Every head row now, kept by seq (before sealing moves it out of the head)."""
    for view in VIEWS:
        for row in log.conn.execute(ROWS_SQL, (view,)):
            seen[view][row[0]] = row


def build(root: Path, history: Any) -> tuple[OfflineLog, dict[str, list[LogRow]]]:
    log = OfflineLog(root / "offline.sqlite")
    committer = Committer(log, None, EventDecoder(CONFIG.defs))
    seen: dict[str, dict[int, LogRow]] = {v: {} for v in VIEWS}
    for available_at, batch, step in history:
        commit(committer, batch, available_at)
        collect(log, seen)
        if step == "none":
            continue
        with segments_lock(log):
            for view in VIEWS:
                upto = log.max_seq() - len(batch) // 2 if step == "seal-part" else None
                seal_view(log, CONFIG.defs, view, upto_seq=upto)
                if step == "seal-merge":
                    compact_view(log, view, fanout=2)
    return log, {v: sorted(rows.values()) for v, rows in seen.items()}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, labels, modes, st.integers(0, 40))
def test_join_over_sealed_tiers_equals_oracle(history: Any, rows: Any, mode: JoinMode,
                                             cut: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log, committed = build(Path(tmp), history)
        with log:
            lab = labels_from_any(label_rows(rows), CONFIG.defs)
            upto = max(0, log.max_seq() - cut)  # a bound inside the log, often in a segment
            for view in VIEWS:
                keys = lab.entity_keys(view)
                for bound in (None, upto):
                    mine = [r for r in committed[view] if bound is None or r[0] <= bound]
                    got = asof_view(log, CONFIG.defs, view, keys, lab.times, mode,
                                    upto_seq=bound)
                    want = oracle_rows(mine, CONFIG.defs, view, keys, lab.times, mode)
                    assert got.seqs == want.seqs, (view, bound)
                    assert got.event_ts == want.event_ts, (view, bound)
                    assert got.values == want.values, (view, bound)
                    naive = naive_view(log, view, keys, upto_seq=bound)
                    naive_want = naive_rows_oracle(mine, view, keys)
                    assert (naive.event_ts, naive.ingest_ts, naive.values) == \
                        (naive_want.event_ts, naive_want.ingest_ts, naive_want.values)


def test_rows_of_one_entity_split_across_segments_and_head(tmp_path: Path) -> None:
    """Ties on event_timestamp across tiers: the greatest seq wins, wherever it lives;
    ttl edges (exactly ttl, ttl + 1us) hold on sealed rows too."""
    log = OfflineLog(tmp_path / "offline.sqlite")
    committer = Committer(log, None, EventDecoder(CONFIG.defs))
    commit(committer, [event("cs", BASE, customer_id="a", x=1, s="p")], BASE)
    with segments_lock(log):
        seal_view(log, CONFIG.defs, "cs")
    commit(committer, [event("cs", BASE, customer_id="a", x=2, s="p")], BASE + 9 * S)
    with segments_lock(log):
        seal_view(log, CONFIG.defs, "cs")
    commit(committer, [event("cs", BASE, customer_id="a", x=3, s="p"),
                       event("cs", BASE + 2 * S, customer_id="a", x=4, s="q")], BASE + 20 * S)
    assert log.sealed_rows("cs") == 2
    t = [BASE, BASE + S, BASE + 5 * S, BASE + 5 * S + 1, BASE + 7 * S, BASE + 7 * S + 1]
    got = asof_view(log, CONFIG.defs, "cs", ["a"] * len(t), t)
    assert got.column("x") == [3, 3, 4, 4, 4, None]  # head wins the tie at BASE; ttl 5s
    known = asof_view(log, CONFIG.defs, "cs", ["a"] * len(t), t, JoinMode(as_known_at=True))
    assert known.column("x") == [1, 1, 1, None, None, None]  # only the first segment known
    assert asof_view(log, CONFIG.defs, "cs", ["a"], [BASE], upto_seq=2).column("x") == [2]
    strict = asof_view(log, CONFIG.defs, "cs", ["a"], [BASE + 1], JoinMode(strict=True))
    assert strict.column("x") == [3]
    lab = labels_from_any(label_rows([("a", 1, BASE + S)]), CONFIG.defs)
    ts = build_training_set(log, CONFIG.defs, lab, ["cs:x"], upto_seq=2)
    assert ts.to_records()[0]["x"] == 2 and ts.high_water_seq == 2
    log.close()


def test_naive_join_and_leakage_report_see_sealed_rows(tmp_path: Path) -> None:
    log = OfflineLog(tmp_path / "offline.sqlite")
    committer = Committer(log, None, EventDecoder(CONFIG.defs))
    commit(committer, [event("cs", BASE, customer_id="a", x=1, s="p"),
                       event("cs", BASE + 2 * S, customer_id="a", x=2, s="p"),
                       event("cs", BASE, customer_id="b", x=7, s="q")], BASE)
    with segments_lock(log):
        seal_view(log, CONFIG.defs, "cs")
    commit(committer, [event("cs", BASE - S, customer_id="b", x=8, s="q")], BASE)
    assert log.sealed_rows("cs") == 3
    assert log.conn.execute("SELECT count(*) FROM log").fetchone()[0] == 1
    naive = naive_view(log, "cs", ["a", "b", "nobody"])
    assert [v and v["x"] for v in naive.values] == [2, 7, None]  # both newest rows sealed
    assert naive.event_ts == [BASE + 2 * S, BASE, None]
    lab = labels_from_any(label_rows([("a", 1, BASE + S), ("b", 1, BASE)]), CONFIG.defs)
    rep = leakage_report(log, CONFIG.defs, lab, ["cs:x"])
    assert (rep.rows, rep.leaking_rows, rep.future_cells, rep.differing_cells) == (2, 1, 1, 1)
    ex = rep.examples[0]
    assert ex.features[0]["pit_value"] == 1 and ex.features[0]["naive_value"] == 2
    log.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, labels, modes)
def test_a_sealed_shard_is_joined_over_both_tiers(history: Any, rows: Any, mode: JoinMode) -> None:
    """The per-shard join of partition shards (join_part, in its own process) sees the
    shard's sealed rows as well as its head: the same rows and values as asof_view."""
    from asof_stream.training.parallel_join import Gathered, join_part

    with tempfile.TemporaryDirectory() as tmp:
        log, _ = build(Path(tmp), history)
        with log:
            lab = labels_from_any(label_rows(rows), CONFIG.defs)
            for view in VIEWS:
                keys = lab.entity_keys(view)
                want = asof_view(log, CONFIG.defs, view, keys, lab.times, mode)
                among = sorted(range(len(keys)), key=keys.__getitem__)[::2]
                for idx in (None, among):
                    got = Gathered(view, len(keys))
                    got.add(join_part(log.path, CONFIG.defs, view, keys, lab.times, mode,
                                      log.max_seq(), idx), list(range(len(keys))) if idx is None
                            else idx)
                    m = got.matches()
                    for i in (range(len(keys)) if idx is None else idx):
                        assert m.seqs[i] == want.seqs[i], (view, i)
                        assert m.values[i] == want.values[i], (view, i)
                        assert m.event_ts[i] == want.event_ts[i], (view, i)
