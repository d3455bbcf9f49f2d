"""The as-of join in several processes: one join (:func:`~asof_stream.join.asof_view`),
the labels split into parts, each part joined by its own process and SQLite connection.

Exact by construction: every label is joined on its own, against the same log bounded
by the same ``upto_seq``, so how the labels are split cannot change what is chosen.
A part is a set of whole entities (split by a hash of the entity key), so each process
walks its own entities' index pages. This process joins the first part itself while
forked workers join the others. A worker sends back SQLite's JSON text, not decoded
rows: pickling decoded rows cost as much as the probes it saved.

Forking needs no threads in the parent: the progress bars redraw without one.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .definitions import Definitions
from .join import JoinMode, ViewMatches, decode_into, probe_view, tune_reader
from .log import OfflineLog, open_log

# Below this many labels a view is joined in this process: forking and moving the
# results back would cost more than the probes saved.
MIN_PARALLEL_LABELS = 50_000


def available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_jobs(labels: int) -> int:
    """How many processes a join of this many labels should use by default."""
    return 1 if labels < MIN_PARALLEL_LABELS else min(available_cpus(), 8)


def probe_part(path: Path, defs: Definitions, view: str, keys: list[str], times: list[int],
               mode: JoinMode, upto: int) -> list[str]:
    """Probe one part of the labels on a read-only connection of its own; returns
    SQLite's JSON text (cheap to send back; decoded by :func:`join_parts`)."""
    with open_log(path, readonly=True) as log:
        tune_reader(log.conn)
        return list(probe_view(log, defs, view, keys, times, mode, upto_seq=upto))


Task = tuple[Any, list[int], tuple[Any, ...]]  # (tag, label indices, probe_part arguments)


def run_parts(tasks: Sequence[Task], jobs: int,
              inline: Callable[..., list[str]] | None = None,
              ) -> Iterator[tuple[Any, list[int], list[str], bool]]:
    """Run :func:`probe_part` for each task, up to ``jobs`` at once; yields each task's
    tag, indices and texts as it finishes, and whether it ran in this process.

    ``inline``, when given, runs the first task here (with the same arguments) while
    the workers run the rest; with one job it runs them all.
    """
    if jobs <= 1 or len(tasks) <= 1:
        for tag, idx, args in tasks:
            yield tag, idx, (inline or probe_part)(*args), inline is not None
        return
    rest = tasks[1:] if inline is not None else tasks
    workers = min(len(rest), jobs - 1 if inline is not None else jobs)
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(probe_part, *args): (tag, idx) for tag, idx, args in rest}
        if inline is not None:
            tag, idx, args = tasks[0]
            yield tag, idx, inline(*args), True
        for fut in concurrent.futures.as_completed(futures):
            tag, idx = futures[fut]
            yield tag, idx, fut.result(), False


def split(keys: Sequence[str], parts: int) -> list[list[int]]:
    """Label indices in ``parts`` groups of whole entities, about equal in size."""
    groups: list[list[int]] = [[] for _ in range(parts)]
    appends = [g.append for g in groups]
    for i, key in enumerate(keys):
        appends[hash(key) % parts](i)
    return [g for g in groups if g]


def parallel_join(log: OfflineLog, defs: Definitions, keys_by_view: Mapping[str, Sequence[str]],
                  times: Sequence[int], mode: JoinMode, *, upto_seq: int, jobs: int,
                  progress: Callable[[int], None] | None = None) -> dict[str, ViewMatches]:
    """:func:`~asof_stream.join.asof_join` with ``jobs`` processes per view.

    A log in memory has no file for the workers to open: it is joined here alone.
    """
    if str(log.path) == ":memory:":
        jobs = 1
    results = {view: ViewMatches.empty(view, len(times)) for view in keys_by_view}

    def inline(path: Path, defs: Definitions, view: str, keys: list[str], times: list[int],
               mode: JoinMode, upto: int) -> list[str]:  # on this process's connection
        return list(probe_view(log, defs, view, keys, times, mode, upto_seq=upto,
                               progress=progress))

    for view, keys in keys_by_view.items():
        tasks: list[Task] = [(view, idx, (log.path, defs, view, [keys[i] for i in idx],
                                          [times[i] for i in idx], mode, upto_seq))
                             for idx in split(keys, jobs)]
        for _, idx, texts, here in run_parts(tasks, jobs, inline):
            for text in texts:
                decode_into(results[view], text, idx)
            if progress is not None and not here:  # the inline part reports as it goes
                progress(len(idx))
    return results
