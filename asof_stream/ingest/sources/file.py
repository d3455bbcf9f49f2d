"""File source: tail JSONL files matching a glob, exactly once across restarts.

* Position key: the file identity ``dev:ino`` (:class:`FileIdentity`),
  value the byte offset just after the last complete line consumed. The ``detail``
  records the path and a fingerprint of the file's first bytes, so a recycled inode is
  recognised as a new file.
* Appends are read as they come; a partial last line waits for its newline.
* Rotation (rename + a new file at the same path): the renamed file is followed through
  its open descriptor until it is drained, the new one starts at byte 0. After a restart
  a renamed file with unread bytes is found again in the same directory by identity.
* Truncation (file shorter than the stored offset, copy-truncate rotation): reading
  restarts at byte 0 of the new content, with a warning in the log.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ...definitions import FileSourceConfig
from ...offline.log import Position
from .base import Chunk, FlushHook, PositionReader, Record

log = logging.getLogger(__name__)

HEAD_BYTES = 256
READ_BYTES = 1 << 20
#: how long a rotated-away file is still watched for late appends after it is drained
ORPHAN_GRACE = 2.0


@dataclass(frozen=True)
class FileIdentity:
    """Which file a byte offset belongs to (survives renames, not rewrites)."""

    dev: int
    ino: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        st = path.stat()
        return cls(st.st_dev, st.st_ino)

    def text(self) -> str:
        return f"{self.dev}:{self.ino}"


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


def fingerprint(fd: int, length: int) -> str:
    return hashlib.sha1(os.pread(fd, length, 0)).hexdigest()[:16]


@dataclass
class _Tracked:
    ident: str
    path: Path
    fd: int
    offset: int  # next byte to read
    #: the position the next chunk starts from: what the daemon will have stored once
    #: every chunk read so far is committed (None: nothing stored for this file yet)
    mark: int | None
    head_len: int = 0
    head: str = ""
    pending: bool = False  # a partial line waits at the end
    orphan_since: float | None = None  # rotated away (path now names another file)

    def detail(self) -> str:
        if self.head_len < HEAD_BYTES and self.offset > self.head_len:
            self.head_len = min(HEAD_BYTES, self.offset)
            self.head = fingerprint(self.fd, self.head_len)
        return json.dumps({"path": str(self.path), "head_len": self.head_len, "head": self.head})


class FileSource:
    """Tails the files of one ``kind = "file"`` source."""

    def __init__(self, name: str, cfg: FileSourceConfig, root: Path) -> None:
        self.name = name
        self.view = cfg.view
        self.cfg = cfg
        pattern = Path(cfg.path).expanduser()
        self.pattern = str(pattern if pattern.is_absolute() else root / pattern)
        self.files: dict[str, _Tracked] = {}
        self._stored: dict[str, Position] = {}
        self._positions: PositionReader | None = None
        self._last_scan = 0.0
        self._rr = 0  # round-robin start among files

    async def start(self, positions: PositionReader, flush: FlushHook) -> None:
        self._positions = positions
        await self._load()

    async def _load(self) -> None:
        assert self._positions is not None
        self._stored = await self._positions()
        for t in self.files.values():
            os.close(t.fd)
        self.files = {}
        self._scan(initial=True)

    async def rewind(self) -> None:
        await self._load()

    async def close(self) -> None:
        for t in self.files.values():
            os.close(t.fd)
        self.files = {}

    # -- discovering files --------------------------------------------------------

    def _open(self, path: Path, ident: str) -> _Tracked | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            log.warning("file source %s: cannot open %s (%s)", self.name, path, exc)
            return None
        st = os.fstat(fd)
        if FileIdentity(st.st_dev, st.st_ino).text() != ident:
            os.close(fd)  # replaced between stat and open; the next scan picks it up
            return None
        stored = self._stored.get(ident)
        t = _Tracked(ident, path, fd, 0, None)
        if stored is not None:
            t.mark = stored.next_offset
            prior = _parse_detail(stored.detail)
            head_len = int(str(prior.get("head_len", 0)))
            size = os.fstat(fd).st_size
            if head_len and (size < head_len or fingerprint(fd, head_len) != prior.get("head")):
                log.warning("file source %s: %s has a stored position but different content"
                            " (inode reused); reading it from the start", self.name, path,
                            extra={"source": self.name})
            else:
                t.offset = stored.next_offset
                t.head_len, t.head = head_len, str(prior.get("head", ""))
        return t

    def _scan(self, *, initial: bool = False) -> None:
        self._last_scan = time.monotonic()
        current: dict[str, Path] = {}
        for name in sorted(glob.glob(self.pattern)):
            p = Path(name)
            try:
                st = p.stat()
            except OSError:
                continue
            if not p.is_file():
                continue
            current[FileIdentity(st.st_dev, st.st_ino).text()] = p
        for ident, p in current.items():
            t = self.files.get(ident)
            if t is None:
                t = self._open(p, ident)
                if t is None:
                    continue
                self.files[ident] = t
                if not initial or t.offset:
                    log.info("file source %s: following %s from byte %d", self.name, p, t.offset,
                             extra={"source": self.name})
            else:
                t.path = p
                t.orphan_since = None
        now = time.monotonic()
        for ident, t in self.files.items():
            if ident not in current and t.orphan_since is None:
                t.orphan_since = now
                log.info("file source %s: %s was rotated away; draining it", self.name, t.path,
                         extra={"source": self.name})
        if initial:
            # Files renamed away while the daemon was down, with bytes still unread.
            for ident, pos in self._stored.items():
                if ident in self.files:
                    continue
                path = _parse_detail(pos.detail).get("path")
                if not path:
                    continue
                found = _find_by_identity(Path(str(path)).parent, ident)
                if found is not None and found.stat().st_size > pos.next_offset:
                    t = self._open(found, ident)
                    if t is not None:
                        t.orphan_since = now
                        self.files[ident] = t
                        log.info("file source %s: draining rotated file %s from byte %d",
                                 self.name, found, t.offset, extra={"source": self.name})

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

    def _read_file(self, t: _Tracked, limit: int, chunk: Chunk) -> None:
        size = os.fstat(t.fd).st_size
        if size < t.offset:
            log.warning("file source %s: %s shrank from %d to %d bytes (truncated); reading the"
                        " new content from byte 0", self.name, t.path, t.offset, size,
                        extra={"source": self.name})
            t.offset, t.head_len, t.head = 0, 0, ""
            chunk.starts.setdefault(t.ident, t.mark)
            chunk.ends[t.ident] = Position(t.ident, 0, t.detail())
            t.mark = 0
        if size == t.offset:
            t.pending = False
            return
        want = READ_BYTES
        while True:
            buf = os.pread(t.fd, want, t.offset)
            records, used = split_lines(buf, t.offset, t.path.name, limit)
            if used or len(buf) < want:
                break
            want *= 2  # one line longer than the read: read more
        if used:
            chunk.records.extend(records)
            chunk.starts.setdefault(t.ident, t.mark)
            t.offset += used
            chunk.ends[t.ident] = Position(t.ident, t.offset, t.detail())
            t.mark = t.offset
        t.pending = t.offset < size and b"\n" not in buf[used:]

    def _drop_drained(self) -> None:
        now = time.monotonic()
        for ident, t in list(self.files.items()):
            if (t.orphan_since is not None and now - t.orphan_since > ORPHAN_GRACE
                    and os.fstat(t.fd).st_size == t.offset):
                os.close(t.fd)
                del self.files[ident]

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
            if size != t.offset:
                return False  # unread bytes, or a partial line still waiting for its newline
        return True


def _parse_detail(detail: str | None) -> dict[str, object]:
    if not detail:
        return {}
    try:
        out = json.loads(detail)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _find_by_identity(folder: Path, ident: str) -> Path | None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    for e in entries:
        try:
            st = e.stat()
        except OSError:
            continue
        if FileIdentity(st.st_dev, st.st_ino).text() == ident and e.is_file():
            return Path(e.path)
    return None
