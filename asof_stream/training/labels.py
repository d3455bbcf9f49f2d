"""Label tables: the rows a training set is built for (docs/join.md).

A label table comes from a CSV, JSONL or Parquet file, a list of dicts or a pandas
DataFrame. Every column and every original value is kept for the output; the
timestamp column is parsed to UTC microseconds (docs/time.md; naive datetimes
are UTC) and the entity keys of each view are computed on demand with the same
helpers as online lookups. Errors name the row (1-based data row, or line for JSONL)
and the column.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..definitions import Definitions
from ..events import coerce_key, entity_key
from ..timestamps import MAX_US, MIN_US, TimestampError, cell_to_micros, to_micros
from .join import gc_paused

DEFAULT_TIMESTAMP_COLUMN = "event_timestamp"
FORMATS = (".csv", ".jsonl", ".parquet")


class LabelError(ValueError):
    """A label table that cannot be used; the message names the row and column."""


@dataclass
class Labels:
    """A label table: columns and original rows, parsed times, and entity keys per view.

    ``rows[i][j]`` is the original value of column ``columns[j]`` in row ``i``
    (CSV cells stay text). ``times[i]`` is that row's timestamp in UTC microseconds.
    ``arrow``/``frame`` keep a Parquet table or DataFrame input so writers can keep
    its column types; ``lines`` keeps a CSV's lines when they need no unquoting, so the
    CSV writer can copy them.
    """

    columns: list[str]
    rows: list[Sequence[Any]]
    times: list[int]
    timestamp_column: str
    defs: Definitions
    origin: str = "labels"
    row_word: str = "row"
    from_text: bool = False
    arrow: Any = None
    frame: Any = None
    row_numbers: list[int] | None = None  # what errors call each row, when not i + 1
    lines: list[str] | None = None  # a CSV's header and row lines, when they can be copied as is
    source: Path | None = None  # the file it was read from (a training set may not replace it)
    _keys: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, i: int, column: str) -> str:
        """How an error names row ``i`` (0-based) and a column."""
        n = self.row_numbers[i] if self.row_numbers is not None else i + 1
        return f"{self.origin} {self.row_word} {n}, column {column!r}"

    def entity_keys(self, view: str) -> list[str]:
        """The canonical entity key of ``view`` for every row (cached per entity)."""
        entity = self.defs.entity_of(view)
        cached = self._keys.get(entity.name)
        if cached is not None:
            return cached
        index = {c: j for j, c in enumerate(self.columns)}
        columns: list[list[Any]] = []
        for name in entity.join_keys:
            j = index.get(name)
            if j is None:
                raise LabelError(
                    f"{self.origin}: missing join key column {name!r} needed by view {view!r} "
                    f"(entity {entity.name!r} has join keys {list(entity.join_keys)}); "
                    f"columns: {', '.join(self.columns)}")
            columns.append([r[j] for r in self.rows])
        typed = [self._key_column(name, dtype, col)
                 for (name, dtype), col in zip(entity.join_keys.items(), columns, strict=True)]
        if len(typed) == 1:
            keys = typed[0] if entity.join_keys[next(iter(entity.join_keys))] == "string" \
                else [str(v) for v in typed[0]]
        else:
            keys = [entity_key(entity, list(vs)) for vs in zip(*typed, strict=True)]
        self._keys[entity.name] = keys
        return keys

    def _key_column(self, name: str, dtype: str, values: list[Any]) -> list[Any]:
        """Check (or convert from text) one join key column; empty cells are errors."""
        if dtype == "string" and "" not in values and (
                self.from_text or set(map(type, values)) == {str}):
            return values  # the common case, checked in C
        out = []
        for i, v in enumerate(values):
            if v is None or v == "" or _is_nan(v):
                raise LabelError(f"{self.where(i, name)}: missing join key value")
            try:
                out.append(coerce_key(name, dtype, v, from_text=self.from_text))
            except ValueError as exc:
                raise LabelError(f"{self.where(i, name)}: {exc}") from None
        return out


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and v != v


# --- timestamps ---------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# The usual RFC 3339 shape; anything else takes the general path (cell_to_micros).
_ISO_SHAPE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)"
_FAST_ISO = re.compile(_ISO_SHAPE, re.ASCII)
_DIGITS_TO_ZERO = str.maketrans("123456789", "000000000")


def _all_plain_iso(cells: list[str]) -> bool:
    """Whether every cell has the usual RFC 3339 shape.

    The shape only tells ASCII digits from other characters, so cells are checked by
    their distinct shapes (digits made ``0``): a column has few, and ``str.translate``
    runs in C, several times faster than matching every cell.
    """
    shapes = set("\n".join(cells).translate(_DIGITS_TO_ZERO).split("\n"))
    return all(_FAST_ISO.fullmatch(shape) for shape in shapes)


def cells_to_micros(cells: list[str]) -> list[int]:
    """:func:`cell_to_micros` of every cell, the same results, fast for plain RFC 3339.

    When every cell has the usual shape (:func:`_all_plain_iso`),
    ``datetime.fromisoformat`` reads them. Otherwise each cell takes the general path.
    """
    if cells and _all_plain_iso(cells):
        try:
            parse = datetime.fromisoformat
            out = [(parse(c) - _EPOCH) // _US for c in cells]
        except ValueError:  # e.g. February 30th: the general path says what is wrong
            out = []
        if out and min(out) >= MIN_US and max(out) <= MAX_US:
            return out
    return [cell_to_micros(c) for c in cells]


def _parse_times(labels: Labels, values: list[Any], parse: Callable[[Any], int],
                 bulk: Callable[[list[Any]], list[int]] | None = None) -> list[int]:
    """Parse a timestamp column; the first bad value raises with its row and column."""
    try:
        return bulk(values) if bulk is not None else [parse(v) for v in values]
    except (TimestampError, TypeError, ValueError):
        pass
    for i, v in enumerate(values):  # find and name the culprit
        if v is None or _is_nan(v):
            raise LabelError(f"{labels.where(i, labels.timestamp_column)}: missing timestamp")
        try:
            parse(v)
        except (TimestampError, TypeError, ValueError) as exc:
            raise LabelError(f"{labels.where(i, labels.timestamp_column)}: bad timestamp: "
                             f"{exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _timestamp_index(columns: list[str], timestamp_column: str, origin: str) -> int:
    try:
        return columns.index(timestamp_column)
    except ValueError:
        raise LabelError(f"{origin}: missing timestamp column {timestamp_column!r}; columns: "
                         + (", ".join(columns) or "none")
                         + " (choose another with --timestamp-column)") from None


def _check_columns(columns: list[str], origin: str) -> None:
    seen: set[str] = set()
    for c in columns:
        if c in seen:
            raise LabelError(f"{origin}: column {c!r} appears twice")
        seen.add(c)


# --- readers ------------------------------------------------------------------------

def read_text(path: Path) -> str:
    """A label file's text (UTF-8, a BOM allowed); bytes that are not UTF-8 are an error
    naming the file, the byte offset and the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LabelError(f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset"
                         f" {exc.start} (line {line}) {exc.reason}; save the file as UTF-8"
                         ) from None


