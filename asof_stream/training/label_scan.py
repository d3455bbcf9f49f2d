"""A plain CSV label file scanned for the columnar fast path (:mod:`.columnar_labels`),
needing no definitions: its bytes read once and hashed (the sidecar's digest), each data
line kept verbatim as an Arrow slice of them, cells parsed by ``pyarrow.csv`` as strings
and whole-second UTC times read from their digits.

``asof-stream training-set`` starts the scan in a thread (:func:`scan_ahead`) before it
loads the config: the scan is mostly Arrow and numpy work without the GIL, and loading
the config (pydantic's imports and models, about 0.15 s) holds it. The readers take the
scan (:func:`scanned`) only if the file has the same size, modification time and inode
as when it was read; otherwise they read it again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..kernels.buffers import bool_array, int_numpy
from ..timestamps import MAX_US, MIN_US

_BOM = b"\xef\xbb\xbf"
#: a file with at most this many columns has all its cells parsed ahead (the key columns
#: are not known before the config), others only the time
AHEAD_COLUMNS = 8


@dataclass
class LabelScan:
    """The lines of a plain CSV label file: header, columns, each data line verbatim."""

    header: str
    columns: list[str]
    lines: pa.Array  # per data row: "\n" + the line (so the lines are one contiguous buffer)
    body: pa.Buffer | None  # the bytes after the header line (LF line ends; None once
    # every column is parsed)
    cells: pa.Table | None = None  # some columns parsed ahead (as strings)
    times: np.ndarray | None = None  # of ``time_column``, when plain RFC 3339
    time_column: str | None = None


@dataclass
class Scanned:
    """A label file read ahead: what identified it, its digest, its scan (None when it is
    not a plain CSV file: the general reader then reads it)."""

    identity: tuple[int, int, int, int]
    digest: tuple[int, str]
    scan: LabelScan | None


def _identity(path: str | os.PathLike[str]) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev


def scan_lines(data: bytes) -> LabelScan | None:
    """The lines of a label file's bytes, or None when it is not plain: quotes, a CR
    outside a CRLF line end, a header that is not UTF-8 or names a column twice."""
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    if b'"' in data or not data:
        return None
    if b"\r" in data:  # as the general reader: CRLF lines are LF lines (a lone CR: None)
        raw = np.frombuffer(data, dtype=np.uint8)
        crs = np.flatnonzero(raw == 13)
        if crs[-1] + 1 == len(raw) or not (raw[crs + 1] == 10).all():
            return None
        data = data.translate(None, b"\r")  # a third of bytes.replace's time
    if not data.endswith(b"\n"):
        data += b"\n"
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10).astype(np.int32 if len(data) < 2**31 else np.int64)
    try:
        header = data[:newlines[0]].decode("utf-8")
    except UnicodeDecodeError:
        return None
    columns = header.split(",")
    if len(set(columns)) != len(columns):
        return None
    # element i spans the newline before line i+1 up to (not including) its own newline
    kind = pa.string() if newlines.dtype == np.int32 else pa.large_string()
    whole = pa.py_buffer(data)
    elems = pa.Array.from_buffers(kind, len(newlines) - 1, [None, pa.py_buffer(newlines), whole])
    lines = elems.filter(bool_array(np.diff(newlines) > 1))  # blank lines are skipped
    try:
        lines.validate(full=True)  # UTF-8
    except pa.ArrowInvalid:
        return None
    return LabelScan(header, columns, lines, whole.slice(int(newlines[0]) + 1))


def parse_cells(scan: LabelScan, keep: Sequence[str]) -> pa.Table | None:
    """The ``keep`` columns of every data row as strings (None: a row of another width)."""
    assert scan.body is not None, "every column was parsed"
    try:
        cells = pacsv.read_csv(
            scan.body,
            read_options=pacsv.ReadOptions(column_names=scan.columns, use_threads=True),
            parse_options=pacsv.ParseOptions(quote_char=False, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(keep, pa.string()),
                                                 strings_can_be_null=False,
                                                 include_columns=list(keep)))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return cells if cells.num_rows == len(scan.lines) else None


def read_scanned(path: str | os.PathLike[str], time_column: str | None = None) -> Scanned:
    """Read, hash and scan a label file; with ``time_column`` (a column of the file),
    parse ahead its cells (all columns, for a narrow file) and plain times."""
    identity = _identity(path)
    data = Path(path).read_bytes()
    digest = (len(data), hashlib.sha256(data).hexdigest())
    scan = scan_lines(data)
    del data
    if scan is not None and time_column is not None and time_column in scan.columns:
        keep = scan.columns if len(scan.columns) <= AHEAD_COLUMNS else [time_column]
        scan.cells = parse_cells(scan, keep)
        if scan.cells is not None and len(keep) == len(scan.columns):
            scan.body = None  # the file's bytes, no longer needed
        if scan.cells is not None:
            scan.times = rfc3339_micros(scan.cells.column(time_column).combine_chunks())
            scan.time_column = time_column
    return Scanned(identity, digest, scan)


_ahead: dict[str, tuple[threading.Thread, list[Scanned]]] = {}


def scan_ahead(path: str | os.PathLike[str], time_column: str) -> None:
    """Start reading the label file at ``path`` in a thread (errors are left to the
    readers, which read the file themselves then)."""
    key = os.path.abspath(path)
    if key in _ahead or not os.path.isfile(key):
        return
    out: list[Scanned] = []

    def run() -> None:
        try:
            out.append(read_scanned(key, time_column))
        except Exception:  # noqa: BLE001 - the reader reads the file again and says what fails
            pass

    thread = threading.Thread(target=run, name="asof-labels")
    _ahead[key] = (thread, out)
    thread.start()


def scanned(path: str | os.PathLike[str]) -> Scanned | None:
    """The scan of ``path`` started by :func:`scan_ahead`, once done, if the file is still
    the one it read; else None."""
    entry = _ahead.get(os.path.abspath(path))
    if entry is None:
        return None
    entry[0].join()
    if not entry[1]:
        return None
    try:
        same = _identity(path) == entry[1][0].identity
    except OSError:
        same = False
    return entry[1][0] if same else None


def forget(path: str | os.PathLike[str]) -> None:
    """Drop the scan of ``path`` (its memory), once the readers are done with it."""
    entry = _ahead.pop(os.path.abspath(path), None)
    if entry is not None:
        entry[0].join()


# RFC 3339 with a zone, years 0001-9999 and offsets below a day: where Arrow's parser and
# cell_to_micros agree (tests/test_columnar.py); anything else takes cell_to_micros.
_RFC3339 = (r"^([1-9]\d{3}|0[1-9]\d\d|00[1-9]\d|000[1-9])-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?"
            r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$")


_DIGITS_AT = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
#: per byte of ``YYYY-MM-DDTHH:MM:SSZ``: the byte a cell's byte is taken from, and the
#: bound that difference must stay below (10 for a digit, 1 for a fixed mark)
_ZERO = np.frombuffer(b"0000-00-00T00:00:00Z", dtype=np.uint8)
_BOUND = np.where(np.isin(np.arange(20), _DIGITS_AT), 10, 1).astype(np.uint8)
_US = 1_000_000


def _plain_digits(column: pa.Array) -> np.ndarray | None:
    """Each cell's bytes less ``0000-00-00T00:00:00Z`` as an (n, 20) uint8 matrix (digits
    as their values, marks as 0) when every cell has that shape, else None: one compare
    over the bytes (the regex over 1M cells took 0.14 s)."""
    n = len(column)
    if not n or column.null_count or column.type != pa.string():
        return None
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset:
                                                                  column.offset + n + 1]
    if int(offsets[-1]) - int(offsets[0]) != 20 * n or not (np.diff(offsets) == 20).all():
        return None
    cells = np.frombuffer(column.buffers()[2], dtype=np.uint8)[
        offsets[0]:offsets[-1]].reshape(n, 20)
    digits = cells - _ZERO  # uint8: a byte below its template byte wraps above the bound
    return digits if bool((digits < _BOUND).all()) else None


#: per year 0..9999: whether it is a leap year, and the days from 0001-01-01 to its first
_YEARS = np.arange(10_000, dtype=np.int64)
_LEAP = ((_YEARS % 4 == 0) & (_YEARS % 100 != 0)) | (_YEARS % 400 == 0)
_DAYS_TO_YEAR = (_YEARS - 1) * 365 + (_YEARS - 1) // 4 - (_YEARS - 1) // 100 + \
    (_YEARS - 1) // 400 - 719_162  # then less the days from 0001-01-01 to 1970-01-01
_COMMON = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
#: by month + 16 * leap (0 and 13..15 are no months: no day is valid in them)
_MONTH_DAYS = np.array([*_COMMON, 0, 0, 0, *[d + (m == 2) for m, d in enumerate(_COMMON)],
                        0, 0, 0], dtype=np.uint8)
#: the days of the year before the month's first, by the same index
_DAYS_BEFORE = np.concatenate([np.cumsum([0, *_MONTH_DAYS[0:15]]),
                               np.cumsum([0, *_MONTH_DAYS[16:31]])]).astype(np.int64)
_TENS = np.array([0, 2, 5, 8, 11, 14, 17])  # the first digit of each two-digit field


def plain_utc_micros(digits: np.ndarray) -> np.ndarray | None:
    """UTC microseconds of cells shaped ``YYYY-MM-DDTHH:MM:SSZ`` (their
    :func:`_plain_digits`), computed from the digits in the proleptic Gregorian calendar
    (as ``datetime``); None when one is no valid instant (month 13, February 30th, hour
    24, second 60, year 0): the caller then leaves them to ``cell_to_micros``."""
    pairs = digits[:, _TENS] * np.uint8(10) + digits[:, _TENS + 1]  # each below 100
    year = pairs[:, 0].astype(np.int64) * 100 + pairs[:, 1]
    month, day = pairs[:, 2], pairs[:, 3]
    hour, minute, second = pairs[:, 4], pairs[:, 5], pairs[:, 6]
    at = np.minimum(month, 15) + 16 * _LEAP[year]
    if not bool(((year >= 1) & (day >= 1) & (day <= _MONTH_DAYS[at]) & (hour <= 23)
                 & (minute <= 59) & (second <= 59)).all()):
        return None
    days = _DAYS_TO_YEAR[year] + _DAYS_BEFORE[at] + (day - 1)
    seconds = days * 86_400 + (hour.astype(np.int32) * 3600 + minute.astype(np.int32) * 60
                               + second)
    return seconds * _US


def rfc3339_micros(column: pa.Array) -> np.ndarray | None:
    """UTC microseconds of a column of plain RFC 3339 cells (whole seconds in UTC from
    their digits, others parsed by Arrow); None when a cell has another shape or is not a
    valid instant (the general parser says why)."""
    digits = _plain_digits(column)
    if digits is not None:
        return plain_utc_micros(digits)
    if not pc.all(pc.match_substring_regex(column, _RFC3339)).as_py():
        return None
    try:
        parsed = pc.cast(column, pa.timestamp("us", "UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    out = int_numpy(parsed.cast(pa.int64())).astype(np.int64)
    if len(out) and (out.min() < MIN_US or out.max() > MAX_US):
        return None
    return out
