"""A training set from a config, end to end: labels in, the join, the file and its sidecar.

The one path behind ``asof-stream training-set``, ``rebuild``, the demo and
:meth:`asof_stream.FeatureStore.get_historical_features`; whether the log is one file
or partition shards is decided here, once.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from ..config import Config
from ..definitions import Definitions
from ..offline.log import open_log
from ..offline.shards import is_sharded, shard_dir
from ..transforms.training import input_pairs
from .columnar import ColumnarResult, columnar_csv
from .label_scan import forget, scanned
from .labels import Labels, labels_from_any
from .matches import JoinMode, tune_reader
from .segment_ahead import forget as forget_groups
from .sidecar import Sidecar, describe, file_digest, retained_since, write_sidecar
from .training_set import (
    TrainingSet,
    build_sharded_training_set,
    build_training_set,
    output_format,
    refuse_replacing_input,
)

if TYPE_CHECKING:
    from ..offline.retention import RetentionRun


class ProgressBar(Protocol):
    """A context manager factory: ``with bar(total, label) as advance: advance(n)``."""

    def __call__(self, total: int, label: str) -> contextlib.AbstractContextManager[
            Callable[[int], None]]: ...


@contextlib.contextmanager
def no_progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


def make_training_set(config: Config, defs: Definitions, labels_path: str, refs: list[str],
                      out: str, *, timestamp_column: str, strict: bool, as_known_at: bool,
                      full_feature_names: bool, upto_seq: int | None = None,
                      shard_marks: dict[str, int] | None = None,
                      jobs: int | None = None, progress_bar: ProgressBar = no_progress) -> str:
    """Read labels, join, write ``out`` and its sidecar; returns the summary line.

    ``upto_seq`` (one log) or ``shard_marks`` (partition shards) bound the log rows seen.
    ``jobs``: join processes (default :func:`~.parallel_join.auto_jobs`).
    """
    started = time.perf_counter()
    try:
        return _make(config, defs, labels_path, refs, out, timestamp_column=timestamp_column,
                     strict=strict, as_known_at=as_known_at,
                     full_feature_names=full_feature_names, upto_seq=upto_seq,
                     shard_marks=shard_marks, jobs=jobs, progress_bar=progress_bar,
                     started=started)
    finally:  # what was read ahead (label_scan, segment_ahead), used or not
        forget(labels_path)
        forget_groups()


def _make(config: Config, defs: Definitions, labels_path: str, refs: list[str], out: str, *,
          timestamp_column: str, strict: bool, as_known_at: bool, full_feature_names: bool,
          upto_seq: int | None, shard_marks: dict[str, int] | None, jobs: int | None,
          progress_bar: ProgressBar, started: float) -> str:
    output_format(out)  # an unknown extension fails before any work
    refuse_replacing_input(out, [labels_path])
    # unknown refs fail before the labels; progress counts the views joined
    views = len({v for v, _ in input_pairs(defs, defs.resolve_refs(refs))})
    # the digest of what is read next, not of what is there at the end
    ahead = scanned(labels_path)
    digest = ahead.digest if ahead is not None else \
        file_digest(labels_path) if os.path.isfile(labels_path) else None
    options = {"strict": strict, "as_known_at": as_known_at,
               "full_feature_names": full_feature_names}
    fast: ColumnarResult | None = None
    if not is_sharded(config) and config.offline_path.exists():
        with open_log(config.offline_path, readonly=True) as log, \
                progress_bar(0, "joining") as advance:
            _check_mark(config, log.max_seq(), upto_seq)
            fast = columnar_csv(log, defs, labels_path, refs, out,
                                timestamp_column=timestamp_column,
                                mode=JoinMode(strict, as_known_at),
                                full_feature_names=full_feature_names, upto_seq=upto_seq,
                                progress=advance)
    ts: TrainingSet | ColumnarResult
    if fast is not None:
        ts, rows = fast, fast.rows
    else:
        forget(labels_path)  # not to hold the scan's memory through the general join
        forget_groups()
        labels = labels_from_any(labels_path, defs, timestamp_column=timestamp_column)
        if jobs is None:
            from .parallel_join import auto_jobs  # not imported by the fast path

            jobs = auto_jobs(len(labels))
        with progress_bar(len(labels) * views, "joining") as advance:
            ts = join_labels(config, defs, labels, refs, progress=advance, upto_seq=upto_seq,
                             shard_marks=shard_marks, jobs=jobs, **options)
        with progress_bar(len(ts), "writing") as advance:
            rows = ts.write(out, progress=advance)
    write_sidecar(out, describe(
        defs, out=out, labels_path=labels_path, label_rows=rows,
        timestamp_column=timestamp_column, refs=refs, pairs=ts.pairs, columns=ts.columns,
        high_water_seq=ts.high_water_seq, shard_high_water=ts.shard_high_water,
        labels_digest=digest, **options))
    return (f"wrote {rows:,} rows x {len(ts.columns)} columns to {out} "
            f"in {time.perf_counter() - started:.2f} s")


def join_labels(config: Config, defs: Definitions, labels: Labels, refs: Sequence[str], *,
                strict: bool = False, as_known_at: bool = False,
                full_feature_names: bool = False, upto_seq: int | None = None,
                shard_marks: Mapping[str, int] | None = None, jobs: int = 1,
                progress: Callable[[int], None] | None = None) -> TrainingSet:
    """The point-in-time join of a config's log (one file or partition shards) onto labels.

    ``upto_seq`` (one log) or ``shard_marks`` (shards) bound the rows seen, as recorded
    in a sidecar; ``jobs`` processes per view (the result does not depend on it).
    """
    options = {"strict": strict, "as_known_at": as_known_at,
               "full_feature_names": full_feature_names}
    if is_sharded(config):
        return build_sharded_training_set(config, defs, labels, refs, progress=progress,
                                          jobs=jobs, marks=shard_marks, **options)
    with open_log(config.offline_path, readonly=True) as log:
        _check_mark(config, log.max_seq(), upto_seq)
        tune_reader(log.conn)
        return build_training_set(log, defs, labels, refs, progress=progress,
                                  upto_seq=upto_seq, jobs=jobs, **options)


def _check_mark(config: Config, max_seq: int, upto_seq: int | None) -> None:
    if upto_seq is not None and max_seq < upto_seq:
        raise ValueError(f"{config.offline_path}: the log ends at seq {max_seq},"
                         f" below the recorded high-water mark {upto_seq}: is it the same log?")


def retention_runs_since(config: Config, spec: Sidecar) -> list[RetentionRun]:
    """The retention runs since ``spec`` was built that deleted rows it saw, per log."""
    if spec.shard_high_water is None:
        with open_log(config.offline_path, readonly=True) as log:
            return retained_since(spec, log.conn, spec.high_water_seq)
    runs = []
    for name, mark in spec.shard_high_water.items():
        path = shard_dir(config) / f"{name}.sqlite"
        if path.exists():
            with open_log(path, readonly=True) as log:
                runs.extend(retained_since(spec, log.conn, mark))
    return runs
