"""The as-of join in several processes: one join (:func:`~asof_stream.join.asof_view`),
the labels split into parts, each part joined by its own process and SQLite connection.

Exact by construction: every label is joined on its own, against the same log bounded
by the same ``upto_seq``, so how the labels are split cannot change what is chosen.
A part is a run of labels in entity order, so each process walks its own stretch of
the index. This process joins a smaller share of the parts itself (it also decodes
every part's rows) while forked workers join the others. A worker sends back its
chosen seqs and SQLite's JSON text of the rows, not decoded rows: pickling decoded
rows cost as much as the probes it saved.

Forking needs no threads in the parent: the progress bars redraw without one.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..definitions import Definitions
from ..events import dumps_values
from ..offline.log import OfflineLog, open_log
from ..offline.manifest import list_segments
from .matches import JoinMode, ViewMatches, tune_reader
from .sqlite_join import choose_rows, decode_rows, distinct_rows, fetch_texts

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


def join_part(path: Path, defs: Definitions, view: str, keys: Sequence[str],
              times: Sequence[int], mode: JoinMode, upto: int,
              among: Sequence[int] | None) -> Part:
    """Both passes of the join for some labels (``among``, in entity order; None: all),
    on a read-only connection of its own: the chosen seqs and the fetched rows' JSON
    text (cheap to send back; decoded with :func:`~asof_stream.join.decode_rows`)."""
    with open_log(path, readonly=True) as log:
        tune_reader(log.conn)
        return part_here(log, defs, view, keys, times, mode, upto, among)


def part_here(log: OfflineLog, defs: Definitions, view: str, keys: Sequence[str],
              times: Sequence[int], mode: JoinMode, upto: int,
              among: Sequence[int] | None = None,
              progress: Callable[[int], None] | None = None) -> Part:
    """:func:`join_part` on a log already open.

    A log with sealed segments of ``view`` (e.g. a partition shard that was compacted)
    is joined over both tiers by the kernel, its chosen rows sent back as the same JSON.
    """
    if log.has_tiers() and list_segments(log.conn, view, upto):
        return _tiered_part(log, defs, view, keys, times, mode, upto, among, progress)
    chosen = choose_rows(log, defs, view, keys, times, mode, upto_seq=upto, progress=progress,
                         among=among)
    return chosen, list(fetch_texts(log, distinct_rows(chosen)))


def _tiered_part(log: OfflineLog, defs: Definitions, view: str, keys: Sequence[str],
                 times: Sequence[int], mode: JoinMode, upto: int, among: Sequence[int] | None,
                 progress: Callable[[int], None] | None) -> Part:
    from .join import kernel_view

    if among is not None:
        keys, times = [keys[i] for i in among], [times[i] for i in among]
    m = kernel_view(log, defs, view, keys, times, mode, upto_seq=upto, progress=progress)
    rows = [[seq, m.times_by_seq[seq], dumps_values(values)] for seq, values in m.by_seq.items()]
    return m.seqs, [json.dumps(rows, allow_nan=True)] if rows else []


class Gathered:
    """One view's join put together from parts: seqs in label order, each row once."""

    def __init__(self, view: str, n: int) -> None:
        self.view = view
        self.seqs: list[int | None] = [None] * n
        self.ets: dict[int, int] = {}
        self.values: dict[int, dict[str, Any]] = {}

    def add(self, part: Part, idx: list[int], uid: Callable[[int], int] | None = None) -> None:
        """One part's result: label ``j`` of the part is label ``idx[j]`` here, and its
        rows' seqs are renamed by ``uid`` (shards)."""
        chosen, texts = part
        for text in texts:
            decode_rows(text, self.ets, self.values, uid)
        if uid is not None:
            chosen = [None if s is None else uid(s) for s in chosen]
        seqs = self.seqs
        for i, seq in zip(idx, chosen, strict=True):
            seqs[i] = seq

    def matches(self) -> ViewMatches:
        return ViewMatches(self.view, self.seqs, self.values, self.ets)


