"""One sealed segment: an immutable Parquet file of one view's log rows.

Rows are sorted by ``(entity, event_timestamp, seq)``. Columns: the log's own
(``seq``, ``entity``, ``event_timestamp``, ``ingest_ts``, ``event_id``, ``source``,
``position``, ``def_version``) and one typed column per feature of the view (int64,
float64, string, bool), zstd-compressed, with Parquet page checksums so every read
checks the pages it decodes. A feature whose name is one of the log's columns is
stored as ``feature:<name>``.

A file is written under a temporary name, fsynced, renamed and its folder fsynced,
so a crash leaves either nothing, an orphan temp file, or a complete file that the
manifest may not know yet (orphans are removed by the next seal or compaction).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import queue
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from ..definitions import FeatureView

META_COLUMNS = ("seq", "entity", "event_timestamp", "ingest_ts", "event_id", "source", "position",
                "def_version")
SORT_KEYS = [("entity", "ascending"), ("event_timestamp", "ascending"), ("seq", "ascending")]
ARROW_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
               "bool": pa.bool_()}
META_SCHEMA = [pa.field("seq", pa.int64()), pa.field("entity", pa.string()),
               pa.field("event_timestamp", pa.int64()),
               pa.field("ingest_ts", pa.int64()), pa.field("event_id", pa.string()),
               pa.field("source", pa.string()), pa.field("position", pa.string()),
               pa.field("def_version", pa.string())]
TEMP_PREFIX = ".tmp-"
ROW_GROUP_ROWS = 256 * 1024  # rows per Parquet row group of a new segment


class SegmentError(Exception):
    """A segment file is missing, or not the file the manifest registered."""


def column_name(feature: str) -> str:
    """The Parquet column of a feature (prefixed only where it would collide)."""
    return f"feature:{feature}" if feature in META_COLUMNS else feature


def view_schema(view: FeatureView) -> pa.Schema:
    """The segment schema of a view: the log's columns, then its features, typed."""
    return pa.schema(META_SCHEMA + [pa.field(column_name(f.name), ARROW_TYPES[f.dtype])
                                    for f in view.features])


