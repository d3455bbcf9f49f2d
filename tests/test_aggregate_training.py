"""Aggregated features in training sets equal a brute-force oracle over every committed row.

Histories: batches with their own ingest time (late and out-of-order events, ties on
event time, repeated event_ids), partly sealed into segments between commits; labels at
times on the same coarse grid (exactly at event times, exactly at ``t - window``). Every
cell of :func:`build_training_set` is compared, in every mode, with and without an
``upto_seq`` bound inside the log.
"""

from __future__ import annotations

import math
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asof_stream.config import parse_config
from asof_stream.events import EventDecoder, loads_values
from asof_stream.ingest.commit import Committer
from asof_stream.offline.log import OfflineLog
from asof_stream.offline.seal import compact_view, seal_view, segments_lock
from asof_stream.training.join import JoinMode
from asof_stream.training.labels import labels_from_any
from asof_stream.training.leakage import leakage_report
from asof_stream.training.training_set import build_training_set
from tests.join_helpers import BASE, S, commit, event, label_rows
from tests.oracles_log import LogRow
from tests.toml_parts import PRELUDE

AGG_TOML = PRELUDE + """
[views.pu]
entity = "customer"
ttl = "1s"
features = { amount = "float64", qty = "int64", cat = "string", ok = "bool" }

[views.other]
entity = "customer"
features = { v = "int64" }

[aggregations.sp]
source = "pu"

[aggregations.sp.features]
n_3s = { fn = "count", window = "3s" }
qty_n = { fn = "count", of = "qty" }
amt_sum_3s = { fn = "sum", of = "amount", window = "3s" }
qty_sum_3s = { fn = "sum", of = "qty", window = "3s" }
amt_mean_5s = { fn = "mean", of = "amount", window = "5s" }
qty_mean = { fn = "mean", of = "qty" }
qty_max_3s = { fn = "max", of = "qty", window = "3s" }
amt_min = { fn = "min", of = "amount" }
cat_last_4s = { fn = "last", of = "cat", window = "4s" }
ok_last = { fn = "last", of = "ok" }
qty_std_5s = { fn = "stddev", of = "qty", window = "5s" }
"""
CONFIG = parse_config(AGG_TOML, Path("/nonexistent/asof.toml"))
DEFS = CONFIG.defs
AGG = DEFS.aggregations["sp"]
CUSTOMERS = ["a", "b", "é,\"x"]
ROWS_SQL = "SELECT seq, entity, event_timestamp, ingest_ts, features FROM log WHERE view = 'pu'"

times = st.builds(lambda sec, off: BASE + sec * S + off,
                  st.integers(0, 12), st.sampled_from([0, 0, 1, -1]))
amounts = st.none() | st.sampled_from([0.1, 2.5, -1.25, 1e16, -1e16, 0.3])


@st.composite
def events(draw: Any) -> dict[str, Any]:
    e = event("pu", draw(times), customer_id=draw(st.sampled_from(CUSTOMERS)),
              amount=draw(amounts), qty=draw(st.none() | st.integers(-5, 5)),
              cat=draw(st.none() | st.sampled_from(["p", "q"])),
              ok=draw(st.none() | st.booleans()))
    if draw(st.booleans()):
        e["event_id"] = f"id{draw(st.integers(0, 6))}"  # repeats: duplicates
    return e


steps = st.sampled_from(["none", "seal", "seal-part", "seal-merge"])
histories = st.lists(st.tuples(times, st.lists(events(), min_size=1, max_size=8), steps),
                     min_size=1, max_size=5)
labels = st.lists(st.tuples(st.sampled_from([*CUSTOMERS, "nobody"]), times),
                  min_size=1, max_size=12)
modes = st.builds(JoinMode, st.booleans(), st.booleans())


def build(root: Path, history: Any) -> tuple[OfflineLog, list[LogRow]]:
    log = OfflineLog(root / "offline.sqlite")
    committer = Committer(log, None, EventDecoder(DEFS))
    seen: dict[int, LogRow] = {}
    for available_at, batch, step in history:
        commit(committer, batch, available_at)
        seen.update((r[0], r) for r in log.conn.execute(ROWS_SQL))
        if step == "none":
            continue
        with segments_lock(log):
            upto = log.max_seq() - len(batch) // 2 if step == "seal-part" else None
            seal_view(log, DEFS, "pu", upto_seq=upto)
            if step == "seal-merge":
                compact_view(log, "pu", fanout=2)
    return log, sorted(seen.values())


def oracle(rows: list[LogRow], entity: str, t: int, feature: str, mode: JoinMode) -> Any:
    """The window rule read literally over every committed row."""
    spec = AGG.feature(feature)
    picked = [r for r in rows if r[1] == entity
              and (r[2] < t if mode.strict else r[2] <= t)
              and (spec.window is None or t - spec.window < r[2])
              and (not mode.as_known_at or r[3] <= t)]
    picked.sort(key=lambda r: (r[2], r[0]))
    if spec.of is None:
        return len(picked)
    values = [v for v in (loads_values(r[4]).get(spec.of) for r in picked) if v is not None]
    dtype = DEFS.views["pu"].feature(spec.of).dtype
    if spec.fn == "count":
        return len(values)
    if spec.fn == "sum":
        return math.fsum(values) if dtype == "float64" else sum(values)
    if not values:
        return None
    if spec.fn == "min":
        return min(values)
    if spec.fn == "max":
        return max(values)
    if spec.fn == "last":
        return values[-1]
    exact = [Fraction(v) for v in values]
    mean = sum(exact) / len(exact)
    if spec.fn == "mean":
        return float(mean)
    return math.sqrt(float(sum((x - mean) ** 2 for x in exact) / len(exact)))