Part = tuple[list[int | None], list[str]]  # chosen seqs, fetched rows' JSON text
Task = tuple[Any, list[int], tuple[Any, ...]]  # (tag, label indices, join_part arguments)


def run_parts(tasks: Sequence[Task], jobs: int,
              inline: Callable[..., Part] | None = None, inline_count: int = 1,
              ) -> Iterator[tuple[Any, list[int], Part, bool]]:
    """Run :func:`join_part` for each task, up to ``jobs`` at once; yields each task's
    tag, indices and result as it finishes, and whether it ran in this process.

    ``inline``, when given, runs the first ``inline_count`` tasks here (with the same
    arguments) while ``jobs - 1`` workers run the rest; with one job, or where processes
    cannot be forked, it runs them all.
    """
    if jobs <= 1 or len(tasks) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for tag, idx, args in tasks:
            yield tag, idx, (inline or join_part)(*args), inline is not None
        return
    global _forked_tasks
    here = tasks[:inline_count] if inline is not None else []
    rest = tasks[len(here):]
    workers = min(len(rest), jobs - 1 if inline is not None else jobs)
    ctx = multiprocessing.get_context("fork")
    # The workers are forked after this, so they find the tasks in memory: only a task's
    # number is sent, not its labels (pickling them cost a quarter of a second at 200k).
    _forked_tasks = rest
    try:
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_run_forked, k): task for k, task in enumerate(rest)}
            for tag, idx, args in here:
                assert inline is not None
                yield tag, idx, inline(*args), True
            for fut in concurrent.futures.as_completed(futures):
                tag, idx, _ = futures[fut]
                yield tag, idx, fut.result(), False
    finally:
        _forked_tasks = []


_forked_tasks: Sequence[Task] = []


def _run_forked(k: int) -> Part:
    return join_part(*_forked_tasks[k][2])


def split(keys: Sequence[str], parts: int) -> list[list[int]]:
    """Label indices in entity order, cut into ``parts`` runs about equal in size.

    An entity on a cut is joined by two parts: each label is joined on its own, so
    that changes nothing, and each run is sorted already for its join.
    """
    order = sorted(range(len(keys)), key=keys.__getitem__)
    size = -(-len(order) // parts) if order else 1
    return [order[lo:lo + size] for lo in range(0, len(order), size)]


# Each view's labels are cut into PARTS_PER_JOB parts per job, so results come back
# while the workers go on; this process joins INLINE_PARTS of them, a smaller share,
# since it also decodes every part's rows.
PARTS_PER_JOB = 3
INLINE_PARTS = 2


def parallel_join(log: OfflineLog, defs: Definitions, keys_by_view: Mapping[str, Sequence[str]],
                  times: Sequence[int], mode: JoinMode, *, upto_seq: int, jobs: int,
                  progress: Callable[[int], None] | None = None) -> dict[str, ViewMatches]:
    """:func:`~asof_stream.join.asof_join` with ``jobs`` processes per view.

    Joined here alone: a log in memory (no file for the workers to open) and a
    connection inside a transaction (the workers could not see its uncommitted rows).
    """
    if str(log.path) == ":memory:" or log.conn.in_transaction:
        jobs = 1
    results = {view: Gathered(view, len(times)) for view in keys_by_view}

    def inline(path: Path, defs: Definitions, view: str, keys: Sequence[str],
               times: Sequence[int], mode: JoinMode, upto: int,
               among: Sequence[int] | None) -> Part:  # on this process's connection
        return part_here(log, defs, view, keys, times, mode, upto, among, progress)

    for view, keys in keys_by_view.items():
        tasks: list[Task] = [(view, idx, (log.path, defs, view, keys, times, mode, upto_seq, idx))
                             for idx in split(keys, PARTS_PER_JOB * jobs)]
        for _, idx, part, here in run_parts(tasks, jobs, inline, INLINE_PARTS):
            results[view].add(part, idx)
            if progress is not None and not here:  # the inline part reports as it goes
                progress(len(idx))
    return {view: gathered.matches() for view, gathered in results.items()}
