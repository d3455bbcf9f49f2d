"""File source: tail JSONL files matching a glob, exactly once across restarts.

* Position key ``<path>#<id>``: the path the file had when it was first read and a hash
  of its first bytes (:mod:`.file_identity`); value the byte offset just after the last
  complete line consumed. A file keeps its positions through a copy of the project, a
  backup restore or a move to another volume; ``dev:ino`` keys of earlier versions are
  migrated on start.
* Appends are read as they come; a partial last line waits for its newline.
* Every read checks that the file still starts with the same bytes and still has the
  same bytes just before the offset, before and after reading. So a file truncated or
  rewritten in place (copytruncate rotation), however quickly it is refilled, is noticed
  before a byte of the new content is taken for the old.
* Rename rotation (rename + a new file at the path): the renamed file is followed through
  its open descriptor until it has not grown for ``rotated_idle_s`` seconds (default 30),
  so late writes of an application that has not reopened its file are read. The new file
  starts at byte 0. After a restart a renamed file with unread bytes (or written to within
  ``rotated_idle_s``) is found again in its folder by its content.
* Copytruncate rotation: the unread rest of the old content is read from the copy, found
  in the same folder by its content; the truncated file is read from byte 0. If no copy
  is found (or a file shrank but still starts with the same bytes) the position's detail
  gets a ``warning`` (shown by ``status``) and the log says so: nothing is guessed silently.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...definitions import FileSourceConfig
from ...offline.log import RETIRED, Position
from .base import Chunk, FlushHook, PositionReader, Record
from .file_identity import (
    HEAD_BYTES,
    TAIL_BYTES,
    FileIdentity,  # re-exported: its home was this module
    Stored,
    best_match,
    detail,
    digest,
    holds,
    tail_before,
)

log = logging.getLogger(__name__)

READ_BYTES = 1 << 20


def split_lines(buf: bytes, base: int, name: str, limit: int) -> tuple[list[Record], int]:
    """Complete lines of ``buf`` (read at byte ``base``) as records, at most ``limit``.

    Returns the records and how many bytes they consumed; blank lines are consumed
    without a record, a trailing partial line is not consumed.
    """
    out: list[Record] = []
    pos = 0
    end = buf.rfind(b"\n") + 1
    find = buf.find
    while pos < end and len(out) < limit:
        nl = find(b"\n", pos)
        body = buf[pos:nl].rstrip(b"\r")
        if body.strip():
            out.append(Record(body, f"{name}:{base + pos}"))
        pos = nl + 1
    return out, pos


@dataclass
class _Tracked:
    inode: str  # dev:ino of the open descriptor
    path: Path
    fd: int
    offset: int = 0  # next byte to read
    key: str | None = None  # None: nothing consumed yet (a new file)
    #: the stored next_offset of ``key`` (None: not stored yet); the fence of the next chunk
    mark: int | None = None
    head: bytes = b""  # the first bytes (the id)
    tail: bytes = b""  # the bytes just before ``offset``
    size: int = 0  # size at the last look
    grown_at: float = field(default_factory=time.monotonic)
    orphan_since: float | None = None  # rotated away (the glob no longer names it)
    warning: str | None = None
    retire: list[tuple[str, int]] = field(default_factory=list)  # migrated keys to delete


class FileSource:
    """Tails the files of one ``kind = "file"`` source."""

    def __init__(self, name: str, cfg: FileSourceConfig, root: Path) -> None:
        self.name = name
        self.view = cfg.view
        self.cfg = cfg
        self.root = root
        pattern = Path(cfg.path).expanduser()
        self.pattern = str(pattern if pattern.is_absolute() else root / pattern)
        self.files: dict[str, _Tracked] = {}  # by inode
        self._stored: dict[str, Stored] = {}  # unclaimed stored positions, by key
        self._keys: set[str] = set()  # every key stored or in use
        self._positions: PositionReader | None = None
        self._last_scan = 0.0
        self._rr = 0  # round-robin start among files

    async def start(self, positions: PositionReader, flush: FlushHook) -> None:
        self._positions = positions
        await self._load()

    async def _load(self) -> None:
        assert self._positions is not None
        stored = await self._positions()
        self._keys = set(stored)
        self._stored = {k: s for k, p in stored.items() if (s := Stored.parse(p)) is not None}
        await self.close()
        self._scan(initial=True)

    async def rewind(self) -> None:
        await self._load()

    async def close(self) -> None:
        for t in self.files.values():
            os.close(t.fd)
        self.files = {}

    def _rel(self, p: Path) -> str:
        try:
            return str(p.relative_to(self.root))
        except ValueError:
            return str(p)

    def _say(self, level: int, msg: str, *args: object) -> None:
        log.log(level, "file source %s: " + msg, self.name, *args, extra={"source": self.name})

    # -- discovering files --------------------------------------------------------

    def _open(self, path: Path, *, rotated: bool = False) -> _Tracked | None:
        """Open ``path`` and position it at the stored position it continues, if any."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            self._say(logging.WARNING, "cannot open %s (%s)", path, exc)
            return None
        st = os.fstat(fd)
        inode = FileIdentity.of_stat(st).text()
        t = _Tracked(inode, path, fd, size=st.st_size)
        rel = self._rel(path)
        s = best_match(fd, st.st_size, inode, rel, self.root, list(self._stored.values()))
        if s is None:
            if rotated:
                os.close(fd)
                return None
            if any(c.resolve(self.root) == path for c in self._stored.values()):
                self._say(logging.WARNING, "%s has a stored position but different content;"
                          " reading it from the start", path)
            return t
        del self._stored[s.key]
        t.offset, t.head, t.tail = s.offset, os.pread(fd, s.id_len, 0), tail_before(fd, s.offset)
        if s.legacy:  # an earlier version's dev:ino key: moves to a path#id key
            t.key, t.retire = self._new_key(rel, t.head), [(s.key, s.offset)]
        else:
            t.key, t.mark = s.key, s.offset
        return t

    def _new_key(self, rel: str, head: bytes) -> str:
        base = key = f"{rel}#{digest(head)}"
        n = 1
        while key in self._keys:
            n += 1
            key = f"{base}~{n}"
        self._keys.add(key)
        return key

    def _scan(self, *, initial: bool = False) -> None:
        self._last_scan = now = time.monotonic()
        current: dict[str, Path] = {}
        for name in sorted(glob.glob(self.pattern)):
            p = Path(name)
            try:
                st = p.stat()
            except OSError:
                continue
            if p.is_file():
                current[FileIdentity.of_stat(st).text()] = p
        for inode, p in current.items():
            t = self.files.get(inode)
            if t is None:
                t = self._open(p)
                if t is None or t.inode != inode:  # replaced between stat and open
                    if t is not None:
                        os.close(t.fd)
                    continue
                self.files[inode] = t
                if not initial or t.offset:
                    self._say(logging.INFO, "following %s from byte %d", p, t.offset)
            else:
                t.path = p
                t.orphan_since = None
        for inode, t in self.files.items():
            if inode not in current and t.orphan_since is None:
                t.orphan_since = now
                self._say(logging.INFO, "%s was rotated away; draining it until it has been"
                          " idle for %g s", t.path, self.cfg.rotated_idle_s)
        if initial:
            self._find_rotated(now)

    def _find_rotated(self, now: float) -> None:
        """Files renamed (or copied) away while the daemon was down, found by content."""
        folders = {s.resolve(self.root).parent for s in self._stored.values()}
        for folder in sorted(folders):
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if not self._stored:
                    return
                try:
                    st = e.stat()
                except OSError:
                    continue
                inode = FileIdentity.of_stat(st).text()
                if inode in self.files or not e.is_file():
                    continue
                t = self._open(Path(e.path), rotated=True)
                if t is None:
                    continue
                recent = time.time() - st.st_mtime < self.cfg.rotated_idle_s
                if t.size == t.offset and not recent and not t.retire:
                    os.close(t.fd)  # drained and idle: nothing to watch
                    continue
                t.orphan_since = now
                self.files[inode] = t
                self._say(logging.INFO, "draining rotated file %s from byte %d", t.path, t.offset)

    # -- reading ----------------------------------------------------------------

    async def read(self, max_records: int, timeout: float) -> Chunk:
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() - self._last_scan >= self.cfg.poll_interval:
                self._scan()
            chunk = self._read_available(max_records)
            if chunk or time.monotonic() >= deadline:
                return chunk
            await asyncio.sleep(min(self.cfg.poll_interval, max(0.0, deadline - time.monotonic())))
            self._scan()

    def _read_available(self, max_records: int) -> Chunk:
        chunk = Chunk()
        files = list(self.files.values())
        if not files:
            return chunk
        self._rr = (self._rr + 1) % len(files)
        for t in files[self._rr:] + files[:self._rr]:
            room = max_records - len(chunk.records)
            if room <= 0:
                break
            self._read_file(t, room, chunk)
        self._drop_drained()
        return chunk

    def _intact(self, t: _Tracked, size: int) -> bool:
        """Does the file still hold what was read from it (same start, same bytes before
        the offset)? Appends keep it intact; a truncation or an in-place rewrite does not."""
        return t.key is None or holds(t.fd, size, t.offset, t.head, t.tail)

    def _emit(self, t: _Tracked, chunk: Chunk) -> None:
        assert t.key is not None
        chunk.starts.setdefault(t.key, t.mark)
        chunk.ends[t.key] = Position(t.key, t.offset, detail(self._rel(t.path), t.head, t.tail,
                                                             t.warning))
        t.mark = t.offset
        for key, offset in t.retire:
            chunk.starts.setdefault(key, offset)
            chunk.ends[key] = Position(key, RETIRED, None)
        t.retire = []

    def _read_file(self, t: _Tracked, limit: int, chunk: Chunk) -> None:
        size = os.fstat(t.fd).st_size
        if not self._intact(t, size):
            self._replaced(t, size, chunk)
            size = os.fstat(t.fd).st_size
        if t.retire:
            self._emit(t, chunk)  # migrate the key before anything else is read
        if size != t.size:
            t.size, t.grown_at = size, time.monotonic()
        if size <= t.offset:
            return
        want = READ_BYTES
        while True:
            buf = os.pread(t.fd, want, t.offset)
            records, used = split_lines(buf, t.offset, t.path.name, limit)
            if used or len(buf) < want:
                break
            want *= 2  # one line longer than the read: read more
        if not used:
            return
        if not self._intact(t, os.fstat(t.fd).st_size):
            # Rewritten while it was read: what was read may be new content at the old
            # offset. Not taken; the next read starts over from what is known.
            self._replaced(t, os.fstat(t.fd).st_size, chunk)
            return
        if t.key is None:
            t.head = buf[:min(HEAD_BYTES, used)]
            t.key = self._new_key(self._rel(t.path), t.head)
        t.tail = (t.tail + buf[:used])[-TAIL_BYTES:] if used < TAIL_BYTES else buf[used - TAIL_BYTES:used]
        t.offset += used
        chunk.records.extend(records)
        self._emit(t, chunk)

    def _replaced(self, t: _Tracked, size: int, chunk: Chunk) -> None:
        """``t``'s file no longer holds what was read from it: find the rest of the old
        content (a copytruncate copy) and read the file's new content from byte 0."""
        assert t.key is not None
        if size < t.offset and t.head and os.pread(t.fd, len(t.head), 0) == t.head:
            # Shorter, same start: cut short (or an older copy restored). Not new content.
            cut = os.pread(t.fd, size, 0).rfind(b"\n") + 1
            t.warning = (f"{self._rel(t.path)} shrank from {t.offset} to {size} bytes but starts"
                         f" with the same bytes: taken as cut short, reading on from byte {cut}")
            self._say(logging.WARNING, "%s", t.warning)
            t.offset, t.tail = cut, tail_before(t.fd, cut)
            self._emit(t, chunk)
            return
        copy = self._find_copy(t)
        if copy is not None:
            self._say(logging.WARNING, "%s was truncated or rewritten in place (copytruncate);"
                      " reading the rest of its old content from %s at byte %d, its new content"
                      " from byte 0", t.path, copy.path, t.offset)
            old = self.files.pop(copy.inode, None)
            if old is not None:
                os.close(old.fd)
            self.files[copy.inode] = copy
        else:
            unread = max(0, t.size - t.offset)
            t.warning = (f"{self._rel(t.path)} was truncated or rewritten in place at byte"
                         f" {t.offset} and no copy of its old content was found next to it:"
                         + (f" {unread} bytes of it were not read" if unread else
                            " lines written just before the truncation may not have been read"))
            self._say(logging.WARNING, "%s; reading its new content from byte 0", t.warning)
            self._emit(t, chunk)
        t.key, t.mark, t.offset, t.head, t.tail, t.warning = None, None, 0, b"", b"", None
        t.size, t.grown_at = size, time.monotonic()

    def _find_copy(self, t: _Tracked) -> _Tracked | None:
        """A file next to ``t`` holding ``t``'s old content up to its offset (or beyond)."""
        try:
            entries = sorted(os.scandir(t.path.parent), key=lambda e: e.name)
        except OSError:
            return None
        for e in entries:
            try:
                st = e.stat()
                if not e.is_file() or st.st_size < t.offset:
                    continue
                inode = FileIdentity.of_stat(st).text()
                if inode == t.inode:
                    continue
                fd = os.open(e.path, os.O_RDONLY)
            except OSError:
                continue
            c = _Tracked(inode, Path(e.path), fd, t.offset, t.key, t.mark, t.head, t.tail,
                         size=st.st_size, orphan_since=time.monotonic())
            if os.fstat(fd).st_ino == st.st_ino and self._intact(c, os.fstat(fd).st_size):
                return c
            os.close(fd)
        return None

    def _drop_drained(self) -> None:
        now = time.monotonic()
        for inode, t in list(self.files.items()):
            if t.orphan_since is None or now - max(t.orphan_since, t.grown_at) <= self.cfg.rotated_idle_s:
                continue
            if os.fstat(t.fd).st_size == t.offset:
                self._say(logging.INFO, "done with rotated file %s (idle for %g s)", t.path,
                          self.cfg.rotated_idle_s)
                os.close(t.fd)
                del self.files[inode]

    def committed(self, ends: dict[str, Position]) -> None:
        return None

    async def after_commit(self, ends: dict[str, Position]) -> None:
        return None

    def caught_up(self) -> bool:
        if time.monotonic() - self._last_scan >= self.cfg.poll_interval:
            self._scan()
        for t in self.files.values():
            try:
                size = os.fstat(t.fd).st_size
            except OSError:
                return False
            if size != t.offset or t.retire or not self._intact(t, size):
                return False  # unread bytes, a partial line, or content replaced in place
        return True
