"""``asof-stream training-set``: labels in, point-in-time features joined, a file out.

The label file is read in a thread (:func:`~asof_stream.training.label_scan.scan_ahead`)
while the config is loaded and the join's modules imported, which hold the GIL; so the
training modules (and pydantic's) are imported in the commands, not here.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..training.label_scan import forget as forget_labels
from ..training.label_scan import scan_ahead
from ..training.segment_ahead import forget as forget_groups
from ..training.segment_ahead import read_ahead
from .common import config_option, handle_errors, main
from .progress import row_progress

if TYPE_CHECKING:
    from ..config import Config

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


def use_jemalloc() -> None:
    """Arrow's allocations in jemalloc rather than its default mimalloc, unless
    ``ARROW_DEFAULT_MEMORY_POOL`` names one: reading a 1M-row segment measured 35 MB less
    peak memory and a third less time in fresh pages (mimalloc asks for huge pages, which
    the kernel zeroes, or compacts memory for, on first touch)."""
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    import pyarrow as pa

    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without jemalloc
        pass


def one_malloc_arena() -> None:
    """One glibc malloc arena for the threads to come, unless ``MALLOC_ARENA_MAX`` says
    otherwise: glibc gives each thread an arena of its own, which keeps the memory its
    thread freed (the label scan's and the row-group reads' numpy temporaries), and the
    reads ahead then raised the peak by about 20 MB at 1M rows x 200k labels. A no-op
    without glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def with_label_options(fn: Callable[..., None]) -> Callable[..., None]:
    for opt in reversed(label_options):
        fn = opt(fn)
    return fn


def reading_labels_ahead(fn: Callable[..., None]) -> Callable[..., None]:
    """Start reading a CSV label file (``labels_path``) and the first row groups of the
    first view's segment for a CSV output, the fast path's case, before ``fn`` (the
    config's loading) runs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        labels, out = kwargs.get("labels_path"), kwargs.get("out")
        if not (isinstance(labels, str) and isinstance(out, str) and
                labels.lower().endswith(".csv") and out.lower().endswith(".csv")):
            fn(*args, **kwargs)
            return
        use_jemalloc()  # before Arrow allocates
        one_malloc_arena()  # before the threads start
        scan_ahead(labels, kwargs.get("timestamp_column") or "event_timestamp")
        refs = [r for v in kwargs.get("features") or () for r in v.split(",") if r.strip()]
        read_ahead(kwargs.get("config_path") or "asof.toml", refs,
                   as_known_at=bool(kwargs.get("as_known_at")))
        try:
            fn(*args, **kwargs)
        finally:  # a bad config or reference ends the command before the join forgets them
            forget_labels(labels)
            forget_groups()

    return wrapper


@main.command("training-set")
@with_label_options
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output file: .csv, .jsonl or .parquet (its sidecar: OUT.json).")
@click.option("--full-feature-names", is_flag=True, help="Name features view__feature.")
@click.option("--jobs", type=click.IntRange(min=1),
              help="Join in this many processes (the output is the same). Default: one per "
                   "CPU, at most 8, for 50,000 labels or more; one for fewer.")
@reading_labels_ahead
@config_option
@handle_errors
def training_set(config: Config, labels_path: str, features: tuple[str, ...], out: str,
                 timestamp_column: str, strict: bool, as_known_at: bool,
                 full_feature_names: bool, jobs: int | None) -> None:
    """Build a point-in-time-correct training set from the offline log.

    Beside OUT it writes OUT.json, what the set was built from (labels, definitions,
    flags, the log's seq high-water mark), for `asof-stream rebuild`.
    """
    from ..definitions import split_refs
    from ..training.pipeline import make_training_set

    use_jemalloc()
    click.echo(make_training_set(config, config.defs, labels_path, split_refs(features), out,
                                 progress_bar=row_progress,
                                 timestamp_column=timestamp_column, strict=strict,
                                 as_known_at=as_known_at, full_feature_names=full_feature_names,
                                 jobs=jobs))


@main.command("rebuild")
@click.argument("sidecar", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False),
              help="Where to write it (default: the recorded output path).")
@click.option("--allow-partial", is_flag=True,
              help="Rebuild even when a retention run has since deleted rows the original"
                   " saw, or a transform's module changed (the file then differs).")
@config_option
@handle_errors
def rebuild(config: Config, sidecar: str, out: str | None, allow_partial: bool) -> None:
    """Rebuild a training set exactly from its sidecar (OUT.json).

    Same label file (checked by SHA-256), same definitions and flags, and only the
    log rows that were there when it was first built. Refuses when a later retention
    run deleted some of those rows, unless --allow-partial.
    """
    from ..training.pipeline import make_training_set, retention_runs_since
    from ..training.sidecar import (
        SidecarError,
        changed_transforms,
        check_labels,
        check_retention,
        read_sidecar,
    )

    use_jemalloc()
    spec = read_sidecar(sidecar)
    check_labels(spec, spec.labels.path)
    runs = retention_runs_since(config, spec)
    if allow_partial:
        for run in runs:
            click.echo(f"asof-stream: warning: partial rebuild: {run.describe()}", err=True)
    else:
        check_retention(sidecar, spec, runs)
    changed = changed_transforms(spec, config.root)
    if changed and not allow_partial:
        raise SidecarError(f"{sidecar}: cannot rebuild exactly: {changed[0]}, so the file may"
                           " differ; pass --allow-partial to rebuild with the current code")
    for line in changed:
        click.echo(f"asof-stream: warning: partial rebuild: {line}", err=True)
    flags = spec.flags
    click.echo(make_training_set(config, spec.definitions(config.root), spec.labels.path,
                                 spec.resolved,
                                 out or spec.output, progress_bar=row_progress,
                                 timestamp_column=spec.labels.timestamp_column,
                                 strict=flags.strict, as_known_at=flags.as_known_at,
                                 full_feature_names=flags.full_feature_names,
                                 upto_seq=None if spec.shard_high_water is not None
                                 else spec.high_water_seq,
                                 shard_marks=spec.shard_high_water))
