"""``asof-stream replay``: backfill JSONL files through the commit path."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..config import Config
from ..ingest.replay_file import replay_files
from ..timestamps import TimestampError, cell_to_micros
from .common import CliError, config_option, handle_errors, main
from .progress import byte_progress
from .render import ingest_summary


@main.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--view", default=None, help="Bind every event to this view.")
@click.option("--available-at", default=None,
              help="Set ingest_ts (when the data would have been known) to this time.")
@click.option("--from-start", is_flag=True, help="Ingest again from byte 0, not from the "
              "position reached by an earlier replay of the same file.")
@click.option("--kafka", "kafka_topic", default=None, help="Replay a Kafka topic instead.")
@click.option("--from-offset", type=int, default=None, help="With --kafka: first offset.")
@click.option("--to-offset", type=int, default=None, help="With --kafka: stop before this offset.")
@click.option("--bootstrap", default=None, help="With --kafka: brokers (default: the config's"
              " Kafka source).")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Events per transaction (default: [ingest] batch_size).")
@config_option
@handle_errors
def replay(config: Config, files: tuple[str, ...], view: str | None, available_at: str | None,
           from_start: bool, kafka_topic: str | None, from_offset: int | None,
           to_offset: int | None, bootstrap: str | None, batch_size: int | None) -> None:
    """Ingest JSONL FILES (or a Kafka offset range) through the daemon's commit path."""
    if view is not None and view not in config.defs.views:
        raise CliError(f"--view: unknown view {view!r}; known views: "
                       + ", ".join(sorted(config.defs.views)))
    at = None
    if available_at is not None:
        try:
            at = cell_to_micros(available_at)
        except TimestampError as exc:
            raise CliError(f"--available-at: {exc}") from None
    size = batch_size or config.defs.ingest.batch_size
    started = time.monotonic()
    from ..ingest.runner import tune_gc_for_ingest

    tune_gc_for_ingest()  # this process only ingests from here on
    if kafka_topic is not None:
        if files:
            raise CliError("give either FILES or --kafka, not both")
        if from_offset is None:
            raise CliError("--kafka needs --from-offset")
        from ..ingest.replay_kafka import replay_kafka

        total = replay_kafka(config, kafka_topic, from_offset, to_offset, view=view,
                             available_at=at, bootstrap=bootstrap, batch_size=size)
    else:
        if not files:
            raise CliError("no FILES given (or use --kafka TOPIC --from-offset N)")
        paths = [Path(f) for f in files]
        for p in paths:
            if not p.is_file():
                raise CliError(f"{p}: no such file")
        with byte_progress(sum(p.stat().st_size for p in paths), "replay") as advance:
            total = replay_files(config, paths, view=view, available_at=at, batch_size=size,
                                 from_start=from_start, progress=advance)
    click.echo(ingest_summary(total, time.monotonic() - started))
