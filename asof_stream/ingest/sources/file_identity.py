"""Which stored position a file on disk continues: identity by content, not by inode.

A file source's position key is ``<path>#<id>``: the path the file had when it was first
read (relative to the project folder when it is inside it) and ``id``, a hash of the
file's first ``id_len`` bytes (:data:`HEAD_BYTES`, fewer if the file was shorter at its
first commit; ``id_len`` is recorded). The detail records where the file is now
(``path``), the id, a hash of the :data:`TAIL_BYTES` bytes just before the offset
(``tail``) and, when something could not be known for sure, a ``warning``.

A file continues a stored position when it starts with the id's bytes and has the tail's
bytes just before the offset: a copy of the project, a backup restore or a move to
another volume (new inodes) keeps its positions, and a renamed file is found by the same
test. Positions of earlier versions (key ``dev:ino``, detail ``path``/``head_len``/
``head``) are matched by their head and migrated to the new key on start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ...offline.log import Position

#: the identity covers the first this many bytes of a file
HEAD_BYTES = 256
#: bytes just before the read position, checked on every read (same file, same content?)
TAIL_BYTES = 64
_LEGACY_KEY = re.compile(r"^\d+:\d+$")


@dataclass(frozen=True)
class FileIdentity:
    """The inode of a file: which file an open descriptor reads while this process runs
    (positions are keyed by content, above)."""

    dev: int
    ino: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        return cls.of_stat(path.stat())

    @classmethod
    def of_stat(cls, st: os.stat_result) -> FileIdentity:
        """From an ``os.stat`` (or ``os.DirEntry.stat``) result."""
        return cls(st.st_dev, st.st_ino)

    def text(self) -> str:
        return f"{self.dev}:{self.ino}"


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:16]


@dataclass(frozen=True)
class Stored:
    """A committed file position, parsed."""

    key: str
    offset: int
    path: str  # where the file was at the last commit (relative: to the project folder)
    id_len: int
    id: str
    tail_len: int
    tail: str | None  # None: not recorded (positions of earlier versions)
    legacy: bool  # a ``dev:ino`` key of an earlier version

    @classmethod
    def parse(cls, pos: Position) -> Stored | None:
        try:
            d = json.loads(pos.detail or "")
        except ValueError:
            return None
        if not isinstance(d, dict):
            return None
        legacy = bool(_LEGACY_KEY.match(pos.key))
        try:
            if legacy:
                return cls(pos.key, pos.next_offset, str(d.get("path", "")),
                           int(d.get("head_len", 0)), str(d.get("head", "")), 0, None, True)
            return cls(pos.key, pos.next_offset, str(d["path"]), int(d["id_len"]), str(d["id"]),
                       int(d.get("tail_len", 0)), str(d.get("tail", "")), False)
        except (KeyError, TypeError, ValueError):
            return None

    def resolve(self, root: Path) -> Path:
        p = Path(self.path)
        return p if p.is_absolute() else root / p


def detail(path: str, head: bytes, tail: bytes, warning: str | None = None) -> str:
    d: dict[str, object] = {"path": path, "id_len": len(head), "id": digest(head),
                            "tail_len": len(tail), "tail": digest(tail)}
    if warning:
        d["warning"] = warning
    return json.dumps(d)


def detail_fields(text: str | None) -> dict[str, object]:
    """The detail of a file position as a dict ({} if it is not one)."""
    try:
        d = json.loads(text or "")
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def continues(fd: int, size: int, s: Stored, dev_ino: str) -> bool:
    """Does the open file ``fd`` (``size`` bytes) continue the stored position ``s``?"""
    if size < s.offset or size < s.id_len:
        return False
    if s.legacy and not s.id_len:
        return s.key == dev_ino  # nothing else recorded: the inode is all there is
    if digest(os.pread(fd, s.id_len, 0)) != s.id:
        return False
    if s.tail is not None and s.tail_len:
        return digest(os.pread(fd, s.tail_len, s.offset - s.tail_len)) == s.tail
    return True


def holds(fd: int, size: int, offset: int, head: bytes, tail: bytes) -> bool:
    """Does the open file ``fd`` (``size`` bytes) still hold what was read from it: the
    same ``head`` at byte 0 and the same ``tail`` just before ``offset``? Appends keep it
    so; a truncation or an in-place rewrite does not."""
    if size < offset:
        return False
    if head and os.pread(fd, len(head), 0) != head:
        return False
    return not tail or os.pread(fd, len(tail), offset - len(tail)) == tail


def tail_before(fd: int, offset: int) -> bytes:
    n = min(TAIL_BYTES, offset)
    return os.pread(fd, n, offset - n) if n else b""


def best_match(fd: int, size: int, dev_ino: str, path: str, root: Path,
               candidates: list[Stored]) -> Stored | None:
    """The stored position this file continues: its own path first, then the same inode
    (an earlier version's key), then the one read furthest."""
    found = [s for s in candidates if continues(fd, size, s, dev_ino)]
    if not found:
        return None
    found.sort(key=lambda s: (s.path != path and str(s.resolve(root)) != path,
                              s.key != dev_ino, -s.offset))
    return found[0]