def same(got: Any, want: Any, dtype: str) -> bool:
    if got is None or want is None:
        return got is None and want is None
    if dtype == "float64":
        return type(got) is float and abs(got - want) <= 1e-12 * abs(want) + 1e-300
    return type(got) is type(want) and got == want


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, labels, modes, st.integers(0, 40))
def test_aggregations_over_tiers_equal_oracle(history: Any, rows: Any, mode: JoinMode,
                                              cut: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log, committed = build(Path(tmp), history)
        with log:
            lab = labels_from_any(label_rows([(c, 0, t) for c, t in rows]), DEFS)
            upto = max(0, log.max_seq() - cut)
            for bound in (None, upto):
                mine = [r for r in committed if bound is None or r[0] <= bound]
                ts = build_training_set(log, DEFS, lab, ["sp", "pu:qty"], strict=mode.strict,
                                        as_known_at=mode.as_known_at, upto_seq=bound)
                assert ts.names[-1] == "qty"
                for j, (name, feature) in enumerate(ts.pairs[:-1]):
                    dtype = DEFS.dtype_of(name, feature)
                    assert ts.dtypes[j] == dtype
                    got = ts.features[j]
                    for i, (c, t) in enumerate(rows):
                        want = oracle(mine, c, t, feature, mode)
                        assert same(got[i], want, dtype), (feature, i, got[i], want, bound)


def test_leakage_report_over_aggregations() -> None:
    """Naive: each feature over ALL the entity's rows; a row leaks when that used a row
    after its time (at it when strict; ingested after it as known at)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = OfflineLog(Path(tmp) / "offline.sqlite")
        c = Committer(log, None, EventDecoder(DEFS))
        commit(c, [event("pu", BASE, customer_id="a", amount=1.0, qty=1)], available_at=BASE)
        commit(c, [event("pu", BASE + 2 * S, customer_id="a", amount=2.0, qty=3)],
               available_at=BASE + 6 * S)
        with segments_lock(log):
            seal_view(log, DEFS, "pu", upto_seq=1)  # one row sealed, one in the head
        with log:
            lab = labels_from_any(label_rows([("a", 0, BASE + S), ("a", 0, BASE + 2 * S),
                                              ("a", 0, BASE + 9 * S), ("b", 0, BASE)]), DEFS)
            refs = ["sp:qty_sum_3s", "sp:amt_min", "sp:n_3s"]
            rep = leakage_report(log, DEFS, lab, refs)
            # naive: qty 4, min 1.0, count 2 for a; row 0 (t=+1s) saw only the first row
            assert (rep.rows, rep.leaking_rows, rep.cells, rep.future_cells) == (4, 1, 12, 3)
            by = {f.name: (f.future_cells, f.differing_cells) for f in rep.features}
            # row 2 (t=+9s): 3s windows are empty, the naive values are not
            assert by == {"qty_sum_3s": (1, 2), "amt_min": (1, 0), "n_3s": (1, 2)}
            assert rep.examples[0].features[0] == {
                "name": "qty_sum_3s", "pit_value": 1, "pit_time": None, "naive_value": 4,
                "naive_time": None, "future": True}
            assert leakage_report(log, DEFS, lab, refs, strict=True).leaking_rows == 2
            assert leakage_report(log, DEFS, lab, refs, as_known_at=True).leaking_rows == 2
            mixed = leakage_report(log, DEFS, lab, ["sp:n_3s", "pu:qty"])
            assert mixed.leaking_rows == 1 and mixed.cells == 8


SHARDED_TOML = AGG_TOML.replace('online = "sqlite:///data/online.sqlite"',
                                'online = "redis://127.0.0.1:6379/0"\nshards = "partition"') + """
[sources.k]
kind = "kafka"
bootstrap = "127.0.0.1:9"
topics = ["t"]
"""


def test_aggregations_over_partition_shards_equal_one_log(tmp_path: Path) -> None:
    """Each label is computed in its entity's shard up to that shard's mark; the result
    equals the same events in one log (no Kafka or Redis is contacted: files only)."""
    from asof_stream.offline.shards import Router, record_meta, shard_path
    from asof_stream.training.training_set import build_sharded_training_set

    (tmp_path / "asof.toml").write_text(SHARDED_TOML)
    config = parse_config(SHARDED_TOML, tmp_path / "asof.toml")
    customers = [f"c{i}" for i in range(12)]
    evs = [event("pu", BASE + (i % 9) * S, customer_id=customers[i % 12], amount=i * 0.5,
                 qty=i % 4, cat="pq"[i % 2], ok=bool(i % 3)) for i in range(80)]
    route = Router(3)
    shard_path(config, 0).parent.mkdir(parents=True, exist_ok=True)
    for p in range(2):  # partition 2 has no shard yet: its labels get empty windows
        log = OfflineLog(shard_path(config, p))
        record_meta(log.conn, shard_path(config, p), p, 3)
        commit(Committer(log, None, EventDecoder(DEFS)),
               [e for e in evs if route(e["customer_id"]) == p], BASE)
        log.close()
    flat = OfflineLog(":memory:")
    commit(Committer(flat, None, EventDecoder(DEFS)),
           [e for e in evs if route(e["customer_id"]) < 2], BASE)
    rows = [(c, 0, BASE + k * S) for k in range(0, 10, 3) for c in [*customers, "zz"]]
    lab = labels_from_any(label_rows(rows), DEFS)
    assert {route(c) for c in customers} == {0, 1, 2}
    got = build_sharded_training_set(config, DEFS, lab, ["sp"])
    want = build_training_set(flat, DEFS, lab, ["sp"])
    assert got.features == want.features
    assert set(got.shard_high_water or {}) == {"p0000", "p0001"}
