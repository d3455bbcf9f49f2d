"""``asof-stream leakage``: how much a naive last-value join would leak from the future."""

from __future__ import annotations

import json

import click

from ..config import Config
from ..definitions import split_refs
from ..offline.log import open_log
from ..training.join import tune_reader
from ..training.labels import labels_from_any
from ..training.leakage import leakage_report
from .common import config_option, handle_errors, main
from .progress import Timer, step_progress
from .render import count
from .training import with_label_options


@main.command("leakage")
@with_label_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--examples", default=5, show_default=True, type=click.IntRange(min=0),
              help="How many leaking label rows to show side by side.")
@config_option
@handle_errors
def leakage(config: Config, labels_path: str, features: tuple[str, ...], timestamp_column: str,
            strict: bool, as_known_at: bool, as_json: bool, examples: int) -> None:
    """Count the label rows a naive last-value join would fill from their future."""
    refs = split_refs(features)
    config.defs.resolve_refs(refs)
    timer = Timer()
    with step_progress(f"leakage: reading {labels_path}") as advance:
        labels = labels_from_any(labels_path, config.defs, timestamp_column=timestamp_column)
        advance(f"joining {count(len(labels), 'label row')} both ways")
        with open_log(config.offline_path, readonly=True) as log:
            tune_reader(log.conn)
            report = leakage_report(log, config.defs, labels, refs, strict=strict,
                                    as_known_at=as_known_at, examples=examples)
    if as_json:
        click.echo(json.dumps(report.to_json(), default=str))
    else:
        click.echo(report.to_text())
    timer.summary(f"leakage: {report.future_cells:,} of {count(report.cells, 'feature cell')}"
                  f" from the future in a naive join ({report.leaking_rows:,} of"
                  f" {count(report.rows, 'label row')}); checked",
                  err=as_json)
