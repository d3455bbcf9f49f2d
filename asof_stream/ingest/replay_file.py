"""Backfill from JSONL files through the daemon's own validate/commit path.

Each batch commits with the byte offset reached, under the source ``replay:FILE``,
so an interrupted replay resumes where it stopped and never stores a line twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from ..offline.log import Position
from ..stores import Stores
from .commit import BatchResult
from .sources.base import Record
from .sources.file import FileIdentity


def read_lines(path: Path, start: int, batch_size: int) -> Iterator[tuple[list[Record], int]]:
    """Complete lines from byte ``start`` on, in batches, with the offset after each batch."""
    with path.open("rb") as fh:
        fh.seek(start)
        offset = start
        batch: list[Record] = []
        for line in fh:
            if not line.endswith(b"\n"):
                # A partial last line: a writer may still be appending. Stop before it.
                break
            pos = f"{path.name}:{offset}"
            offset += len(line)
            body = line.rstrip(b"\r\n")
            if body.strip():
                batch.append(Record(body, pos))
            if len(batch) >= batch_size:
                yield batch, offset
                batch = []
        if batch or offset != start:
            yield batch, offset


def replay_file(stores: Stores, path: Path, *, view: str | None = None,
                available_at: int | None = None, batch_size: int = 5000,
                from_start: bool = False,
                progress: Callable[[int], None] | None = None) -> BatchResult:
    """Ingest one JSONL file; returns the totals. Resumes unless ``from_start``."""
    path = path.resolve()
    source = f"replay:{path}"
    ident = FileIdentity.of(path).text()
    start = 0
    if not from_start:
        stored = stores.log.positions(source).get(source, {}).get("file")
        if stored is not None and stored.detail == ident:
            start = stored.next_offset
    committer = stores.committer(view)
    total = BatchResult()
    for records, offset in read_lines(path, start, batch_size):
        result = committer.commit(source, records, [Position("file", offset, ident)],
                                  available_at=available_at)
        total.add(result)
        total.rejects.extend(result.rejects[: max(0, 20 - len(total.rejects))])
        if progress is not None:
            progress(offset - start)
            start = offset
    return total

