"""A dead letter's line number in the file it came from.

A file source records a dead letter's position as ``NAME:BYTE_OFFSET``. The line number
is worked out when listing, not stored: the file is read up to the offset and its
newlines counted, and only if the bytes at that offset are still the dead letter's own
(a file since rotated away, truncated or rewritten gives no line number rather than a
wrong one). Kafka, HTTP and Python sources have no lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from ..config import Config
from ..definitions import FileSourceConfig
from .dead_letters import DeadLetter

_CHUNK = 1 << 20


def _files_of(config: Config, letter: DeadLetter) -> tuple[list[Path], int]:
    """The files a dead letter may have come from (positions name only the file's base
    name: a glob source may match several) and its byte offset."""
    if not letter.position or ":" not in letter.position:
        return [], 0
    name, _, offset = letter.position.rpartition(":")
    if not offset.isdigit():
        return [], 0
    if letter.source.startswith("replay:"):  # replay's source is the file's absolute path
        path = Path(letter.source[len("replay:"):])
        return ([path] if path.name == name else []), int(offset)
    src = config.defs.sources.get(letter.source)
    if not isinstance(src, FileSourceConfig):
        return [], 0
    pattern = config.resolve(src.path)
    if not any(c in str(pattern) for c in "*?["):
        return ([pattern] if pattern.name == name else []), int(offset)
    rel = str(pattern.relative_to(pattern.anchor))
    return sorted(p for p in Path(pattern.anchor).glob(rel) if p.name == name), int(offset)


def line_numbers(config: Config, letters: Sequence[DeadLetter]) -> dict[int, int]:
    """Dead letter id -> 1-based line number, for those whose file still holds them."""
    by_file: dict[Path, list[tuple[int, DeadLetter]]] = {}
    for d in letters:
        paths, offset = _files_of(config, d)
        for path in paths:
            by_file.setdefault(path, []).append((offset, d))
    out: dict[int, int] = {}
    for path, items in by_file.items():
        try:
            fh = path.open("rb")
        except OSError:
            continue
        with fh:
            items.sort(key=lambda t: t[0])
            pos, newlines = 0, 0
            for offset, d in items:
                while pos < offset:  # count newlines in [pos, offset), one pass per file
                    buf = fh.read(min(_CHUNK, offset - pos))
                    if not buf:
                        break
                    newlines += buf.count(b"\n")
                    pos += len(buf)
                if pos != offset:
                    break  # the file is shorter now: it is not the file the letter came from
                at_line_start = offset == 0 or _byte_before(fh, offset) == b"\n"
                if at_line_start and fh.read(len(d.raw)) == d.raw:
                    out.setdefault(d.id, newlines + 1)
                fh.seek(pos)
    return out


def _byte_before(fh: BinaryIO, offset: int) -> bytes:
    fh.seek(offset - 1)
    return fh.read(1)


def describe_position(d: DeadLetter, line: int | None) -> str:
    """``events.jsonl line 3 (byte 96)`` for a file's line, else the position as stored."""
    if line is None or not d.position:
        return d.position or "-"
    name, _, offset = d.position.rpartition(":")
    return f"{name} line {line} (byte {offset})"
