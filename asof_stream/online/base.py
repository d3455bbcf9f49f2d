"""The online store interface, the monotonic rule, and healing from the log.

Key ``(view, entity)``; a candidate replaces the stored row only if its
``(event_timestamp, seq)`` is greater (docs/online.md). Every backend records the
highest log ``seq`` it has applied, so :func:`catch_up` can replay the log tail it
missed (a crash between the log commit and a Redis write, say).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ..offline.log import LogRow

if TYPE_CHECKING:
    from .aggread import WindowRows
    from .aggstate import AggBatch, AggPlan
    from .aggsummary import Summary


class OnlineUnavailable(ConnectionError):
    """The online store cannot be reached (Redis down, refusing, out of memory).

    The log stays the source of truth: writers keep committing it, and the healer
    (:mod:`asof_stream.online.heal`) catches the store up when it answers again.
    """


class OnlineRow(NamedTuple):
    """The stored latest row of one (view, entity).

    A named tuple, in the order the SQLite store's upsert takes its parameters, so a
    batch of them is handed to ``executemany`` as it is (the commit path and
    ``materialize`` make tens of thousands at a time).
    """

    view: str
    entity: str
    event_ts: int
    seq: int
    ingest_ts: int
    features: str  # JSON object text


class OnlineStore(Protocol):
    """What the committer, materialize and readers need from a backend."""

    url: str
    #: True when writes join the log's SQLite transaction (the store is ATTACHed).
    transactional: bool
    #: What is kept for aggregations (set from the definitions when the stores open;
    #: None: no aggregation state is kept).
    agg_plan: AggPlan | None
    #: True when the store folds the rows of no-window aggregations into running
    #: summaries (:mod:`.aggsummary`); False: it keeps every row of their views.
    folds_aggregations: bool

    def attach_to(self, conn: sqlite3.Connection) -> None:
        """Prepare the log's connection for :meth:`write_in_transaction`."""

    def write_in_transaction(self, conn: sqlite3.Connection, rows: list[OnlineRow],
                             high_seq: int, agg: AggBatch | None = None) -> None:
        """Apply rows (and aggregation rows) inside the log's open transaction
        (transactional stores only)."""

    def apply(self, rows: list[OnlineRow], high_seq: int, low_seq: int | None = None,
              agg: AggBatch | None = None) -> None:
        """Apply rows (and aggregation rows) on its own, then record ``high_seq`` as applied.

        ``low_seq``: the first log seq of the batch, so a backend written by several
        processes can tell a gap (an earlier batch not applied yet) from a run; None
        when the rows follow on from what is applied (a replay of the log tail).
        """

    def applied_seq(self) -> int:
        """Every log row with a seq at most this one has been applied."""

    def get(self, view: str, entities: list[str]) -> list[OnlineRow | None]:
        """The stored rows for these entities of one view (None where absent)."""

    def count(self, view: str) -> int:
        """How many entities of the view are stored."""

    def entries(self, view: str | None = None) -> Iterable[OnlineRow]:
        """Every stored row (for audits and tests)."""

    def agg_rows(self, view: str, entities: list[str], lo: int | None,
                 hi: int) -> list[list[tuple[int, int, str]]]:
        """Per entity, the aggregation rows (event_timestamp, seq, features JSON) of
        ``view`` with ``lo < event_timestamp <= hi``, in (event_timestamp, seq) order."""

    def agg_summaries(self, view: str, entities: list[str]) -> list[Summary | None]:
        """Per entity, the running summary of its folded rows of ``view`` (None: none);
        see :mod:`.aggsummary`."""

    def agg_windows(self, view: str, entities: list[str], lo: int | None,
                    hi: int) -> list[WindowRows]:
        """Per entity, its aggregation rows of ``view`` with ``lo < event_timestamp <=
        hi`` as the :class:`~.aggread.WindowRows` a read evaluates its features on."""

    def agg_state(self, view: str, entities: list[str], lo: int | None, hi: int,
                  summaries: bool) -> list[tuple[WindowRows, Summary | None]]:
        """Per entity, its :meth:`agg_windows` rows and (``summaries``) its
        :meth:`agg_summaries` summary, read as of one instant (a fold in between would
        count a row twice or not at all)."""

    def agg_fingerprint(self) -> int:
        """The fingerprint of the aggregation plan the state was last rebuilt for (0:
        none)."""

    def replace_all(self, rows: Iterable[OnlineRow], high_seq: int,
                    agg: AggBatch | None = None) -> None:
        """Drop everything and store exactly these rows and aggregation rows (materialize)."""

    def close(self) -> None: ...


def newest_per_key(rows: Iterable[OnlineRow]) -> list[OnlineRow]:
    """Reduce candidates to the greatest (event_timestamp, seq) per key, before writing."""
    best: dict[tuple[str, str], OnlineRow] = {}
    for r in rows:
        k = (r.view, r.entity)
        cur = best.get(k)
        if cur is None or (r.event_ts, r.seq) > (cur.event_ts, cur.seq):
            best[k] = r
    return list(best.values())


def from_log_row(r: LogRow) -> OnlineRow:
    return OnlineRow(r.view, r.entity, r.event_ts, r.seq, r.ingest_ts, r.features)
