"""The label file of the columnar fast path (:mod:`.columnar`): a plain CSV read once as
bytes, each data line kept verbatim as an Arrow slice of the file, the needed cells parsed
by ``pyarrow.csv`` as strings and the times from their digits or by Arrow where their
shape allows (``cell_to_micros`` otherwise), or None where the file is not one the fast
path copies as it is. The reading itself, which needs no definitions, is
:mod:`.label_scan` (and may have been done ahead, in a thread)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..timestamps import TimestampError
from .label_scan import parse_cells, read_scanned, rfc3339_micros, scanned
from .labels import cells_to_micros


@dataclass
class ColumnarLabels:
    """A plain CSV label file: its header line, each data line verbatim, cells as text."""

    header: str
    columns: list[str]
    lines: pa.Array  # per data row: "\n" + the line (so the lines are one contiguous buffer)
    cells: pa.Table  # the needed columns and the time's, as strings
    times: np.ndarray  # int64 UTC microseconds per row

    def __len__(self) -> int:
        return len(self.lines)


def read_plain_csv(path: Path, timestamp_column: str,
                   needed: Sequence[str] | None = None) -> ColumnarLabels | None:
    """The label file in columns, or None when it is not one the fast path copies as is.
    ``needed``: the columns whose cells are kept besides the time (None: all; every row's
    cells are counted either way). A scan started ahead (:func:`.label_scan.scan_ahead`)
    of the same file is used."""
    ahead = scanned(path)
    scan = (ahead if ahead is not None else read_scanned(path)).scan
    if scan is None:
        return None
    columns = scan.columns
    if timestamp_column not in columns or not set(needed or ()) <= set(columns):
        return None
    keep = columns if needed is None else list(dict.fromkeys([*needed, timestamp_column]))
    cells = scan.cells
    if cells is None or not set(keep) <= set(cells.column_names):
        cells = parse_cells(scan, keep)
    if cells is None or not len(scan.lines):
        return None
    times = scan.times if scan.time_column == timestamp_column else None
    if times is None:
        column = cells.column(timestamp_column).combine_chunks()
        times = rfc3339_micros(column)
    if times is None:
        try:
            times = np.asarray(cells_to_micros(column.to_pylist()), dtype=np.int64)
        except (TimestampError, TypeError, ValueError):
            return None
    return ColumnarLabels(scan.header, columns, scan.lines, cells, times)
