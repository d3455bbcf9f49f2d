"""The point-in-time (as-of) join: the one implementation behind every training set.

docs/join.md. For a label at time ``t`` and a view ``V``, the chosen log row is,
among the rows of ``V`` with the label's entity key, the one with the greatest
``(event_timestamp, seq)`` such that ``event_timestamp <= t`` (``< t`` when strict),
``t - event_timestamp <= ttl`` when ``V`` has a ttl, and ``ingest_ts <= t`` with
as-known-at. No such row: nulls.

How: a sort-merge in meaning, pushed down into SQLite's index, in two passes.

1. Choose. The labels are sorted by entity and sent a chunk at a time as one JSON
   array; one query walks the log's covering index
   ``(view, entity, event_timestamp, seq, ingest_ts)`` backwards from each label
   (``ORDER BY event_timestamp DESC, seq DESC LIMIT 1``) and returns the chunk's chosen
   seqs as one JSON array. Only the index is read, and consecutive probes touch
   neighbouring index pages.
2. Fetch. The distinct chosen rows are read from the log table in seq order (so its
   pages are read in file order, each row once) and their features decoded once.

The log never leaves SQLite, so memory grows with the labels, not with the log.
Measured at 1M rows x 200k labels: fetching each label's row inside the probe query
took 1.5 s; choosing (0.45 s) then fetching in seq order (0.4 s) takes half of that.
Pulling the log into a Python merge was slower still, and so was deduplicating
identical probes in Python (a probe costs SQLite a few microseconds).
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..definitions import Definitions
from ..events import loads_values
from ..offline.log import OfflineLog


@dataclass(frozen=True, slots=True)
class JoinMode:
    """The options of the join rule (docs/join.md) that change which row is chosen."""

    strict: bool = False
    as_known_at: bool = False


@dataclass(slots=True)
class ViewMatches:
    """For one view, per label (in label order): the chosen row's seq, time and features.

    ``seqs[i]``, ``event_ts[i]`` and ``values[i]`` are None when no row qualifies.
    Labels that chose the same row share one dict: treat it as read-only. The per-label
    lists of times and values are made on first use (writing a CSV needs neither).
    """

    view: str
    seqs: list[int | None]
    by_seq: dict[int, dict[str, Any]]  # each chosen row's values, once
    times_by_seq: dict[int, int]  # each chosen row's event_timestamp
    _values: list[dict[str, Any] | None] | None = field(default=None, repr=False)
    _event_ts: list[int | None] | None = field(default=None, repr=False)

    @classmethod
    def empty(cls, view: str, n: int) -> ViewMatches:
        """No row chosen yet for any of ``n`` labels."""
        return cls(view, [None] * n, {}, {})

    # dict.get(None) is None: labels without a row get nulls, in one pass in C.
    @property
    def values(self) -> list[dict[str, Any] | None]:
        if self._values is None:
            self._values = list(map(self.by_seq.get, self.seqs))  # type: ignore[arg-type]
        return self._values

    @property
    def event_ts(self) -> list[int | None]:
        if self._event_ts is None:
            self._event_ts = list(map(self.times_by_seq.get, self.seqs))  # type: ignore[arg-type]
        return self._event_ts

    def table(self, render: Callable[[dict[str, Any]], Any]) -> list[Any]:
        """Per label, ``render(values)`` of its chosen row, computed once per row.

        Labels with no row get ``render({})`` (every feature missing).
        """
        return self.table_of_rows(lambda rows: list(map(render, rows)))

    def table_of_rows(self, render_rows: Callable[[list[dict[str, Any]]], list[Any]]
                      ) -> list[Any]:
        """Like :meth:`table`, with ``render_rows`` rendering every chosen row (and the
        empty row, last) in one call, so it can work a column at a time."""
        seqs: list[int | None] = [*self.by_seq, None]
        rendered = dict(zip(seqs, render_rows([*self.by_seq.values(), {}]), strict=True))
        return list(map(rendered.__getitem__, self.seqs))

    def column(self, feature: str) -> list[Any]:
        """One feature's values per label (None where nothing qualified or it is absent)."""
        return [None if v is None else v.get(feature) for v in self.values]

    def project(self, features: Sequence[str],
                convert: Callable[[Any], Any] | None = None) -> list[tuple[Any, ...]]:
        """Per label, a tuple of these features' values (each converted)."""
        if convert is None:
            return self.table(lambda v: tuple(map(v.get, features)))
        return self.table(lambda v: tuple(convert(v.get(f)) for f in features))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of acyclic objects are made."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def tune_reader(conn: sqlite3.Connection) -> None:
    """Settings for a connection of the join's own: temporary tables (the naive join's)
    in memory, and a 16 MiB page cache (as fast here as 64 MiB: probes in entity order
    revisit few pages).

    Memory-mapped reads made a 1M-row join about 10% faster, but counted the touched
    log file in the process's memory, which should grow with the labels, not the log.
    """
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -16384")


# ``->>`` (SQLite 3.38+) reads a JSON element as SQL about a third faster than json_extract.
_ELEMENT = "p.value ->> {}" if sqlite3.sqlite_version_info >= (3, 38) \
    else "json_extract(p.value, '$[{}]')"


