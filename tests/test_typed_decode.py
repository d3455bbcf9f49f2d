"""The typed msgspec path (sources bound to one view) decides exactly like the general path."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asof_stream.config import Config
from asof_stream.events import Event, EventDecoder, EventError

values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4),
    st.sampled_from(["2026-01-05T10:00:00Z", "2026-01-05", "nope", "2026-02-30",
                     "10000-01-01T00:00:00Z", "2026-01-05T10:00:00+05:30"]),
    st.lists(st.integers(), max_size=2),
)
keys = st.sampled_from(["view", "customer_id", "event_timestamp", "spend_7d", "orders_7d", "tier",
                        "event_id", "other"])
raw_tails = st.sampled_from([b"", b' , "spend_7d": NaN', b', "spend_7d": 1e999',
                             b', "orders_7d": 1' + b"0" * 30, b', "tier": "\xff"'])


def outcome(decoder: EventDecoder, raw: bytes) -> tuple[str, Any]:
    try:
        ev: Event = decoder.decode(raw)
    except EventError as exc:
        return "error", str(exc)
    return "ok", (ev.view, ev.entity, ev.event_ts, ev.event_id,
                  json.dumps(ev.values, sort_keys=True), [type(v) for v in ev.values.values()])


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.dictionaries(keys, values, max_size=3), raw_tails)
def test_typed_path_agrees_with_the_general_path(config: Config, obj: dict[str, Any],
                                                 tail: bytes) -> None:
    typed = EventDecoder(config.defs, view="customer_stats")
    general = EventDecoder(config.defs, view="customer_stats")
    general._fast = None
    assert typed._fast is not None
    general.refresh_clock(typed.latest_ts - typed.max_future)  # one clock for both errors
    # Start from a valid event and let hypothesis change, add or null a few fields.
    obj = {"customer_id": "c1", "event_timestamp": "2026-01-05T10:00:00Z", "spend_7d": 1.5,
           "orders_7d": 3, "tier": "gold", **obj}
    raw = json.dumps(obj).encode()
    if tail and raw.endswith(b"}") and len(raw) > 2:
        raw = raw[:-1] + tail + b"}"
    assert outcome(typed, raw) == outcome(general, raw), raw


def test_typed_path_is_used_for_valid_events(config: Config) -> None:
    d = EventDecoder(config.defs, view="customer_stats")
    assert d._fast is not None
    raw = b'{"customer_id": "c1", "event_timestamp": 5, "spend_7d": 2, "event_id": 7}'
    assert d._fast.decode(raw) == Event("customer_stats", "c1", 5_000_000, "7",
                                        {"spend_7d": 2.0, "orders_7d": None, "tier": None})
