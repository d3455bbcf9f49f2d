"""The one interface every streaming source implements.

A source turns what it reads into :class:`Record` objects (raw bytes
plus a human-readable position for dead letters) and says, per position key, where it
stood before the chunk and where it stands after it. The daemon commits a batch of
chunks with the *after* positions in the same SQLite transaction as the events, and
uses the *before* positions as a fence: the commit only succeeds if the stored
positions still equal them (see :class:`~asof_stream.ingest.commit.PositionConflict`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

from ...offline.log import Position


@dataclass(frozen=True, slots=True)
class Record:
    """One source record: its raw bytes and where it came from (shown in dead letters).

    ``error``: the source could not turn the value into an event body (an Avro value that
    does not decode); the record is a dead letter with this reason and its raw bytes.
    """

    raw: bytes
    position: str
    error: str | None = None


@dataclass(slots=True)
class Chunk:
    """Records read in one call, and how they move each position key."""

    records: list[Record] = field(default_factory=list)
    #: key -> the stored/previous next offset before this chunk (None: never stored)
    starts: dict[str, int | None] = field(default_factory=dict)
    #: key -> where the key stands after this chunk
    ends: dict[str, Position] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.records or self.ends)


#: Called by a source before it gives up keys (a Kafka revocation): the daemon commits
#: (or, if that fails, drops) the batch in hand so the next owner neither skips nor
#: repeats a record.
FlushHook = Callable[[], Awaitable[None]]

class PositionReader(Protocol):
    """Reads the committed positions of this source from SQLite (through the commit thread).

    ``keys``: the position keys the source is about to read (a Kafka assignment), so a
    sharded daemon can open the shards that hold them; None for every stored one.
    """

    def __call__(self, keys: Collection[str] | None = None) -> Awaitable[dict[str, Position]]: ...


class Source(Protocol):
    """What the daemon needs from a source."""

    name: str
    #: the view every event of this source is bound to, if any
    view: str | None

    async def start(self, positions: PositionReader, flush: FlushHook) -> None:
        """Connect and position at the stored positions."""

    async def read(self, max_records: int, timeout: float) -> Chunk:
        """Up to ``max_records`` records, waiting at most about ``timeout`` seconds."""

    def committed(self, ends: dict[str, Position]) -> None:
        """The daemon committed these positions (called after every SQLite commit)."""

    async def after_commit(self, ends: dict[str, Position]) -> None:
        """Optional follow-up outside the transaction (Kafka offset commit, lag metrics)."""

    async def rewind(self) -> None:
        """Drop everything read since the last commit and resume from the stored positions."""

    def caught_up(self) -> bool:
        """True when there is nothing left to read right now."""

    async def close(self) -> None: ...


# Kafka positions carry the partition's high watermark (as the last fetch saw it) in
# their detail, so ``status`` shows lag without asking the broker.


def hw_detail(highwater: int | None) -> str | None:
    return None if highwater is None else json.dumps({"highwater": highwater})


def detail_highwater(detail: str | None) -> int | None:
    """The high watermark recorded with a Kafka position (None if unknown)."""
    if not detail:
        return None
    try:
        value = json.loads(detail).get("highwater")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None
