"""What a join returns (:class:`ViewMatches`), its options (:class:`JoinMode`), and the
helpers every join shares; the joins themselves are :mod:`.join` and :mod:`.sqlite_join`."""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


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
