"""The as-of join of several views for one set of labels, in one process or several."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..definitions import Definitions
from ..offline.log import OfflineLog
from .join import JoinMode, ViewMatches, asof_view
from .parallel_join import parallel_join


def asof_join(log: OfflineLog, defs: Definitions, keys_by_view: Mapping[str, Sequence[str]],
              times: Sequence[int], mode: JoinMode = JoinMode(),
              progress: Callable[[int], None] | None = None, *,
              upto_seq: int | None = None, jobs: int = 1) -> dict[str, ViewMatches]:
    """Join several views for the same labels, all against one state of the log.

    ``upto_seq``: only log rows with a seq at most this one (default: all committed now),
    so a training set can be rebuilt later exactly as it was. ``jobs`` > 1 joins each
    view in that many processes (:mod:`.parallel_join`), with the same result.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    upto = log.max_seq() if upto_seq is None else upto_seq
    if jobs > 1:
        return parallel_join(log, defs, keys_by_view, times, mode, upto_seq=upto, jobs=jobs,
                             progress=progress)
    return {view: asof_view(log, defs, view, keys, times, mode, upto_seq=upto, progress=progress)
            for view, keys in keys_by_view.items()}
