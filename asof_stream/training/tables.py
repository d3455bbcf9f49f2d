"""Training-set files read back as columns (CSV, JSONL or Parquet), for drift and reports."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLE_FORMATS = (".csv", ".jsonl", ".parquet")


class TableError(ValueError):
    """A training-set file that cannot be read: unknown format, missing, or malformed."""


@dataclass
class Table:
    """A training set read as columns: ``columns[name]`` holds one value per row."""

    origin: str
    names: list[str]
    columns: dict[str, list[Any]]
    from_text: bool  # CSV cells are text and need converting
    rows: int = 0


def read_table(path: str | os.PathLike[str]) -> Table:
    """Read a training set (CSV, JSONL or Parquet) into columns."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".ndjson":
        ext = ".jsonl"
    if ext not in TABLE_FORMATS:
        raise TableError(f"{p}: unknown training-set extension {ext or '(none)'!r}; "
                              f"use one of {', '.join(TABLE_FORMATS)}")
    if not p.is_file():
        raise TableError(f"{p}: no such training-set file")
    if ext == ".csv":
        return _read_csv(p)
    if ext == ".jsonl":
        return _read_jsonl(p)
    return _read_parquet(p)


def _read_csv(p: Path) -> Table:
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return Table(str(p), [], {}, True)
            cols: list[list[Any]] = [[] for _ in header]
            rows = 0
            for row in reader:
                rows += 1
                if len(row) != len(header):
                    raise TableError(f"{p} line {reader.line_num}: {len(row)} cells, "
                                          f"the header has {len(header)}")
                for j, cell in enumerate(row):
                    cols[j].append(cell)
    except UnicodeDecodeError as exc:
        raise TableError(f"{p}: not UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise TableError(f"{p}: not valid CSV: {exc}") from None
    return Table(str(p), header, dict(zip(header, cols, strict=True)), True, rows)


def _read_jsonl(p: Path) -> Table:
    objects: list[dict[str, Any]] = []
    names: dict[str, None] = {}
    with p.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise TableError(f"{p} line {n}: not valid JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise TableError(f"{p} line {n}: expected a JSON object")
            objects.append(obj)
            for k in obj:
                names.setdefault(k, None)
    columns = {k: [o.get(k) for o in objects] for k in names}
    return Table(str(p), list(names), columns, False, len(objects))


def _read_parquet(p: Path) -> Table:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises its own error types for bad files
        raise TableError(f"{p}: not a readable Parquet file: {exc}") from None
    data = table.to_pydict()
    return Table(str(p), list(table.column_names), data, False, table.num_rows)
