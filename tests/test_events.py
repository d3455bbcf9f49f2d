from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from asof_stream.config import Config
from asof_stream.events import EventDecoder, EventError, dumps_values, loads_values
from tests.event_schema import reference_validate

GOOD = {"view": "customer_stats", "customer_id": "c1", "event_timestamp": "2026-01-05T10:00:00Z",
        "spend_7d": 12.5, "orders_7d": 3, "tier": "gold", "event_id": "e-1"}


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_contract_example_decodes(config: Config) -> None:
    ev = EventDecoder(config.defs).decode(enc(GOOD))
    assert (ev.view, ev.entity, ev.event_ts, ev.event_id) == (
        "customer_stats", "c1", 1_767_607_200_000_000, "e-1")
    assert ev.values == {"spend_7d": 12.5, "orders_7d": 3, "tier": "gold"}


def test_missing_features_are_null_and_ints_are_floats(config: Config) -> None:
    ev = EventDecoder(config.defs).validate(
        {"view": "customer_stats", "customer_id": "c1", "event_timestamp": 1767607200,
         "spend_7d": 3})
    assert ev.values == {"spend_7d": 3.0, "orders_7d": None, "tier": None}
    assert isinstance(ev.values["spend_7d"], float)


def test_int64_key_and_bound_view(config: Config) -> None:
    dec = EventDecoder(config.defs, view="merchant_risk")
    ev = dec.validate({"merchant_id": 42, "event_timestamp": "2026-01-05", "risk": 0.5})
    assert (ev.view, ev.entity) == ("merchant_risk", "42")
    with pytest.raises(EventError, match="bound to 'merchant_risk'"):
        dec.validate({"view": "customer_stats", "customer_id": "c", "event_timestamp": 1})


BAD: list[tuple[bytes, str]] = [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b"\xff\xfe{}", "UTF-8"),
    (enc({**GOOD, "view": "nope"}), "unknown view 'nope'"),
    (enc({k: v for k, v in GOOD.items() if k != "customer_id"}), "missing join key 'customer_id'"),
    (enc({k: v for k, v in GOOD.items() if k != "event_timestamp"}), "missing event_timestamp"),
    (enc({**GOOD, "event_timestamp": "last tuesday"}), "bad event_timestamp"),
    (enc({**GOOD, "event_timestamp": "10000-01-01T00:00:00Z"}), "bad event_timestamp"),
    (enc({**GOOD, "event_timestamp": 1e15}), "outside the years"),
    (enc({**GOOD, "orders_7d": 1.5}), "feature 'orders_7d' (int64)"),
    (enc({**GOOD, "orders_7d": 2**63}), "signed 64-bit"),
    (enc({**GOOD, "orders_7d": True}), "feature 'orders_7d' (int64)"),
    (enc({**GOOD, "spend_7d": "12"}), "feature 'spend_7d' (float64)"),
    (enc({**GOOD, "tier": 3}), "feature 'tier' (string)"),
    (enc({**GOOD, "customer_id": 7}), "join key 'customer_id'"),
    (enc({**GOOD, "colour": "red"}), "unknown field(s) ['colour']"),
    (json.dumps({**GOOD, "spend_7d": float("nan")}).encode(), "NaN"),
    (json.dumps({**GOOD, "spend_7d": float("inf")}).encode(), "NaN and infinities"),
    (b'{"view": "customer_stats", "customer_id": "c", "event_timestamp": 1, "spend_7d": 1e999}',
     "NaN and infinities"),
    (enc({**GOOD, "event_id": 1.5}), "event_id must be a string"),
    (enc({**GOOD, "view": 5}), "'view' must be a string"),
]


@pytest.mark.parametrize("raw, reason", BAD)
def test_every_bad_event_is_rejected_with_its_reason(config: Config, raw: bytes, reason: str) -> None:
    with pytest.raises(EventError) as err:
        EventDecoder(config.defs).decode(raw)
    assert reason in str(err.value)


def test_oversized_is_rejected_before_parsing(config: Config) -> None:
    dec = EventDecoder(config.defs, max_bytes=100)
    with pytest.raises(EventError, match="oversized"):
        dec.decode(enc({**GOOD, "tier": "x" * 200}))


def test_view_needed_when_several_views(config: Config) -> None:
    with pytest.raises(EventError, match="missing 'view'"):
        EventDecoder(config.defs).validate({k: v for k, v in GOOD.items() if k != "view"})


def test_extra_ignore_and_required_and_allow_nan(make_config: Any) -> None:
    cfg = make_config("""
[views.wide]
entity = "customer"
extra = "ignore"
features = { a = { type = "float64", allow_nan = true }, b = { type = "string", required = true } }
""")
    dec = EventDecoder(cfg.defs, view="wide")
    ev = dec.decode(b'{"customer_id": "c", "event_timestamp": 1, "a": NaN, "b": "x", "zzz": 1}')
    assert math.isnan(ev.values["a"]) and ev.values["b"] == "x"
    with pytest.raises(EventError, match="missing required feature 'b'"):
        dec.validate({"customer_id": "c", "event_timestamp": 1})
    # NaN survives the trip through the log's JSON.
    assert math.isnan(loads_values(dumps_values(ev.values))["a"])


