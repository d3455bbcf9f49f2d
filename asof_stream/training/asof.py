"""The as-of join of several views for one set of labels, in one process or several."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..definitions import Definitions
from ..offline.log import OfflineLog
from .join import JoinMode, ViewMatches, asof_view


def asof_join(log: OfflineLog, defs: Definitions, keys_by_view: Mapping[str, Sequence[str]],
              times: Sequence[int], mode: JoinMode = JoinMode(),
              progress: Callable[[int], None] | None = None, *,
              upto_seq: int | None = None, jobs: int = 1) -> dict[str, ViewMatches]:
    """Join several views for the same labels, all against one state of the log.

    ``upto_seq``: only log rows with a seq at most this one (default: all committed now),
    so a training set can be rebuilt later exactly as it was. ``jobs`` (processes) is
    accepted and ignored: the vectorized join in one process is faster than the SQLite
    probes were in several (docs/join.md).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    upto = log.max_seq() if upto_seq is None else upto_seq
    return {view: asof_view(log, defs, view, keys, times, mode, upto_seq=upto, progress=progress)
            for view, keys in keys_by_view.items()}
