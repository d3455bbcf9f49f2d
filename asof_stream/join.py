"""The point-in-time (as-of) join: the one implementation behind every training set.

Contract section 5. For a label at time ``t`` and a view ``V``, the chosen log row is,
among the rows of ``V`` with the label's entity key, the one with the greatest
``(event_timestamp, seq)`` such that ``event_timestamp <= t`` (``< t`` when strict),
``t - event_timestamp <= ttl`` when ``V`` has a ttl, and ``ingest_ts <= t`` with
as-known-at. No such row: nulls.

How: a sort-merge in meaning, pushed down into SQLite's index. The labels go into a
temporary table in entity order; one query walks the log's covering index
``(view, entity, event_timestamp, seq, ingest_ts)`` backwards from each label
(``ORDER BY event_timestamp DESC, seq DESC LIMIT 1``) and returns the chosen row's
features, for a chunk of labels at a time, as one JSON array. The log never leaves
SQLite, so memory grows with the labels, not with the log, and consecutive probes
touch neighbouring index pages. Pulling the log into a Python merge was slower, and so
was deduplicating identical probes in Python (a probe costs SQLite a few
microseconds); each chosen row's features are decoded once.
"""

from __future__ import annotations

import gc
import itertools
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgspec

from .definitions import Definitions
from .events import loads_values
from .log import OfflineLog

_temp_ids = itertools.count()


@dataclass(frozen=True, slots=True)
class JoinMode:
    """The options of section 5 that change which row is chosen."""

    strict: bool = False
    as_known_at: bool = False


@dataclass(slots=True)
class ViewMatches:
    """For one view, per label (in label order): the chosen row's seq, time and features.

    ``values[i]`` is None when no row qualifies. Labels that chose the same row share
    one dict: treat it as read-only.
    """

    view: str
    seqs: list[int | None]
    event_ts: list[int | None]
    values: list[dict[str, Any] | None]
    by_seq: dict[int, dict[str, Any]]  # each chosen row's values, once

    @classmethod
    def empty(cls, view: str, n: int) -> ViewMatches:
        """No row chosen yet for any of ``n`` labels."""
        return cls(view, [None] * n, [None] * n, [None] * n, {})

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
    """Settings for a connection of the join's own: temporary tables in memory, and a
    16 MiB page cache (as fast here as 64 MiB: probes in entity order revisit few pages).

    Memory-mapped reads made a 1M-row join about 10% faster, but counted the touched
    log file in the process's memory, which should grow with the labels, not the log.
    """
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -16384")


def probe_sql(table: str, *, ttl: int | None, mode: JoinMode) -> str:
    """The join query for the labels at positions ``(:lo, :hi]`` of the label table.

    It returns one JSON array of ``[label index, seq, event_timestamp, features text]``
    for the labels that have a row: decoding it in one call is faster than fetching
    a SQLite row per label.
    """
    cond = ["view = :view", "entity = p.entity", "seq <= :upto",
            "event_timestamp < p.t" if mode.strict else "event_timestamp <= p.t"]
    if ttl is not None:
        cond.append("event_timestamp >= p.t - :ttl")
    if mode.as_known_at:
        cond.append("ingest_ts <= p.t")
    choose = ("SELECT seq FROM log WHERE " + " AND ".join(cond)
              + " ORDER BY event_timestamp DESC, seq DESC LIMIT 1")
    return ("SELECT json_group_array(json_array(p.i, l.seq, l.event_timestamp, l.features))"
            f" FROM {table} AS p JOIN log AS l ON l.seq = ({choose})"
            " WHERE p.pos > :lo AND p.pos <= :hi")


CHUNK = 32_768  # labels per query: bounds the JSON text and paces the progress bar
_decode_matches = msgspec.json.Decoder(list[tuple[int, int, int, str]])