def test_multi_key_entity(make_config: Any) -> None:
    cfg = make_config("""
[entities.pair]
join_keys = { customer_id = "string", merchant_id = "int64" }
[views.pair_stats]
entity = "pair"
features = { n = "int64" }
""")
    ev = EventDecoder(cfg.defs, view="pair_stats").validate(
        {"customer_id": "c1", "merchant_id": 9, "event_timestamp": 0, "n": 1})
    assert ev.entity == '["c1",9]'


# -- the compiled decoder and the pydantic statement of the rules agree --------------------

values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
    st.sampled_from(["2026-01-05T10:00:00Z", "2026-01-05", "2026-01-05T10:00:00+05:30",
                     "nope", "2026-02-30", "9999-12-31T23:59:59Z"]),
    st.lists(st.integers(), max_size=2),
)
keys = st.sampled_from(["customer_id", "event_timestamp", "spend_7d", "orders_7d", "tier",
                        "event_id", "other"])


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.dictionaries(keys, values, max_size=7))
def test_decoder_agrees_with_pydantic_rules(config: Config, obj: dict[str, Any]) -> None:
    obj = {"view": "customer_stats", **obj}
    try:
        fast = EventDecoder(config.defs).validate(obj)
    except EventError:
        fast = None
    try:
        ref = reference_validate(config.defs, "customer_stats", obj)
    except ValidationError:
        ref = None
    assert (fast is None) == (ref is None), (obj, fast, ref)
    if fast is not None and ref is not None:
        assert (fast.entity, fast.event_ts, fast.event_id) == (ref.entity, ref.event_ts, ref.event_id)
        assert json.dumps(fast.values) == json.dumps(ref.values)


def test_deeply_nested_json_is_an_event_error(config: Config) -> None:
    """msgspec raises RecursionError past its depth limit: the decoder says why instead."""
    deep = b'{"customer_id": "c1", "event_timestamp": 1, "tier": ' + b"[" * 20_000 \
        + b"]" * 20_000 + b"}"
    for view in ("customer_stats", None):
        with pytest.raises(EventError, match="nested too deeply"):
            EventDecoder(config.defs, view).decode(deep)


def _at(us: int) -> dict[str, Any]:
    return {**GOOD, "event_timestamp": us / 1e6}


@pytest.mark.parametrize("view", [None, "customer_stats"])  # general and typed paths
def test_event_beyond_max_future_is_rejected(config: Config, view: str | None) -> None:
    from asof_stream.timestamps import now_micros

    decoder = EventDecoder(config.defs, view=view)
    day = 86_400_000_000
    for far in ({**GOOD, "event_timestamp": "9999-12-31T00:00:00Z"},
                _at(now_micros() + 2 * day)):
        with pytest.raises(EventError) as exc:
            decoder.decode(enc(far))
        msg = str(exc.value)
        assert msg.startswith("event_timestamp ") and "more than 1d in the future" in msg, msg
        assert '[ingest] max_future = "1d"' in msg
        with pytest.raises(EventError, match="max_future"):
            decoder.validate(far)
    assert "9999-12-31T00:00:00Z" in str(pytest.raises(EventError, decoder.decode, enc(
        {**GOOD, "event_timestamp": "9999-12-31T00:00:00Z"})).value)
    assert decoder.decode(enc(_at(now_micros() + day // 2))).event_ts > now_micros()


def test_max_future_is_configurable_and_a_stale_bound_refreshes(make_config: Any) -> None:
    from asof_stream.timestamps import now_micros

    day = 86_400_000_000
    config = make_config('[ingest]\nmax_future = "10d"\n')
    decoder = EventDecoder(config.defs)
    assert decoder.decode(enc(_at(now_micros() + 2 * day))).view == "customer_stats"
    with pytest.raises(EventError, match='more than 10d in the future'):
        decoder.decode(enc(_at(now_micros() + 11 * day)))
    decoder.refresh_clock(now_micros() - 30 * day)  # a bound computed long ago
    assert decoder.decode(enc(_at(now_micros() + 2 * day))).view == "customer_stats"
    from asof_stream.config import ConfigError

    with pytest.raises(ConfigError, match="max_future"):
        make_config('[ingest]\nmax_future = "soon"\n')


def test_far_future_event_becomes_a_dead_letter_with_the_reason(config: Config) -> None:
    from asof_stream.ingest.sources.base import Record
    from asof_stream.stores import open_stores

    with open_stores(config) as s:
        r = s.committer().commit("t", [
            Record(enc({**GOOD, "event_timestamp": "9999-12-31T00:00:00Z"}), "0"),
            Record(enc(GOOD), "1")])
        assert (r.stored, r.rejected) == (1, 1)
        (reason,) = [row[0] for row in s.log.conn.execute("SELECT reason FROM dead_letters")]
    assert "event_timestamp 9999-12-31T00:00:00Z is more than 1d in the future" in reason
