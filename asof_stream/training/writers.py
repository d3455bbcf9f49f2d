"""Training-set writers: CSV, JSONL and Parquet, and the CSV cell rendering they share.

Null features are an empty cell in CSV, ``null`` in JSONL and a null in Parquet;
booleans are ``true``/``false`` in CSV. Label cells of a CSV input are copied as the
text they were (:mod:`.columnar` writes the same bytes by another road).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import operator
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

from .labels import Labels


class TrainingSet(Protocol):
    """What the writers read of a training set (:class:`.training_set.TrainingSet`)."""

    labels: Labels
    names: list[str]
    dtypes: list[str]

    @property
    def columns(self) -> list[str]: ...

    def __len__(self) -> int: ...

    def rows(self) -> Iterator[list[Any]]: ...

    def feature_rows(self, convert: Callable[[Any], Any] | None = None
                     ) -> list[tuple[Any, ...]]: ...

    def csv_fragments(self) -> list[str]: ...

    def to_arrow(self) -> Any: ...

OUTPUT_FORMATS = (".csv", ".jsonl", ".parquet")


def output_format(path: str | os.PathLike[str]) -> str:
    """The output format of a path, or a ValueError naming the ones there are."""
    ext = Path(path).suffix.lower()
    if ext not in OUTPUT_FORMATS:
        raise ValueError(f"{path}: unknown output extension {ext or '(none)'!r}; "
                         f"use one of {', '.join(OUTPUT_FORMATS)}")
    return ext


def text_cell(v: Any) -> str:
    """A non-text value as a CSV cell."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return str(v)


def _csv_value(v: Any) -> Any:
    """A feature value as the csv module should write it: booleans in lower case."""
    return "true" if v is True else "false" if v is False else v


def render_csv_fragments(rows: list[dict[str, Any]], features: list[str]) -> list[str]:
    """Per row, these features as the end of a CSV line, ``,v1,v2...``; a column at a
    time, which is several times faster than a cell at a time."""
    out: list[str] = []
    for lo in range(0, len(rows), CHUNK):  # in chunks: the columns' cells are short-lived
        part = rows[lo:lo + CHUNK]
        columns = [csv_column([v.get(f) for v in part]) for f in features]
        out.extend(map(",".join, zip(itertools.repeat("", len(part)), *columns, strict=True)))
    return out


_NEEDS_QUOTES = re.compile(r'[,"\r\n]')
_NONE = type(None)


def csv_column(values: list[Any]) -> list[str]:
    """``[csv_cell(v) for v in values]``, with fast paths for a column of one type."""
    classes = set(map(type, values))
    nulls = _NONE in classes
    classes.discard(_NONE)
    if classes == {float}:
        render: Callable[[Any], str] = float.__repr__
    elif classes == {int}:
        render = int.__str__
    elif classes == {str} and not _NEEDS_QUOTES.search("".join(filter(None, values))):
        return [v or "" for v in values] if nulls else values
    else:
        return list(map(csv_cell, values))
    if not nulls:
        return list(map(render, values))
    return ["" if v is None else render(v) for v in values]


def csv_cell(v: Any) -> str:
    """One feature value as CSV text, exactly as ``csv.writer`` writes :func:`_csv_value`."""
    if v is None:
        return ""
    if v.__class__ is str:
        return '"' + v.replace('"', '""') + '"' if _NEEDS_QUOTES.search(v) else v
    if v is True or v is False:
        return "true" if v else "false"
    return repr(v) if v.__class__ is float else str(v)


CHUNK = 20_000


def _write_csv(ts: TrainingSet, path: Path, progress: Callable[[int], None]) -> None:
    lines = ts.labels.lines
    if lines is not None:  # label lines copied as they were, features appended
        _write_csv_lines(ts, lines, path, progress)
        return
    features = ts.feature_rows(_csv_value if "bool" in ts.dtypes else None)
    label_rows: Sequence[Sequence[Any]] = ts.labels.rows
    if not ts.labels.from_text:  # typed values (JSON, Parquet, Python): render each cell
        label_rows = [[c if c is None or c.__class__ in (str, int, float) else text_cell(c)
                       for c in r] for r in label_rows]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(ts.columns)
        n = len(label_rows)
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            w.writerows([*r, *f] for r, f in zip(label_rows[start:stop], features[start:stop],
                                                 strict=True))
            progress(stop - start)


def _write_csv_lines(ts: TrainingSet, lines: list[str], path: Path,
                     progress: Callable[[int], None]) -> None:
    fragments = ts.csv_fragments()
    with path.open("w", newline="", encoding="utf-8") as fh:
        fh.write(lines[0] + "," + ",".join(map(csv_cell, ts.names)) + "\n")
        n = len(fragments)
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            fh.write("\n".join(map(operator.add, lines[start + 1:stop + 1],
                                   fragments[start:stop])))
            fh.write("\n")
            progress(stop - start)


def _write_jsonl(ts: TrainingSet, path: Path, progress: Callable[[int], None]) -> None:
    encoder = msgspec.json.Encoder(enc_hook=str)
    cols = ts.columns

    def encode(row: dict[str, Any]) -> bytes:
        for v in row.values():
            if v.__class__ is float and not math.isfinite(v):  # keep NaN/inf, as the log does
                return json.dumps(row, ensure_ascii=False, default=str).encode()
        return encoder.encode(row)

    rows = ts.rows()
    if ts.labels.from_text:  # CSV labels: typed from their cells; the time keeps its text
        from .label_types import typed_label_columns

        typed = [values if kind != "timestamp" else [r[j] for r in ts.labels.rows]
                 for j, (kind, values) in enumerate(typed_label_columns(ts.labels))]
        rows = ([*label, *f] for label, f in zip(zip(*typed, strict=True), ts.feature_rows(),
                                                 strict=True)) if typed else rows
    with path.open("wb") as fh:
        done = 0
        for row in rows:
            fh.write(encode(dict(zip(cols, row, strict=True))))
            fh.write(b"\n")
            done += 1
            if done == CHUNK:
                progress(done)
                done = 0
        progress(done)


def _write_parquet(ts: TrainingSet, path: Path, progress: Callable[[int], None]) -> None:
    import pyarrow.parquet as pq

    pq.write_table(ts.to_arrow(), path)
    progress(len(ts))


WRITERS: dict[str, Callable[[TrainingSet, Path, Callable[[int], None]], None]] = {
    ".csv": _write_csv, ".jsonl": _write_jsonl, ".parquet": _write_parquet}