def probe_view(log: OfflineLog, defs: Definitions, view: str, keys: Sequence[str],
               times: Sequence[int], mode: JoinMode = JoinMode(), *,
               upto_seq: int | None = None,
               progress: Callable[[int], None] | None = None) -> Iterator[str]:
    """The join of one view as SQLite returns it: per chunk of labels, the JSON text
    of :func:`probe_sql` (label indices are positions in ``keys``). See :func:`asof_view`.
    """
    if len(keys) != len(times):
        raise ValueError("keys and times differ in length")
    n = len(keys)
    ttl = defs.views[view].ttl
    if upto_seq is None:
        upto_seq = log.max_seq()
    conn = log.conn
    table = f"temp.asof_labels_{next(_temp_ids)}"
    # Labels in entity order: consecutive probes walk neighbouring index pages.
    order = sorted(range(n), key=keys.__getitem__)
    conn.execute(f"CREATE TABLE {table} (pos INTEGER PRIMARY KEY, i INTEGER NOT NULL,"
                 " entity TEXT NOT NULL, t INTEGER NOT NULL)")
    try:
        own = not conn.in_transaction
        if own:  # one transaction for the inserts, not one per row
            conn.execute("BEGIN")
        try:
            conn.executemany(f"INSERT INTO {table} (pos, i, entity, t) VALUES (?, ?, ?, ?)",
                             zip(range(1, n + 1), order, map(keys.__getitem__, order),
                                 map(times.__getitem__, order), strict=True))
        finally:
            if own:
                conn.execute("COMMIT")
        del order
        sql = probe_sql(table, ttl=ttl, mode=mode)
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            yield conn.execute(sql, {"view": view, "upto": upto_seq, "ttl": ttl, "lo": lo,
                                     "hi": hi}).fetchone()[0]
            if progress is not None:
                progress(hi - lo)
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def decode_into(matches: ViewMatches, text: str, idx: Sequence[int] | None = None,
                uid: Callable[[int], int] | None = None) -> None:
    """Add one chunk of :func:`probe_view` output to ``matches``; ``idx`` maps the
    chunk's label indices to those of ``matches`` and ``uid`` renames row ids (for
    joins done in parts). Each chosen row's features are decoded once."""
    seqs, found_ts, found, decoded = matches.seqs, matches.event_ts, matches.values, \
        matches.by_seq
    for i, seq, ets, features in _decode_matches.decode(text):
        if idx is not None:
            i = idx[i]
        if uid is not None:
            seq = uid(seq)
        values = decoded.get(seq)
        if values is None:
            values = decoded[seq] = loads_values(features)
        seqs[i] = seq
        found_ts[i] = ets
        found[i] = values


def asof_view(log: OfflineLog, defs: Definitions, view: str, keys: Sequence[str],
              times: Sequence[int], mode: JoinMode = JoinMode(), *,
              upto_seq: int | None = None,
              progress: Callable[[int], None] | None = None) -> ViewMatches:
    """Join one view for labels given as entity keys and times (same length, any order).

    ``upto_seq`` bounds the log to the rows committed when the join started, so every
    view of one training set sees the same log even while the daemon appends.
    """
    matches = ViewMatches.empty(view, len(keys))
    for text in probe_view(log, defs, view, keys, times, mode, upto_seq=upto_seq,
                           progress=progress):
        decode_into(matches, text)
    return matches


def asof_join(log: OfflineLog, defs: Definitions, keys_by_view: Mapping[str, Sequence[str]],
              times: Sequence[int], mode: JoinMode = JoinMode(),
              progress: Callable[[int], None] | None = None, *,
              upto_seq: int | None = None, jobs: int = 1) -> dict[str, ViewMatches]:
    """Join several views for the same labels, all against one state of the log.

    ``upto_seq``: only log rows with a seq at most this one (default: all committed now),
    so a training set can be rebuilt later exactly as it was. ``jobs`` > 1 joins each
    view in that many processes (:mod:`asof_stream.join_pool`), with the same result.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    upto = log.max_seq() if upto_seq is None else upto_seq
    if jobs > 1:
        from .join_pool import parallel_join

        return parallel_join(log, defs, keys_by_view, times, mode, upto_seq=upto, jobs=jobs,
                             progress=progress)
    return {view: asof_view(log, defs, view, keys, times, mode, upto_seq=upto, progress=progress)
            for view, keys in keys_by_view.items()}
