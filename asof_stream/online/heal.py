"""Keeping a shared (Redis) online store in line with the log while processes run.

Redis can restart empty, be flushed, or refuse connections for a while; the log stays
the truth. Every process that writes or serves a Redis store runs :func:`keep_healed`:
once a second (backing off to :data:`MAX_INTERVAL` while Redis is down) a
:class:`Healer` compares the store's applied seq with the log's and

- rebuilds the store (:func:`~.materialize.materialize`) when it was reset: its
  applied seq went backwards, or is 0 while the log has rows;
- otherwise replays the log tail it missed (:func:`~.materialize.catch_up`), which
  also fills in the batches whose Redis write failed while Redis was down.

Both are safe beside live writers and beside a healer in another process: rows go in
by the monotonic rule and the applied seq only advances over contiguous runs. See
docs/online.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..metrics import ONLINE_APPLIED_SEQ, ONLINE_LAG
from ..offline.log import OfflineLog
from ..redaction import redact_url
from .base import OnlineStore, OnlineUnavailable
from .materialize import catch_up, materialize

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between checks while the store answers
MAX_INTERVAL = 5.0  # the longest wait between attempts while it does not


@dataclass
class HealState:
    """What the last check saw (for ``/health`` and the log)."""

    log_seq: int | None = None
    applied_seq: int | None = None
    error: str | None = None
    resets: int = 0  # resets seen and rebuilt so far

    @property
    def lag(self) -> int | None:
        if self.log_seq is None or self.applied_seq is None:
            return None
        return max(0, self.log_seq - self.applied_seq)


class Healer:
    """Checks one online store against one log and heals it; call :meth:`tick` on the
    thread that owns the log's connection."""

    def __init__(self, log_: OfflineLog, online: OnlineStore) -> None:
        self.log = log_
        self.online = online
        self.state = HealState()
        self._last_applied = 0

    def tick(self) -> HealState:
        """One check (and heal, if needed); Redis failures are recorded, not raised."""
        st = self.state
        try:
            applied = self.online.applied_seq()
            high = self.log.max_seq()
            if applied < self._last_applied or (applied == 0 and high > 0):
                st.resets += 1
                log.warning("online store %s was reset (applied seq %d, was %d; log at %d):"
                            " rebuilding it from the log", redact_url(self.online.url),
                            applied, self._last_applied, high)
                materialize(self.log, self.online)
            elif applied < high:
                catch_up(self.log, self.online)
            st.applied_seq = self._last_applied = self.online.applied_seq()
            st.log_seq = self.log.max_seq()
            if st.error is not None:
                log.warning("online store %s answers again; caught up to seq %d",
                            redact_url(self.online.url), st.applied_seq)
            st.error = None
        except OnlineUnavailable as exc:
            if st.error is None:
                log.warning("%s; the log keeps committing, the online store will be caught"
                            " up when it answers", exc)
            st.error = str(exc)
            st.applied_seq = None
        if st.lag is not None:
            ONLINE_LAG.set(st.lag)
            ONLINE_APPLIED_SEQ.set(st.applied_seq or 0)
        return st


async def keep_healed(healer: Healer,
                      run: Callable[[Callable[[], HealState]], Awaitable[HealState]],
                      stop: asyncio.Event) -> None:
    """Run ``healer.tick`` through ``run`` (onto the log's thread) until ``stop`` is set,
    every :data:`INTERVAL` seconds, backing off up to :data:`MAX_INTERVAL` while the
    store does not answer."""
    wait = INTERVAL
    while not stop.is_set():
        try:
            state = await run(healer.tick)
        except Exception as exc:  # a log error: the commit path reports those; keep going
            log.warning("online healer: %r", exc)
            state = HealState(error=repr(exc))
        wait = INTERVAL if state.error is None else min(wait * 2, MAX_INTERVAL)
        try:
            await asyncio.wait_for(stop.wait(), wait)
        except TimeoutError:
            pass
