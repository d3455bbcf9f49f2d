"""Backfill from JSONL files through the daemon's own validate/commit path.

Each batch commits with the byte offset reached, under the source ``replay:FILE``,
so an interrupted replay resumes where it stopped and never stores a line twice. The file
is recognised by its content (:mod:`.sources.file_identity`), not its inode: a restored or
copied file resumes too, and so does a file replayed from a copy of the project (the
position of another ``replay:`` path with the same content is taken).

Over partition shards (:func:`replay_files`) each line's event goes to the shard of its
entity and every shard records how far the replay reached for it
(:mod:`.routed_commit`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Config
from ..offline.log import Position
from ..offline.sealer_process import SealerOnDemand
from ..offline.shards import is_sharded
from ..stores import Stores, open_stores
from .commit import BatchResult
from .sources.base import Record
from .sources.file_identity import HEAD_BYTES, FileIdentity, Stored, continues, detail, tail_before

if TYPE_CHECKING:
    from .routed_commit import RoutedCommitter


def _resume_at(stores: Stores, source: str, path: Path) -> int:
    """Where a replay of ``path`` resumes: its own stored position if the file continues
    it (or, stored by an earlier version, has the same inode), else that of another
    replayed path with the same content (a copy of the project), else 0."""
    ident = FileIdentity.of(path).text()
    stored = stores.log.positions()
    own = stored.get(source, {}).get("file")
    if own is not None and own.detail == ident:
        return own.next_offset
    others = [p for src, keys in stored.items() if src.startswith("replay:") and src != source
              for k, p in keys.items() if k == "file"]
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        for pos in ([own] if own is not None else []) + others:
            s = Stored.parse(pos)
            if s is not None and continues(fh.fileno(), size, s, ident):
                return s.offset
    return 0


def _detail(path: Path, offset: int) -> str:
    with path.open("rb") as fh:
        head = os.pread(fh.fileno(), min(HEAD_BYTES, offset), 0)
        return detail(str(path), head, tail_before(fh.fileno(), offset))


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
                from_start: bool = False, progress: Callable[[int], None] | None = None,
                sealing: SealerOnDemand | None = None) -> BatchResult:
    """Ingest one JSONL file; returns the totals. Resumes unless ``from_start``.
    ``sealing`` is told how many rows each batch stored (a backfill seals as it goes)."""
    path = path.resolve()
    source = f"replay:{path}"
    start = 0 if from_start else _resume_at(stores, source, path)
    return _feed(stores.committer(view).commit, path, source, start, batch_size, available_at,
                 progress, sealing)


def _feed(commit: Callable[..., BatchResult], path: Path, source: str, start: int,
          batch_size: int, available_at: int | None,
          progress: Callable[[int], None] | None,
          sealing: SealerOnDemand | None = None) -> BatchResult:
    """The file's lines from byte ``start``, a batch per commit with the offset reached."""
    total = BatchResult()
    for records, offset in read_lines(path, start, batch_size):
        result = commit(source, records, [Position("file", offset, _detail(path, offset))],
                        available_at=available_at)
        total.add(result)
        if sealing is not None:
            sealing.note(result.stored)
        total.rejects.extend(result.rejects[: max(0, 20 - len(total.rejects))])
        if progress is not None:
            progress(offset - start)
            start = offset
    return total


def replay_files(config: Config, paths: list[Path], *, view: str | None = None,
                 available_at: int | None = None, batch_size: int = 5000,
                 from_start: bool = False,
                 progress: Callable[[int], None] | None = None) -> BatchResult:
    """Replay JSONL files into a config's log: the one file, or routed over its shards."""
    total = BatchResult()
    if not is_sharded(config):
        sealing = SealerOnDemand(config)
        try:
            with open_stores(config) as stores:
                for p in paths:
                    total.add(replay_file(stores, p, view=view, available_at=available_at,
                                          batch_size=batch_size, from_start=from_start,
                                          progress=progress, sealing=sealing))
            sealing.finish()
        finally:
            sealing.stop()
        return total
    from .routed_commit import RoutedCommitter, file_key_offset, shard_partitions

    rc = RoutedCommitter(config, view, shard_partitions(config), file_key_offset)
    try:
        for p in paths:
            total.add(_replay_routed(rc, p, available_at, batch_size, from_start, progress))
    finally:
        rc.close()
    return total


def _replay_routed(rc: RoutedCommitter, path: Path, available_at: int | None, batch_size: int,
                   from_start: bool, progress: Callable[[int], None] | None) -> BatchResult:
    path = path.resolve()
    source = f"replay:{path}"
    rc.start(source, {p: {"file": 0 if from_start else _resume_at(stores, source, path)}
                      for p, stores in rc.shards.items()})
    return _feed(rc.commit, path, source, rc.resume().get("file", 0), batch_size, available_at,
                 progress)