def choose_sql(*, ttl: int | None, mode: JoinMode) -> str:
    """The choosing query for a chunk of labels, given as the JSON text ``:labels`` of
    ``[[entity key, t], ...]``.

    It returns one JSON array of ``[position in the chunk, chosen seq or null]``:
    decoding it in one call is faster than fetching a SQLite row per label, and reading
    the labels from JSON is faster than inserting them into a table first.
    """
    entity, t = _ELEMENT.format(0), _ELEMENT.format(1)
    cond = ["view = :view", f"entity = {entity}", "seq <= :upto",
            f"event_timestamp < {t}" if mode.strict else f"event_timestamp <= {t}"]
    if ttl is not None:
        cond.append(f"event_timestamp >= {t} - :ttl")
    if mode.as_known_at:
        cond.append(f"ingest_ts <= {t}")
    choose = ("SELECT seq FROM log WHERE " + " AND ".join(cond)
              + " ORDER BY event_timestamp DESC, seq DESC LIMIT 1")
    return f"SELECT json_group_array(json_array(p.key, ({choose}))) FROM json_each(:labels) AS p"


FETCH_SQL = ("SELECT json_group_array(json_array(seq, event_timestamp, features)) FROM log"
             " WHERE seq IN (SELECT value FROM json_each(?))")
CHUNK = 32_768  # labels (or rows) per query: bounds the JSON text, paces the progress bar
_decode_choices = msgspec.json.Decoder(list[tuple[int, int | None]])
_decode_rows = msgspec.json.Decoder(list[tuple[int, int, str]])
_encoder = msgspec.json.Encoder()


def _json_text(value: Any) -> str:
    """JSON as text: SQLite's JSON functions take a text parameter (bytes bind a BLOB)."""
    return _encoder.encode(value).decode()


def choose_rows(log: OfflineLog, defs: Definitions, view: str, keys: Sequence[str],
                times: Sequence[int], mode: JoinMode = JoinMode(), *,
                upto_seq: int | None = None, progress: Callable[[int], None] | None = None,
                among: Sequence[int] | None = None) -> list[int | None]:
    """Pass 1: per label, the seq of its chosen row of ``view``, or None.

    ``among``: only these labels (indices, in entity order); the result follows it.
    """
    if len(keys) != len(times):
        raise ValueError("keys and times differ in length")
    ttl = defs.views[view].ttl
    if log.sealed_rows(view):
        # This join reads the head only; a sealed log would give silently wrong rows.
        raise ValueError(f"{log.path}: view {view!r} has sealed segments, which this join does"
                         " not read yet (the join over offline/scan.py does)")
    if upto_seq is None:
        upto_seq = log.max_seq()
    # Labels in entity order: consecutive probes walk neighbouring index pages.
    order = sorted(range(len(keys)), key=keys.__getitem__) if among is None else among
    slots: Sequence[int] = order if among is None else range(len(among))
    chosen: list[int | None] = [None] * len(order)
    sql = choose_sql(ttl=ttl, mode=mode)
    for lo in range(0, len(order), CHUNK):
        part = order[lo:lo + CHUNK]
        labels = _json_text(list(zip(map(keys.__getitem__, part), map(times.__getitem__, part),
                                  strict=True)))
        text = log.conn.execute(sql, {"view": view, "upto": upto_seq, "ttl": ttl,
                                      "labels": labels}).fetchone()[0]
        for k, seq in _decode_choices.decode(text):
            chosen[slots[lo + k]] = seq
        if progress is not None:
            progress(len(part))
    return chosen


def distinct_rows(chosen: Sequence[int | None]) -> list[int]:
    """The distinct chosen seqs, ascending."""
    seqs: set[int | None] = set(chosen)
    seqs.discard(None)
    return sorted(seqs)  # type: ignore[arg-type]


def fetch_texts(log: OfflineLog, seqs: Sequence[int]) -> Iterator[str]:
    """Pass 2, in SQLite: the rows with these seqs (ascending) as JSON text of
    ``[seq, event_timestamp, features]`` arrays, a chunk at a time."""
    for lo in range(0, len(seqs), CHUNK):
        yield log.conn.execute(FETCH_SQL, (_json_text(seqs[lo:lo + CHUNK]),)).fetchone()[0]


def decode_rows(text: str, ets: dict[int, int], values: dict[int, dict[str, Any]],
                uid: Callable[[int], int] | None = None) -> None:
    """Pass 2, in Python: decode one :func:`fetch_texts` chunk into per-seq event times
    and features; ``uid`` renames seqs (rows of several shards)."""
    for seq, ets_, features in _decode_rows.decode(text):
        if uid is not None:
            seq = uid(seq)
        ets[seq] = ets_
        values[seq] = loads_values(features)


def asof_view(log: OfflineLog, defs: Definitions, view: str, keys: Sequence[str],
              times: Sequence[int], mode: JoinMode = JoinMode(), *,
              upto_seq: int | None = None,
              progress: Callable[[int], None] | None = None) -> ViewMatches:
    """Join one view for labels given as entity keys and times (same length, any order).

    ``upto_seq`` bounds the log to the rows committed when the join started, so every
    view of one training set sees the same log even while the daemon appends.
    """
    chosen = choose_rows(log, defs, view, keys, times, mode, upto_seq=upto_seq,
                         progress=progress)
    ets: dict[int, int] = {}
    values: dict[int, dict[str, Any]] = {}
    for text in fetch_texts(log, distinct_rows(chosen)):
        decode_rows(text, ets, values)
    return ViewMatches(view, chosen, values, ets)
