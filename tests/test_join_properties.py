"""Property tests: the shared as-of join equals the brute-force oracle, in every mode.

Histories are drawn on a coarse grid of times (whole seconds, plus or minus one
microsecond) so ties, equal timestamps with different seq, labels exactly at an
event's time and TTL edges (exactly ttl, ttl + 1 microsecond) are common. Events are
committed in a few batches with their own ``available_at``, so as-known-at matters.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asof_stream.offline.log import OfflineLog
from asof_stream.training.join import JoinMode, asof_view
from asof_stream.training.labels import Labels, labels_from_any
from asof_stream.training.naive import naive_view
from asof_stream.training.training_set import build_training_set
from tests.join_helpers import BASE, S, commit, event, join_config, label_rows, memory_log
from tests.oracles_log import naive_view_oracle, oracle_view

CONFIG = join_config()
CUSTOMERS = ["a", "b", "é,\"x"]
MERCHANTS = [1, 2, -3]

times = st.builds(lambda sec, off: BASE + sec * S + off,
                  st.integers(0, 12), st.sampled_from([0, 0, 1, -1]))


@st.composite
def events(draw: Any) -> dict[str, Any]:
    view = draw(st.sampled_from(["cs", "cm", "mr", "pr"]))
    ts = draw(times)
    maybe = st.none() | st.integers(-5, 5)
    if view == "cs":
        return event(view, ts, customer_id=draw(st.sampled_from(CUSTOMERS)), x=draw(maybe),
                     s=draw(st.none() | st.sampled_from(["p", "q"])))
    if view == "cm":
        return event(view, ts, customer_id=draw(st.sampled_from(CUSTOMERS)), y=draw(maybe),
                     x=draw(st.none() | st.sampled_from([0.5, -1.25])))
    if view == "mr":
        return event(view, ts, merchant_id=draw(st.sampled_from(MERCHANTS)),
                     r=draw(st.none() | st.sampled_from([1.5, 2.0])), f=draw(st.booleans()))
    return event(view, ts, customer_id=draw(st.sampled_from(CUSTOMERS)),
                 merchant_id=draw(st.sampled_from(MERCHANTS)), z=draw(maybe))


# A history: a few batches, each with its own ingest time (available_at).
histories = st.lists(st.tuples(times, st.lists(events(), max_size=8)), max_size=4)
labels = st.lists(st.tuples(st.sampled_from(CUSTOMERS + ["nobody"]),
                            st.sampled_from(MERCHANTS + [99]), times), min_size=1, max_size=12)
modes = st.builds(JoinMode, st.booleans(), st.booleans())


def log_and_labels(history: Any, rows: Any) -> tuple[OfflineLog, Labels]:
    """An in-memory log holding ``history`` (batches committed at their ``available_at``)
    and the labels of ``rows``."""
    log, committer = memory_log(CONFIG)
    for available_at, batch in history:
        if batch:
            commit(committer, batch, available_at)
    return log, labels_from_any(label_rows(rows), CONFIG.defs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, labels, modes)
def test_join_equals_oracle(history: Any, rows: Any, mode: JoinMode) -> None:
    log, lab = log_and_labels(history, rows)
    for view in ("cs", "cm", "mr", "pr"):
        keys = lab.entity_keys(view)
        got = asof_view(log, CONFIG.defs, view, keys, lab.times, mode)
        want = oracle_view(log, CONFIG.defs, view, keys, lab.times, mode)
        assert got.seqs == want.seqs, view
        assert got.event_ts == want.event_ts, view
        assert got.values == want.values, view
        naive, naive_want = naive_view(log, view, keys), naive_view_oracle(log, view, keys)
        assert (naive.event_ts, naive.ingest_ts, naive.values) == \
            (naive_want.event_ts, naive_want.ingest_ts, naive_want.values)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, labels, modes)
def test_training_set_columns_follow_the_oracle(history: Any, rows: Any, mode: JoinMode) -> None:
    """Several views, refs interleaved across views: each output cell is the oracle's."""
    log, lab = log_and_labels(history, rows)
    refs = ["cs:x", "mr:f", "pr", "cm:x", "cs:s", "mr:r"]
    ts = build_training_set(log, CONFIG.defs, lab, refs, strict=mode.strict,
                            as_known_at=mode.as_known_at, full_feature_names=True)
    records = ts.to_records()
    assert [r["row"] for r in records] == list(range(len(rows)))  # label order kept
    for view, feature in ts.pairs:
        want = oracle_view(log, CONFIG.defs, view, lab.entity_keys(view), lab.times, mode)
        assert [r[f"{view}__{feature}"] for r in records] == want.column(feature)
