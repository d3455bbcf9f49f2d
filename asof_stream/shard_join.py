"""The as-of join over partition shards: route each label to its entity's shard, join
there with the one join (:func:`~asof_stream.join.asof_view`), merge back in label order.

Exact, not approximate: producers key events by entity, so every row an entity has is
in the shard ``murmur2(entity key) % partitions`` (:mod:`asof_stream.shards`), and the
rows the join may choose for a label are all in that one shard. Shards are joined in
parallel processes (``jobs``), one task per (view, shard).

Each shard has its own ``seq`` space. Merged results number a chosen row
``seq * partitions + partition`` so rows of different shards never share an id.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import Config
from .definitions import Definitions
from .join import JoinMode, ViewMatches, asof_view, tune_reader
from .log import open_log
from .shards import Router, existing_shards, partition_count, shard_name


def shard_marks(config: Config) -> dict[str, int]:
    """Each shard's committed high-water seq now: what a join started now may see."""
    out = {}
    for p, path in existing_shards(config).items():
        with open_log(path, readonly=True) as log:
            out[shard_name(p)] = log.max_seq()
    return out


def _join_part(path: Path, defs: Definitions, view: str, keys: list[str], times: list[int],
               mode: JoinMode, upto: int) -> ViewMatches:
    with open_log(path, readonly=True) as log:
        tune_reader(log.conn)
        return asof_view(log, defs, view, keys, times, mode, upto_seq=upto)


def sharded_join(config: Config, defs: Definitions, keys_by_view: Mapping[str, Sequence[str]],
                 times: Sequence[int], mode: JoinMode = JoinMode(), *, jobs: int = 1,
                 marks: Mapping[str, int] | None = None,
                 progress: Callable[[int], None] | None = None,
                 ) -> tuple[dict[str, ViewMatches], dict[str, int]]:
    """Join several views for the same labels over the shards; also returns the marks used.

    ``marks``: per shard, the highest seq to see (default: what is committed now).
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    n = len(times)
    shards = existing_shards(config)
    used = dict(shard_marks(config) if marks is None else marks)
    partitions = partition_count(config)
    empty = {view: ViewMatches(view, [None] * n, [None] * n, [None] * n, {})
             for view in keys_by_view}
    if partitions is None or not shards:
        return empty, used
    route = Router(partitions)
    tasks: list[tuple[str, int, list[int], tuple[Any, ...]]] = []
    for view, keys in keys_by_view.items():
        groups: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(route(key), []).append(i)
        for p, idx in sorted(groups.items()):
            name = shard_name(p)
            if p not in shards or name not in used:
                if progress is not None:
                    progress(len(idx))  # no shard yet (or not at the recorded time): nulls
                continue
            args = (shards[p], defs, view, [keys[i] for i in idx], [times[i] for i in idx],
                    mode, used[name])
            tasks.append((view, p, idx, args))
    results = empty
    if jobs == 1 or len(tasks) <= 1:
        for view, p, idx, args in tasks:
            _merge(results[view], _join_part(*args), idx, p, partitions)
            if progress is not None:
                progress(len(idx))
        return results, used
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_join_part, *args): (view, p, idx)
                   for view, p, idx, args in tasks}
        for fut in concurrent.futures.as_completed(futures):
            view, p, idx = futures[fut]
            _merge(results[view], fut.result(), idx, p, partitions)
            if progress is not None:
                progress(len(idx))
    return results, used


def _merge(into: ViewMatches, part: ViewMatches, idx: list[int], partition: int,
           partitions: int) -> None:
    """Scatter one shard's matches into the label-order result, with unique row ids."""
    for j, i in enumerate(idx):
        seq = part.seqs[j]
        if seq is None:
            continue
        uid = seq * partitions + partition
        into.seqs[i] = uid
        into.event_ts[i] = part.event_ts[j]
        into.values[i] = part.values[j]
        into.by_seq[uid] = part.by_seq[seq]