def file_checksum(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of the file, hex (about 1.5-2 GB/s with SHA extensions)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_segment(path: Path, table: pa.Table, *, row_group_size: int | None = None,
                  on_step: Any = None) -> tuple[int, str]:
    """Write ``table`` (already sorted) durably at ``path``; returns (bytes, sha256).

    ``on_step(name)`` is called between steps (the crash tests stop the process there).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(TEMP_PREFIX + path.name)
    pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size or ROW_GROUP_ROWS,
                   write_page_checksum=True, write_statistics=["entity", "seq", "event_timestamp"])
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    if on_step is not None:
        on_step("segment-written")
    checksum = file_checksum(tmp)
    size = tmp.stat().st_size
    os.replace(tmp, path)
    fsync_dir(path.parent)
    if on_step is not None:
        on_step("segment-renamed")
    return size, checksum


def open_checked(path: Path, size: int, checksum: str | None = None,
                 read_dictionary: list[str] | None = None) -> pq.ParquetFile:
    """Open a registered segment: its size always checked, the checksum when given."""
    try:
        have = path.stat().st_size
    except FileNotFoundError:
        raise SegmentError(f"segment {path} is missing (registered in the manifest)") from None
    if have != size:
        raise SegmentError(f"segment {path} is {have} bytes, the manifest registered {size}:"
                           " the file was changed or truncated")
    if checksum is not None and file_checksum(path) != checksum:
        raise SegmentError(f"segment {path} fails its sha256 checksum: the file is corrupt")
    try:
        return pq.ParquetFile(path, page_checksum_verification=True,
                              read_dictionary=read_dictionary)
    except (pa.ArrowException, OSError) as exc:
        raise SegmentError(f"segment {path} cannot be read: {exc}") from None


def read_segment(path: Path, size: int, *, checksum: str | None = None,
                 columns: list[str] | None = None,
                 entities: list[str] | pa.Array | None = None, exact: bool = True,
                 skip: Sequence[str] = ()) -> pa.Table:
    """The rows of one segment (optionally some columns, some entities), still sorted.

    ``skip``: columns not to read (of ``columns``, or of all the file's columns).

    ``exact=False`` skips the row filter: rows of other entities in the row groups read
    are kept (a reader that matches entities itself saves a copy of the table).

    With ``entities``, only the row groups whose entity range (from the file's statistics)
    holds one of them are read, then filtered. ``entities`` as an Arrow string array is used
    as it is (converting Python values makes pyarrow import pandas on first use, and so does
    ``pyarrow.dataset``, so filters are not pushed down through ``pq.read_table``).

    The entity column is read as a dictionary (its runs are dictionary-encoded in the file)
    and decoded after: 40% faster than decoding every value (10M rows: 1.0 s vs 1.7 s); a
    filter that keeps every row is skipped (:class:`SegmentGroups` keeps the dictionaries,
    for a reader that codes entities itself).
    """
    pf = open_checked(path, size, checksum, read_dictionary=["entity"])
    if skip:
        columns = [n for n in (columns or pf.schema_arrow.names) if n not in skip]
    try:
        if entities is None:
            return _decoded(pf.read(columns=columns))
        if not isinstance(entities, pa.Array):
            entities = text_array(list(entities))
        groups = row_groups_with(pf, entities)
        if not groups:
            empty = pf.schema_arrow.empty_table()
            return _decoded(empty if columns is None else empty.select(columns))
        table = _decoded(pf.read_row_groups(groups, columns=columns))
        if not exact:
            return table
        keep = pc.is_in(table.column("entity"), value_set=entities)
        if pc.all(keep).as_py() is not False:  # every row kept (or none there)
            return table
        return table.filter(keep)
    except (pa.ArrowException, OSError) as exc:
        raise SegmentError(f"segment {path} cannot be read: {exc}") from None


class SegmentGroups:
    """One segment opened for reading a row group at a time (``read``), for a reader
    that keeps little of each (the training-set fast path: peak memory and fresh pages
    of one row group, not of the file). ``groups``: the row groups that may hold one of
    the ``entities`` given (all without). A group comes with its entity column as Parquet
    keeps it, dictionary-encoded (each chunk's dictionary the group's distinct entities),
    and rows of other entities kept. Opening checks the size; the open file is read even
    if a compaction removes it after. ``readers``: how many threads may read groups at
    once (an Arrow Parquet reader is not safe to share between threads, so each has its
    own handle, all opened here); ``presorted``: ``entities`` is an Arrow array sorted
    already, without nulls."""

    def __init__(self, path: Path, size: int, columns: list[str],
                 entities: list[str] | pa.Array | None = None, *, readers: int = 1,
                 presorted: bool = False) -> None:
        self.path = path
        self.columns = columns
        self.file = open_checked(path, size, read_dictionary=["entity"])
        self._free: queue.SimpleQueue[pq.ParquetFile] = queue.SimpleQueue()
        self._free.put(self.file)
        for _ in range(readers - 1):
            self._free.put(open_checked(path, size, read_dictionary=["entity"]))
        if entities is None:
            self.groups = list(range(self.file.metadata.num_row_groups))
        else:
            if not isinstance(entities, pa.Array):
                entities = text_array(list(entities))
            self.groups = row_groups_with(self.file, entities, presorted=presorted)

    def read(self, group: int) -> pa.Table:
        reader = self._free.get()  # waits while every handle is reading
        try:
            return reader.read_row_group(group, columns=self.columns)
        except (pa.ArrowException, OSError) as exc:
            raise SegmentError(f"segment {self.path} cannot be read: {exc}") from None
        finally:
            self._free.put(reader)


def _decoded(table: pa.Table) -> pa.Table:
    """The entity column (read as a dictionary) as plain strings."""
    if "entity" in table.column_names:
        at = table.column_names.index("entity")
        table = table.set_column(at, "entity", table.column(at).cast(pa.string()))
    return table


def row_groups_with(pf: pq.ParquetFile, entities: pa.Array, *, presorted: bool = False) -> list[int]:
    """The row groups whose [min, max] entity statistics hold one of ``entities``
    (``presorted``: they are sorted already, without nulls)."""
    meta = pf.metadata
    if meta.num_row_groups <= 1:
        return list(range(meta.num_row_groups))
    col = pf.schema_arrow.get_field_index("entity")
    wanted: _SortedText | None = None
    groups = []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            groups.append(g)
            continue
        if wanted is None:
            wanted = _SortedText(entities, presorted=presorted)
        i = bisect.bisect_left(wanted, stats.min)
        if i < len(wanted) and wanted[i] <= stats.max:
            groups.append(g)
    return groups


class _SortedText:
    """A string array sorted, read an element at a time (a binary search touches a few;
    turning all of them into Python strings cost a tenth of a second at 200k)."""

    def __init__(self, values: pa.Array, *, presorted: bool = False) -> None:
        self._values = values if presorted else values.drop_null().sort()

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, i: int) -> str:
        return str(self._values[i].as_py())


def text_array(values: list[str]) -> pa.Array:
    """Python strings (no nulls) as an Arrow string array, built from buffers
    (``pa.array`` of Python values imports pandas on first use, a quarter of a second)."""
    data = "".join(values).encode("utf-8")
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    if int(lengths.sum()) != len(data):  # not ASCII: count bytes
        lengths = np.fromiter((len(v.encode("utf-8")) for v in values), dtype=np.int64,
                              count=len(values))
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if len(data) < 2**31:
        return pa.Array.from_buffers(pa.string(), len(values), [
            None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)])
    return pa.Array.from_buffers(pa.large_string(), len(values), [
        None, pa.py_buffer(offsets), pa.py_buffer(data)])