def read_csv(path: Path, defs: Definitions, timestamp_column: str) -> Labels:
    """A CSV file with a header row; cells stay the text they were."""
    origin = str(path)
    text = read_text(path)
    if "\r" in text and '"' not in text:
        text = text.replace("\r\n", "\n")
    if '"' in text or "\r" in text:
        header, rows = _csv_rows(text, origin)
        lines = None
    else:  # no quoting: split lines and cells directly, and keep each line for the output
        header, rows, lines = _plain_csv_rows(text, origin)
    tcol = _timestamp_index(header, timestamp_column, origin)
    labels = Labels(header, rows, [], timestamp_column, defs, origin, "row", from_text=True,
                    lines=lines)
    labels.times = _parse_times(labels, [r[tcol] for r in rows], cell_to_micros,
                                cells_to_micros)
    return labels


def _csv_rows(text: str, origin: str) -> tuple[list[str], list[Sequence[Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise LabelError(f"{origin}: empty file (expected a header row)")
    _check_columns(header, origin)
    width = len(header)
    rows: list[Sequence[Any]] = []
    for row in reader:
        if len(row) != width:
            if not row:  # a blank line
                continue
            raise LabelError(f"{origin} row {len(rows) + 1} (line {reader.line_num}): "
                             f"{len(row)} cells, the header has {width}")
        rows.append(row)
    return header, rows


def _plain_csv_rows(text: str, origin: str) -> tuple[list[str], list[Sequence[Any]], list[str]]:
    """What csv.reader gives for text without quotes or carriage returns, faster."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        raise LabelError(f"{origin}: empty file (expected a header row)")
    header = lines[0].split(",")
    _check_columns(header, origin)
    body = [line for line in lines[1:] if line]
    rows: list[Sequence[Any]] = [line.split(",") for line in body]
    width = len(header)
    if rows and set(map(len, rows)) != {width}:
        numbered = [(n, line) for n, line in enumerate(lines[1:], 2) if line]
        i = next(i for i, r in enumerate(rows) if len(r) != width)
        raise LabelError(f"{origin} row {i + 1} (line {numbered[i][0]}): {len(rows[i])} cells, "
                         f"the header has {width}")
    return header, rows, [lines[0], *body]


def read_jsonl(path: Path, defs: Definitions, timestamp_column: str) -> Labels:
    """One JSON object per line; blank lines are skipped, errors name the line."""
    origin = str(path)
    objects: list[dict[str, Any]] = []
    numbers: list[int] = []
    with io.StringIO(read_text(path), newline=None) as fh:  # universal newlines, as open()
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise LabelError(f"{origin} line {n}: not JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise LabelError(f"{origin} line {n}: not a JSON object")
            objects.append(obj)
            numbers.append(n)
    labels = _from_dicts(objects, defs, timestamp_column, origin, "line")
    labels.row_numbers = numbers
    labels.times = _parse_times(labels, [r[labels.columns.index(timestamp_column)]
                                         for r in labels.rows], to_micros)
    return labels


def _from_dicts(objects: Sequence[Mapping[str, Any]], defs: Definitions, timestamp_column: str,
                origin: str, row_word: str) -> Labels:
    columns = list(dict.fromkeys(k for obj in objects for k in obj))
    _timestamp_index(columns, timestamp_column, origin)
    rows: list[Sequence[Any]] = [[obj.get(c) for c in columns] for obj in objects]
    return Labels(columns, rows, [], timestamp_column, defs, origin, row_word)


def read_records(records: Iterable[Mapping[str, Any]], defs: Definitions,
                 timestamp_column: str) -> Labels:
    """A list of dicts (the Python API); values are typed as given."""
    objects = list(records)
    for i, obj in enumerate(objects):
        if not isinstance(obj, Mapping):
            raise LabelError(f"labels row {i + 1}: not a mapping but {type(obj).__name__}")
    labels = _from_dicts(objects, defs, timestamp_column, "labels", "row")
    tcol = labels.columns.index(timestamp_column)
    labels.times = _parse_times(labels, [r[tcol] for r in labels.rows], to_micros)
    return labels


def _arrow_times(labels: Labels, column: Any) -> list[int]:
    """An Arrow column to microseconds: timestamps exactly (naive = UTC), else by value."""
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401

    if pa.types.is_timestamp(column.type):
        values = column.cast(pa.timestamp("us", tz=column.type.tz), safe=False) \
            .cast(pa.int64()).to_pylist()
        for i, v in enumerate(values):
            if v is None:
                raise LabelError(f"{labels.where(i, labels.timestamp_column)}: missing timestamp")
            if not MIN_US <= v <= MAX_US:
                raise LabelError(f"{labels.where(i, labels.timestamp_column)}: bad timestamp: "
                                 "outside the years 1 to 9999")
        return values
    return _parse_times(labels, column.to_pylist(), to_micros)


def read_arrow(table: Any, defs: Definitions, timestamp_column: str, origin: str) -> Labels:
    """A pyarrow Table (from Parquet or pandas)."""
    columns = [str(c) for c in table.column_names]
    _check_columns(columns, origin)
    tcol = _timestamp_index(columns, timestamp_column, origin)
    data = [table.column(j).to_pylist() for j in range(len(columns))]
    rows: list[Sequence[Any]] = list(zip(*data, strict=True)) if data else []
    labels = Labels(columns, rows, [], timestamp_column, defs, origin, "row", arrow=table)
    labels.times = _arrow_times(labels, table.column(tcol))
    return labels


def read_parquet(path: Path, defs: Definitions, timestamp_column: str) -> Labels:
    import pyarrow.parquet as pq

    return read_arrow(pq.read_table(path), defs, timestamp_column, str(path))


def read_pandas(frame: Any, defs: Definitions, timestamp_column: str) -> Labels:
    """A pandas DataFrame; naive datetime columns are UTC."""
    columns = [str(c) for c in frame.columns]
    _check_columns(columns, "labels")
    tcol = _timestamp_index(columns, timestamp_column, "labels")
    data = [frame.iloc[:, j].tolist() for j in range(len(columns))]
    rows: list[Sequence[Any]] = list(zip(*data, strict=True)) if data else []
    labels = Labels(columns, rows, [], timestamp_column, defs, "labels", "row", frame=frame)
    series = frame.iloc[:, tcol]
    if str(series.dtype).startswith("datetime64"):
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        if series.isna().any():
            i = int(series.isna().to_numpy().nonzero()[0][0])
            raise LabelError(f"{labels.where(i, timestamp_column)}: missing timestamp")
        labels.times = [int(v) for v in series.to_numpy(dtype="datetime64[us]").astype("int64")]
    else:
        labels.times = _parse_times(labels, data[tcol], to_micros)
    return labels


def read_labels(path: str | os.PathLike[str], defs: Definitions,
                timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN) -> Labels:
    """Read a label file; the format follows the extension (.csv, .jsonl, .parquet)."""
    p = Path(path)
    ext = p.suffix.lower()
    readers = {".csv": read_csv, ".jsonl": read_jsonl, ".ndjson": read_jsonl,
               ".parquet": read_parquet}
    reader = readers.get(ext)
    if reader is None:
        raise LabelError(f"{p}: unknown label file extension {ext or '(none)'!r}; "
                         f"use one of {', '.join(FORMATS)}")
    if not p.is_file():
        raise LabelError(f"{p}: no such label file")
    with gc_paused():
        labels = reader(p, defs, timestamp_column)
    labels.source = p
    return labels


def labels_from_any(source: Any, defs: Definitions, *,
                    timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN) -> Labels:
    """Labels from a path, a list of dicts, a pandas DataFrame or a pyarrow Table."""
    if isinstance(source, Labels):
        return source
    if isinstance(source, str | os.PathLike):
        return read_labels(source, defs, timestamp_column)
    kind = type(source).__module__.split(".")[0]
    if kind == "pandas":
        return read_pandas(source, defs, timestamp_column)
    if kind == "pyarrow":
        return read_arrow(source, defs, timestamp_column, "labels")
    if isinstance(source, Iterable) and not isinstance(source, bytes | Mapping):
        return read_records(source, defs, timestamp_column)
    raise LabelError(f"labels must be a file path, a list of dicts or a pandas DataFrame, "
                     f"not {type(source).__name__}")
