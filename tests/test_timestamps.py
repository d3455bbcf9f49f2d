from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from asof_stream.timestamps import (
    TimestampError,
    cell_to_micros,
    parse_duration,
    to_iso,
    to_micros,
)

T0 = 1_767_607_200_000_000  # 2026-01-05T10:00:00Z


@pytest.mark.parametrize("value", [
    "2026-01-05T10:00:00Z", "2026-01-05T10:00:00z", "2026-01-05T10:00:00+00:00",
    "2026-01-05T15:30:00+05:30", "2026-01-05T05:00:00-05:00", "2026-01-05 10:00:00Z",
    "2026-01-05T10:00:00", "2026-01-05T10:00", "2026-01-05T10:00:00.000000Z",
    "2026-01-05T10:00:00.000000000Z", 1767607200, 1767607200.0,
    datetime(2026, 1, 5, 10, tzinfo=UTC), datetime(2026, 1, 5, 10),
    datetime(2026, 1, 5, 11, tzinfo=timezone(timedelta(hours=1))),
])
def test_same_instant_in_every_accepted_spelling(value: object) -> None:
    assert to_micros(value) == T0


def test_naive_string_and_date_are_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert to_micros("2026-01-05T10:00:00") == T0
        assert to_micros("2026-01-05") == T0 - 10 * 3600 * 1_000_000
        assert to_iso(T0) == "2026-01-05T10:00:00Z"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_fractions_keep_microseconds() -> None:
    assert to_micros("2026-01-05T10:00:00.123456Z") == T0 + 123456
    assert to_micros("2026-01-05T10:00:00.5Z") == T0 + 500000
    assert to_micros(1767607200.25) == T0 + 250000
    assert to_iso(T0 + 1) == "2026-01-05T10:00:00.000001Z"


@pytest.mark.parametrize("value", [
    "yesterday", "", "2026-13-01", "2026-01-32T00:00:00Z", "05/01/2026", "2026-01-05T25:00:00Z",
    "1767607200", True, None, [1], {"t": 1}, float("nan"), float("inf"), "2026-01-05T10:00:00+99:00",
    10**13, -10**13, "0000-01-01T00:00:00Z",
])
def test_rejected_never_guessed(value: object) -> None:
    with pytest.raises(TimestampError):
        to_micros(value)


def test_years_one_and_9999_are_the_edges() -> None:
    assert to_micros("0001-01-01T00:00:00Z") < 0
    assert to_micros("9999-12-31T23:59:59.999999Z") > 0


def test_csv_cells_digits_are_epoch_seconds() -> None:
    assert cell_to_micros("1767607200") == T0
    assert cell_to_micros(" 1767607200.5 ") == T0 + 500000
    assert cell_to_micros("2026-01-05T10:00:00Z") == T0
    for bad in ["", "  ", "1e9", "-5x", "12:00"]:
        with pytest.raises(TimestampError):
            cell_to_micros(bad)


def test_durations() -> None:
    assert parse_duration("14d") == 14 * 86400 * 10**6
    assert parse_duration("90m") == 5400 * 10**6
    assert parse_duration("30s") == 30 * 10**6
    assert parse_duration("2h") == 7200 * 10**6
    for bad in ["14", "d", "1.5h", "1w", "-1d", ""]:
        with pytest.raises(ValueError):
            parse_duration(bad)
