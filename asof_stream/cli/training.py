"""``asof-stream training-set``: labels in, point-in-time features joined, a file out."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import click

from ..config import Config
from ..definitions import Definitions
from ..offline.log import open_log
from ..offline.retention import RetentionRun
from ..offline.shards import is_sharded, shard_dir
from ..training.join import tune_reader
from ..training.labels import Labels, labels_from_any
from ..training.parallel_join import auto_jobs
from ..training.sidecar import (
    Sidecar,
    check_labels,
    check_retention,
    describe,
    file_digest,
    read_sidecar,
    retained_since,
    write_sidecar,
)
from ..training.training_set import (
    TrainingSet,
    build_sharded_training_set,
    build_training_set,
    output_format,
    refuse_replacing_input,
)
from .common import config_option, handle_errors, main
from .progress import row_progress


def split_refs(values: tuple[str, ...]) -> list[str]:
    """``--features a,b --features c`` -> ["a", "b", "c"]."""
    return [r.strip() for v in values for r in v.split(",") if r.strip()]


label_options = [
    click.option("--labels", "labels_path", required=True, type=click.Path(dir_okay=False),
                 help="Label table: .csv, .jsonl or .parquet."),
    click.option("--features", "features", required=True, multiple=True,
                 help="REF[,REF...]: view:feature, a whole view, or @service."),
    click.option("--timestamp-column", default="event_timestamp", show_default=True,
                 help="The label column holding each row's time."),
    click.option("--strict", is_flag=True, help="Only feature rows strictly before the label."),
    click.option("--as-known-at", is_flag=True,
                 help="Only feature rows already ingested at the label's time (ingest_ts <= t)."),
]


def with_label_options(fn: Callable[..., None]) -> Callable[..., None]:
    for opt in reversed(label_options):
        fn = opt(fn)
    return fn


def make_training_set(config: Config, defs: Definitions, labels_path: str, refs: list[str],
                      out: str, *, timestamp_column: str, strict: bool, as_known_at: bool,
                      full_feature_names: bool, upto_seq: int | None = None,
                      shard_marks: dict[str, int] | None = None,
                      jobs: int | None = None) -> str:
    """Read labels, join, write ``out`` and its sidecar; returns the summary line.

    ``upto_seq`` (one log) or ``shard_marks`` (partition shards) bound the log rows seen.
    ``jobs``: join processes (default :func:`~asof_stream.join_pool.auto_jobs`).
    """
    started = time.perf_counter()
    output_format(out)  # an unknown extension fails before any work
    refuse_replacing_input(out, [labels_path])
    views = len({v for v, _ in defs.resolve_refs(refs)})  # unknown refs fail before the labels
    # the digest of what is read next, not of what is there at the end
    digest = file_digest(labels_path) if os.path.isfile(labels_path) else None
    labels = labels_from_any(labels_path, defs, timestamp_column=timestamp_column)
    options = {"strict": strict, "as_known_at": as_known_at,
               "full_feature_names": full_feature_names}
    if jobs is None:
        jobs = auto_jobs(len(labels))
    with row_progress(len(labels) * views, "joining") as advance:
        if is_sharded(config):
            ts = build_sharded_training_set(config, defs, labels, refs, progress=advance,
                                            jobs=jobs, marks=shard_marks, **options)
        else:
            ts = _join_one_log(config, defs, labels, refs, advance, upto_seq, jobs, options)
    with row_progress(len(ts), "writing") as advance:
        rows = ts.write(out, progress=advance)
    write_sidecar(out, describe(
        defs, out=out, labels_path=labels_path, label_rows=len(ts),
        timestamp_column=timestamp_column, refs=refs, pairs=ts.pairs, columns=ts.columns,
        high_water_seq=ts.high_water_seq, shard_high_water=ts.shard_high_water,
        labels_digest=digest, **options))
    return (f"wrote {rows:,} rows x {len(ts.columns)} columns to {out} "
            f"in {time.perf_counter() - started:.2f} s")


def _join_one_log(config: Config, defs: Definitions, labels: Labels, refs: list[str],
                  advance: Callable[[int], None], upto_seq: int | None, jobs: int,
                  options: dict[str, bool]) -> TrainingSet:
    with open_log(config.offline_path, readonly=True) as log:
        if upto_seq is not None and log.max_seq() < upto_seq:
            raise ValueError(f"{config.offline_path}: the log ends at seq {log.max_seq()},"
                             f" below the recorded high-water mark {upto_seq}: is it the same log?")
        tune_reader(log.conn)
        return build_training_set(log, defs, labels, refs, progress=advance, upto_seq=upto_seq,
                                  jobs=jobs, **options)


def _retained_since(config: Config, spec: Sidecar) -> list[RetentionRun]:
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


@main.command("training-set")
@with_label_options
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output file: .csv, .jsonl or .parquet (its sidecar: OUT.json).")
@click.option("--full-feature-names", is_flag=True, help="Name features view__feature.")
@click.option("--jobs", type=click.IntRange(min=1),
              help="Join in this many processes (the output is the same). Default: one per "
                   "CPU, at most 8, for 50,000 labels or more; one for fewer.")
@config_option
@handle_errors
def training_set(config: Config, labels_path: str, features: tuple[str, ...], out: str,
                 timestamp_column: str, strict: bool, as_known_at: bool,
                 full_feature_names: bool, jobs: int | None) -> None:
    """Build a point-in-time-correct training set from the offline log.

    Beside OUT it writes OUT.json, what the set was built from (labels, definitions,
    flags, the log's seq high-water mark), for `asof-stream rebuild`.
    """
    click.echo(make_training_set(config, config.defs, labels_path, split_refs(features), out,
                                 timestamp_column=timestamp_column, strict=strict,
                                 as_known_at=as_known_at, full_feature_names=full_feature_names,
                                 jobs=jobs))


@main.command("rebuild")
@click.argument("sidecar", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False),
              help="Where to write it (default: the recorded output path).")
@click.option("--allow-partial", is_flag=True,
              help="Rebuild even when a retention run has since deleted rows the original"
                   " saw (the file then differs).")
@config_option
@handle_errors
def rebuild(config: Config, sidecar: str, out: str | None, allow_partial: bool) -> None:
    """Rebuild a training set exactly from its sidecar (OUT.json).

    Same label file (checked by SHA-256), same definitions and flags, and only the
    log rows that were there when it was first built. Refuses when a later retention
    run deleted some of those rows, unless --allow-partial.
    """
    spec = read_sidecar(sidecar)
    check_labels(spec, spec.labels.path)
    runs = _retained_since(config, spec)
    if allow_partial:
        for run in runs:
            click.echo(f"asof-stream: warning: partial rebuild: {run.describe()}", err=True)
    else:
        check_retention(sidecar, spec, runs)
    flags = spec.flags
    click.echo(make_training_set(config, spec.definitions(), spec.labels.path, spec.resolved,
                                 out or spec.output, timestamp_column=spec.labels.timestamp_column,
                                 strict=flags.strict, as_known_at=flags.as_known_at,
                                 full_feature_names=flags.full_feature_names,
                                 upto_seq=None if spec.shard_high_water is not None
                                 else spec.high_water_seq,
                                 shard_marks=spec.shard_high_water))
