"""``asof-stream training-set``: labels in, point-in-time features joined, a file out."""

from __future__ import annotations

import time
from collections.abc import Callable

import click

from ..config import Config
from ..join import tune_reader
from ..labels import labels_from_any
from ..log import open_log
from ..training import build_training_set, output_format
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


@main.command("training-set")
@with_label_options
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output file: .csv, .jsonl or .parquet.")
@click.option("--full-feature-names", is_flag=True, help="Name features view__feature.")
@config_option
@handle_errors
def training_set(config: Config, labels_path: str, features: tuple[str, ...], out: str,
                 timestamp_column: str, strict: bool, as_known_at: bool,
                 full_feature_names: bool) -> None:
    """Build a point-in-time-correct training set from the offline log."""
    started = time.perf_counter()
    output_format(out)  # an unknown extension fails before any work
    refs = split_refs(features)
    config.defs.resolve_refs(refs)  # unknown refs fail before reading the labels
    labels = labels_from_any(labels_path, config.defs, timestamp_column=timestamp_column)
    with open_log(config.offline_path, readonly=True) as log:
        tune_reader(log.conn)
        views = len({v for v, _ in config.defs.resolve_refs(refs)})
        with row_progress(len(labels) * views, "joining") as advance:
            ts = build_training_set(log, config.defs, labels, refs, strict=strict,
                                    as_known_at=as_known_at,
                                    full_feature_names=full_feature_names, progress=advance)
    with row_progress(len(ts), "writing") as advance:
        rows = ts.write(out, progress=advance)
    click.echo(f"wrote {rows:,} rows x {len(ts.columns)} columns to {out} "
               f"in {time.perf_counter() - started:.2f} s")
