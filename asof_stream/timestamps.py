"""Time normalisation: every instant becomes integer microseconds since the epoch, UTC.

Accepted input (docs/time.md): RFC 3339 / ISO 8601 strings (an offset or ``Z``;
no offset means UTC; a bare date means midnight UTC), and numbers as epoch seconds.
Anything else raises :class:`TimestampError`; nothing is guessed.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta

US_PER_S = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // timedelta(
    microseconds=1
)
_DIGITS = re.compile(r"[0-9]+(\.[0-9]+)?")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}:?\d{2})?"
)
_DURATION = re.compile(r"\s*(\d+)\s*([smhd])\s*")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class TimestampError(ValueError):
    """An input that is not an acceptable instant."""


def _check_range(us: int, shown: object) -> int:
    if us < MIN_US or us > MAX_US:
        raise TimestampError(f"timestamp {shown!r} is outside the years 1 to 9999")
    return us


def from_epoch_seconds(value: int | float, shown: object | None = None) -> int:
    """Epoch seconds (int or float) to microseconds, range-checked."""
    shown = value if shown is None else shown
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TimestampError(f"timestamp {shown!r} is not a finite number")
        if abs(value) > 1e12:
            raise TimestampError(f"timestamp {shown!r} is outside the years 1 to 9999")
        return _check_range(round(value * US_PER_S), shown)
    if abs(value) > 10**12:
        raise TimestampError(f"timestamp {shown!r} is outside the years 1 to 9999")
    return _check_range(value * US_PER_S, shown)


def _from_datetime(dt: datetime, shown: object) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return _check_range((dt - _EPOCH) // timedelta(microseconds=1), shown)


def parse_iso(text: str) -> int:
    """An RFC 3339 / ISO 8601 string to UTC microseconds."""
    s = text.strip()
    if _DATE_ONLY.fullmatch(s):
        try:
            d = date.fromisoformat(s)
        except ValueError as exc:
            raise TimestampError(f"timestamp {text!r} is not a valid date: {exc}") from None
        return _from_datetime(datetime(d.year, d.month, d.day), text)
    if not _ISO.fullmatch(s):
        raise TimestampError(
            f"timestamp {text!r} is not RFC 3339 / ISO 8601 (e.g. 2026-01-05T10:00:00Z)"
        )
    if s[-1] in "zZ":
        s = s[:-1] + "+00:00"
    # fromisoformat takes at most 6 fraction digits: truncate nanoseconds.
    frac = re.search(r"\.(\d+)", s)
    if frac and len(frac.group(1)) > 6:
        s = s[: frac.start(1) + 6] + s[frac.end(1) :]
    try:
        dt = datetime.fromisoformat(s)
    except ValueError as exc:
        raise TimestampError(f"timestamp {text!r} is not a valid instant: {exc}") from None
    return _from_datetime(dt, text)


def to_micros(value: object) -> int:
    """Normalise one event or label timestamp to UTC microseconds."""
    if isinstance(value, bool):
        raise TimestampError(f"timestamp {value!r} is a boolean, not a time")
    if isinstance(value, int | float):
        return from_epoch_seconds(value)
    if isinstance(value, str):
        return parse_iso(value)
    if isinstance(value, datetime):
        return _from_datetime(value, value)
    if isinstance(value, date):
        return _from_datetime(datetime(value.year, value.month, value.day), value)
    raise TimestampError(f"timestamp {value!r} has type {type(value).__name__}, not a time")


def cell_to_micros(cell: str) -> int:
    """A CSV cell: only digits (optional fraction) are epoch seconds, else ISO text."""
    s = cell.strip()
    if _DIGITS.fullmatch(s):
        return from_epoch_seconds(float(s) if "." in s else int(s), cell)
    if not s:
        raise TimestampError("timestamp is empty")
    return parse_iso(s)


def to_iso(us: int | None) -> str | None:
    """UTC microseconds to an RFC 3339 string ending in ``Z``."""
    if us is None:
        return None
    dt = _EPOCH + timedelta(microseconds=us)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")



def parse_duration(text: str) -> int:
    """``"14d"``, ``"90m"``, ``"30s"``, ``"2h"`` to microseconds."""
    m = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(
            f"duration {text!r} is not a whole number followed by s, m, h or d (e.g. '14d')"
        )
    return int(m.group(1)) * _UNIT_S[m.group(2)] * US_PER_S


def format_duration(us: int) -> str:
    """Microseconds as the duration syntax :func:`parse_duration` reads (largest whole unit)."""
    seconds, rest = divmod(us, US_PER_S)
    if rest:
        return f"{us / US_PER_S}s"
    for unit in "dhm":
        if seconds and seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"


def now_micros() -> int:
    """The current time in UTC microseconds."""
    return (datetime.now(UTC) - _EPOCH) // timedelta(microseconds=1)
