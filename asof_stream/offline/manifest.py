"""The manifest: which segment files hold sealed rows, in the log's own SQLite file.

A row is registered in the same transaction that deletes its rows from the head, so
every log row lives in exactly one tier. A file in ``<log>.segments`` that the manifest
does not list is an orphan of a crash: never read, removed by the next seal/compaction.

Each segment row carries a Bloom filter over its ``event_id`` values (10 bits per id,
7 probes: about 1% false positives), so the commit checks a batch of ids against the
sealed tier in memory. At 1%, a batch of 20,000 new ids has a couple of hundred false
hits in every segment, so the hits are narrowed first by the segment's sorted id hashes
(:class:`IdHashes`, 8 bytes per sealed row, kept in memory up to a budget; the daemon's
sealer leaves them there as it writes each segment), and a segment's ``event_id`` column
is read only for what is left: ids that really are there, or a segment over the budget.
Without that narrowing every batch read every sealed id, and ingest slowed down as the
sealed tier grew.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOOM_BITS_PER_KEY = 10
BLOOM_PROBES = 7

SEGMENT_COLUMNS = ("id, view, file, rows, min_seq, max_seq, min_event_timestamp, max_event_timestamp,"
                   " min_ingest_ts, max_ingest_ts, bytes, checksum, level")


@dataclass(frozen=True, slots=True)
class Segment:
    """One manifest row."""

    id: int
    view: str
    file: str  # relative to the segments folder
    rows: int
    min_seq: int
    max_seq: int
    min_event_timestamp: int
    max_event_timestamp: int
    min_ingest_ts: int
    max_ingest_ts: int
    bytes: int
    checksum: str
    level: int


def list_segments(conn: sqlite3.Connection, view: str | None = None,
                  max_seq: int | None = None) -> list[Segment]:
    """Registered segments (of one view), oldest seqs first; ``max_seq`` drops newer ones."""
    sql = f"SELECT {SEGMENT_COLUMNS} FROM segments"
    cond: list[str] = []
    params: list[object] = []
    if view is not None:
        cond.append("view = ?")
        params.append(view)
    if max_seq is not None:
        cond.append("min_seq <= ?")
        params.append(max_seq)
    if cond:
        sql += " WHERE " + " AND ".join(cond)
    return [Segment(*r) for r in conn.execute(sql + " ORDER BY min_seq", params)]


def has_manifest(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                        " AND name = 'segments'").fetchone()[0] == 1


def register(conn: sqlite3.Connection, view: str, file: str, rows: int, seqs: tuple[int, int],
             ets: tuple[int, int], its: tuple[int, int], size: int, checksum: str, level: int,
             bloom: bytes | None, now: int) -> int:
    """Insert a manifest row inside the caller's transaction; returns its id."""
    cur = conn.execute(
        "INSERT INTO segments (view, file, rows, min_seq, max_seq, min_event_timestamp,"
        " max_event_timestamp, min_ingest_ts, max_ingest_ts, bytes, checksum, level, bloom,"
        " created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (view, file, rows, *seqs, *ets, *its, size, checksum, level, bloom, now))
    return int(cur.lastrowid or 0)


# -- Bloom filters over event ids ---------------------------------------------------------

def id_hashes(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Two stable 64-bit hashes per id (blake2b), for double hashing."""
    digests = b"".join(hashlib.blake2b(i.encode(), digest_size=16).digest() for i in ids)
    pair = np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2)
    return pair[:, 0], pair[:, 1] | np.uint64(1)


def _probes(h1: np.ndarray, h2: np.ndarray, nbits: int) -> np.ndarray:
    i = np.arange(BLOOM_PROBES, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        return (h1[:, None] + i * h2[:, None]) % np.uint64(nbits)


class IdHashes:
    """Per segment file, the sorted first hash (:func:`id_hashes`) of its event ids: an
    exact-enough filter (64 bits) before reading the file. One per process, shared by
    its threads; at most :attr:`budget` hashes are kept (the newest files win)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._by_file: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        #: called with every put (the daemon's sealer process sends them to the daemon)
        self.on_put: Callable[[Path, np.ndarray], None] | None = None

    def put(self, path: Path, h1: np.ndarray) -> None:
        hashes = np.sort(h1)
        if self.on_put is not None:
            self.on_put(path, hashes)
        with self._lock:
            self._by_file[str(path)] = hashes
            total = sum(a.size for a in self._by_file.values())
            for key in list(self._by_file):  # oldest first
                if total <= self.budget:
                    break
                total -= self._by_file.pop(key).size

    def get(self, path: Path) -> np.ndarray | None:
        return self._by_file.get(str(path))

    def fits(self, n: int) -> bool:
        """Whether ``n`` more hashes fit without forgetting others (reading them in then
        is worth it; churning through files that do not fit together is not)."""
        with self._lock:
            return sum(a.size for a in self._by_file.values()) + n <= self.budget

    def keep_only(self, folder: Path, live: set[str]) -> None:
        """Forget the files under ``folder`` that are not in ``live`` and no longer exist
        (merged away, or rolled back). A file that exists but is not registered yet is kept:
        a sealer in another process sends its hashes just before registering it."""
        prefix = str(folder) + "/"
        with self._lock:
            for key in [k for k in self._by_file if k.startswith(prefix) and k not in live]:
                if not os.path.exists(key):
                    del self._by_file[key]


#: 16M hashes: 128 MB, the sealed ids of a 16M-row log
ID_HASHES = IdHashes(budget=16_000_000)


def build_bloom(ids: Sequence[str], remember: Path | None = None) -> bytes | None:
    """A Bloom filter over the ids (None when there are none). ``remember``: the segment
    file they are the ids of, whose hashes are kept in :data:`ID_HASHES`."""
    if not ids:
        return None
    nbits = max(64, len(ids) * BLOOM_BITS_PER_KEY)
    nbits = (nbits + 7) // 8 * 8
    bits = np.zeros(nbits, dtype=bool)
    h1, h2 = id_hashes(ids)
    if remember is not None:
        ID_HASHES.put(remember, h1)
    bits[_probes(h1, h2, nbits).ravel()] = True
    return np.packbits(bits, bitorder="little").tobytes()


def bloom_maybe(bloom: bytes, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """Per hashed id: may it be in the filter (False: certainly not)."""
    packed = np.frombuffer(bloom, dtype=np.uint8)
    nbits = packed.size * 8
    pos = _probes(h1, h2, nbits)
    hit = (packed[(pos >> np.uint64(3)).astype(np.int64)] >> (pos & np.uint64(7)).astype(np.uint8)) & 1
    return np.asarray(hit.all(axis=1))


class SealedIds:
    """The commit's view of the sealed tier's event ids: Bloom filters cached by segment
    file (unique; a segment id is not: a merge that deletes the highest ids gets one of
    them back from SQLite, and a filter cached under it would miss the merged ids)."""

    def __init__(self, segments_dir: Path) -> None:
        self.segments_dir = segments_dir
        self._blooms: dict[str, bytes | None] = {}

    def existing(self, conn: sqlite3.Connection, view: str, ids: list[str]) -> set[str]:
        """The ids already stored in the sealed tier of ``view`` (exact)."""
        rows = conn.execute("SELECT id, file, bytes, rows FROM segments WHERE view = ?",
                            (view,)).fetchall()
        if not rows or not ids:
            return set()
        live = {r[1] for r in rows}
        for file in [f for f in self._blooms if f not in live]:
            del self._blooms[file]
        ID_HASHES.keep_only(self.segments_dir / view, {str(self.segments_dir / r[1]) for r in rows})
        h1, h2 = id_hashes(ids)
        found: set[str] = set()
        for sid, file, size, n in rows:
            if file not in self._blooms:
                self._blooms[file] = conn.execute("SELECT bloom FROM segments WHERE id = ?",
                                                  (sid,)).fetchone()[0]
            bloom = self._blooms[file]
            if bloom is None:
                continue
            maybe = bloom_maybe(bloom, h1, h2)
            if not maybe.any():
                continue
            hits = np.flatnonzero(maybe)
            path = self.segments_dir / file
            known = ID_HASHES.get(path)
            if known is None and ID_HASHES.fits(n):
                known = self._hashes(path, size)
            if known is not None:  # keep the hits whose hash the segment has
                at = np.minimum(np.searchsorted(known, h1[hits]), known.size - 1)
                hits = hits[known[at] == h1[hits]]
                if not hits.size:
                    continue
            found.update(self._confirm(path, size, [ids[i] for i in hits]))
        return found

    @staticmethod
    def _hashes(path: Path, size: int) -> np.ndarray | None:
        """A segment's id hashes, read once and kept (None when it has no ids)."""
        from .segments import read_segment

        ids = [i for i in read_segment(path, size, columns=["event_id"]).column("event_id")
               .to_pylist() if i is not None]
        if not ids:
            return None
        ID_HASHES.put(path, id_hashes(ids)[0])
        return ID_HASHES.get(path)

    @staticmethod
    def _confirm(path: Path, size: int, candidates: list[str]) -> set[str]:
        import pyarrow as pa
        import pyarrow.compute as pc

        from .segments import read_segment

        table = read_segment(path, size, columns=["event_id"])
        col = table.column("event_id")
        hit = pc.is_in(col, value_set=pa.array(candidates, type=col.type))
        return set(col.filter(hit).to_pylist())
