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

from collections.abc import Callable, Mapping, Sequence

from ..config import Config
from ..definitions import Definitions
from ..offline.log import open_log
from ..offline.shards import Router, existing_shards, partition_count, shard_name
from .join import JoinMode, ViewMatches
from .parallel_join import Gathered, Task, run_parts


def shard_marks(config: Config) -> dict[str, int]:
    """Each shard's committed high-water seq now: what a join started now may see."""
    out = {}
    for p, path in existing_shards(config).items():
        with open_log(path, readonly=True) as log:
            out[shard_name(p)] = log.max_seq()
    return out


def _renumber(partitions: int, partition: int) -> Callable[[int], int]:
    """Each shard has its own seqs: merged, a row is ``seq * partitions + partition``."""
    return lambda seq: seq * partitions + partition


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
    if partitions is None or not shards:
        return {view: ViewMatches.empty(view, n) for view in keys_by_view}, used
    route = Router(partitions)
    tasks: list[Task] = []
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
                    mode, used[name], None)
            tasks.append(((view, p), idx, args))
    results = {view: Gathered(view, n) for view in keys_by_view}
    for (view, p), idx, part, _ in run_parts(tasks, jobs):
        results[view].add(part, idx, _renumber(partitions, p))
        if progress is not None:
            progress(len(idx))
    return {view: gathered.matches() for view, gathered in results.items()}, used
