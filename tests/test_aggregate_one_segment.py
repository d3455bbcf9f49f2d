"""Aggregations over one sealed segment (the read straight into window bounds,
training/agg_segment.py) equal the brute-force oracle: segments written in row groups of
a few rows, so windows and edges fall across groups, between them and outside every one,
and entities no label has sit between the labels' ones."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asof_stream.events import EventDecoder
from asof_stream.ingest.commit import Committer
from asof_stream.kernels.sortkeys import packed_keys
from asof_stream.offline import segments
from asof_stream.offline.log import OfflineLog
from asof_stream.offline.seal import seal_view, segments_lock
from asof_stream.training import agg_segment
from asof_stream.training.join import JoinMode
from asof_stream.training.labels import labels_from_any
from asof_stream.training.training_set import build_training_set
from tests.join_helpers import BASE, S, commit, event, label_rows
from tests.test_aggregate_training import DEFS, ROWS_SQL, amounts, oracle, same, times

ENTITIES = ["a", "b", "c", "d", "e", "é,\"x"]


@st.composite
def rows(draw: Any) -> dict[str, Any]:
    return event("pu", draw(times), customer_id=draw(st.sampled_from(ENTITIES)),
                 amount=draw(amounts), qty=draw(st.none() | st.integers(-5, 5)),
                 cat=draw(st.none() | st.sampled_from(["p", "q"])),
                 ok=draw(st.none() | st.booleans()))


labels = st.lists(st.tuples(st.sampled_from([*ENTITIES[::2], "nobody", "zz"]),
                            st.builds(lambda t, d: t + d * S, times, st.integers(-4, 4))),
                  min_size=1, max_size=14)


def spy_on_segment_windows(mp: pytest.MonkeyPatch) -> list[bool]:
    """A list that gets, per aggregation, whether the one-segment road was taken."""
    taken: list[bool] = []
    real = agg_segment.segment_windows

    def spy(*args: Any, **kwargs: Any) -> Any:
        got = real(*args, **kwargs)
        taken.append(got is not None)
        return got

    mp.setattr(agg_segment, "segment_windows", spy)
    return taken


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), min_size=1, max_size=30), labels, st.booleans(),
       st.integers(1, 5))
def test_one_segment_in_row_groups_equals_oracle(events: Any, wanted: Any, strict: bool,
                                                 group_rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setattr(segments, "ROW_GROUP_ROWS", group_rows)
        taken = spy_on_segment_windows(mp)
        log = OfflineLog(Path(tmp) / "offline.sqlite")
        commit(Committer(log, None, EventDecoder(DEFS)), events, BASE)
        committed = sorted(log.conn.execute(ROWS_SQL))
        with segments_lock(log):
            seal_view(log, DEFS, "pu")
        with log:
            lab = labels_from_any(label_rows([(c, 0, t) for c, t in wanted]), DEFS)
            for as_known_at in (False, True):
                mode = JoinMode(strict, as_known_at)
                ts = build_training_set(log, DEFS, lab, ["sp"], strict=strict,
                                        as_known_at=as_known_at)
                for j, (name, feature) in enumerate(ts.pairs):
                    dtype = DEFS.dtype_of(name, feature)
                    for i, (c, t) in enumerate(wanted):
                        want = oracle(committed, c, t, feature, mode)
                        assert same(ts.features[j][i], want, dtype), (feature, i, want)
    assert taken == [True], taken  # read straight into bounds, not as known at


def test_the_general_path_is_taken_with_a_head() -> None:
    """Rows in the head as well as in a segment: the coded rows of every tier."""
    with tempfile.TemporaryDirectory() as tmp:
        log = OfflineLog(Path(tmp) / "offline.sqlite")
        c = Committer(log, None, EventDecoder(DEFS))
        commit(c, [event("pu", BASE, customer_id="a", amount=1.0, qty=1)], BASE)
        with segments_lock(log):
            seal_view(log, DEFS, "pu")
        commit(c, [event("pu", BASE + S, customer_id="a", amount=2.0, qty=2)], BASE)
        with log:
            lab = labels_from_any(label_rows([("a", 0, BASE + S)]), DEFS)
            ts = build_training_set(log, DEFS, lab, ["sp:qty_sum_3s", "sp:n_3s"])
            assert [f[0] for f in ts.features] == [3, 2]


def test_labels_after_the_last_event_in_falling_time_order() -> None:
    """Labels of one entity after its segment's last event time share an upper edge (the
    key's time is clipped there) but not a lower one: sorted by their own edges."""
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        taken = spy_on_segment_windows(mp)
        log = OfflineLog(Path(tmp) / "offline.sqlite")
        commit(Committer(log, None, EventDecoder(DEFS)),
               [event("pu", BASE + k * S, customer_id="a", amount=1.0, qty=k) for k in range(3)],
               BASE)
        with segments_lock(log):
            seal_view(log, DEFS, "pu")
        with log:
            at = [BASE + 5 * S, BASE + 4 * S, BASE + 3 * S, BASE + 9 * S]
            lab = labels_from_any(label_rows([("a", 0, t) for t in at]), DEFS)
            for threads in (1, 2, 3):  # one reader, or more than the row groups
                mp.setattr(agg_segment, "THREADS", threads)
                ts = build_training_set(log, DEFS, lab, ["sp:qty_sum_3s", "sp:n_3s"])
                # 3s windows: (2s, 5s] none (2s is out); (1s, 4s] qty 2; (0s, 3s] 1 + 2;
                # (6s, 9s] none
                assert [list(f) for f in ts.features] == [[0, 2, 3, 0], [0, 1, 2, 0]]
    assert taken == [True] * 3


def test_edges_sorted_when_the_upper_ones_are_clipped() -> None:
    """A layout narrower than the labels' times clips their upper edges (labels after the
    last row share one): each edge array still comes sorted, in its own order."""
    layout = packed_keys(10, 20, 3)
    assert layout is not None
    codes = np.array([1, 1, 1, 3, 3], dtype=np.int64)
    ts = np.array([25, 24, 23, 15, 30], dtype=np.int64)
    edges = agg_segment._edges(layout, codes, ts, [5, None], strict=False)
    for e, (thr, neg) in zip(edges, [(ts, ts < 0), (ts - 5, ts < 0),
                                      (np.zeros(5, np.int64), ts >= 0)], strict=True):
        assert (e.keys[1:] >= e.keys[:-1]).all()
        assert (e.keys == layout.probes(codes, thr, neg)[e.order]).all()
    assert edges[1].order is not edges[0].order  # sorted on their own
