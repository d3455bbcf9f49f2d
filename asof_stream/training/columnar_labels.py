"""The label file of the columnar fast path (:mod:`.columnar`): a plain CSV read once as
bytes, each data line kept verbatim as an Arrow slice of the file, the needed cells parsed
by ``pyarrow.csv`` as strings and the times by Arrow where their shape allows
(``cell_to_micros`` otherwise), or None where the file is not one the fast path copies
as it is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..kernels.buffers import bool_array, int_numpy
from ..timestamps import MAX_US, MIN_US, TimestampError
from .labels import cells_to_micros

_BOM = b"\xef\xbb\xbf"


@dataclass
class ColumnarLabels:
    """A plain CSV label file: its header line, each data line verbatim, cells as text."""

    header: str
    columns: list[str]
    lines: pa.Array  # per data row: "\n" + the line (so the lines are one contiguous buffer)
    cells: pa.Table  # every column as strings
    times: np.ndarray  # int64 UTC microseconds per row

    def __len__(self) -> int:
        return len(self.lines)


def read_plain_csv(path: Path, timestamp_column: str,
                   needed: Sequence[str] | None = None) -> ColumnarLabels | None:
    """The label file in columns, or None when it is not one the fast path copies as is.
    ``needed``: the columns whose cells are kept besides the time (None: all; every row's
    cells are counted either way)."""
    data = path.read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    if b"\r" in data and b'"' not in data:  # as the general reader: CRLF lines are LF lines
        data = data.replace(b"\r\n", b"\n")
    if b'"' in data or b"\r" in data or not data:
        return None
    if not data.endswith(b"\n"):
        data += b"\n"
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10).astype(np.int32 if len(data) < 2**31 else np.int64)
    try:
        header = data[:newlines[0]].decode("utf-8")
    except UnicodeDecodeError:
        return None
    columns = header.split(",")
    if len(set(columns)) != len(columns) or timestamp_column not in columns or \
            not set(needed or ()) <= set(columns):
        return None
    keep = columns if needed is None else list(dict.fromkeys([*needed, timestamp_column]))
    # element i spans the newline before line i+1 up to (not including) its own newline
    kind = pa.string() if newlines.dtype == np.int32 else pa.large_string()
    elems = pa.Array.from_buffers(kind, len(newlines) - 1,
                                  [None, pa.py_buffer(newlines), pa.py_buffer(data)])
    lines = elems.filter(bool_array(np.diff(newlines) > 1))  # blank lines are skipped
    try:
        lines.validate(full=True)  # UTF-8
        cells = pacsv.read_csv(
            pa.py_buffer(data[newlines[0] + 1:]),
            read_options=pacsv.ReadOptions(column_names=columns, use_threads=True),
            parse_options=pacsv.ParseOptions(quote_char=False, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(keep, pa.string()),
                                                 strings_can_be_null=False,
                                                 include_columns=keep))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if cells.num_rows != len(lines) or not len(lines):
        return None
    column = cells.column(timestamp_column).combine_chunks()
    times = rfc3339_micros(column)
    if times is None:
        try:
            times = np.asarray(cells_to_micros(column.to_pylist()), dtype=np.int64)
        except (TimestampError, TypeError, ValueError):
            return None
    return ColumnarLabels(header, columns, lines, cells, times)


# RFC 3339 with a zone, years 0001-9999 and offsets below a day: where Arrow's parser and
# cell_to_micros agree (tests/test_columnar.py); anything else takes cell_to_micros.
_RFC3339 = (r"^([1-9]\d{3}|0[1-9]\d\d|00[1-9]\d|000[1-9])-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?"
            r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$")


_DIGITS_AT = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_MARKS_AT = np.array([4, 7, 10, 13, 16, 19])
_MARKS = np.frombuffer(b"--T::Z", dtype=np.uint8)


def _plain_utc(column: pa.Array) -> bool:
    """Whether every cell is ``YYYY-MM-DDTHH:MM:SSZ`` (year not 0000), a shape
    :data:`_RFC3339` matches: checked on the bytes as a 20-column matrix (the regex over
    1M cells took 0.14 s)."""
    n = len(column)
    if not n or column.null_count or column.type != pa.string():
        return False
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset:
                                                                  column.offset + n + 1]
    if not (np.diff(offsets) == 20).all():
        return False
    cells = np.frombuffer(column.buffers()[2], dtype=np.uint8)[
        offsets[0]:offsets[-1]].reshape(n, 20)
    digits = cells[:, _DIGITS_AT]
    return bool(((digits >= 48) & (digits <= 57)).all()
                and (cells[:, _MARKS_AT] == _MARKS).all()
                and not (cells[:, :4] == 48).all(axis=1).any())


def rfc3339_micros(column: pa.Array) -> np.ndarray | None:
    """UTC microseconds of a column of plain RFC 3339 cells, parsed by Arrow; None when a
    cell has another shape or is not a valid instant (the general parser says why)."""
    if not _plain_utc(column) and not pc.all(pc.match_substring_regex(column,
                                                                      _RFC3339)).as_py():
        return None
    try:
        parsed = pc.cast(column, pa.timestamp("us", "UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    out = int_numpy(parsed.cast(pa.int64())).astype(np.int64)
    if len(out) and (out.min() < MIN_US or out.max() > MAX_US):
        return None
    return out
