"""``asof-stream leakage``: how much a naive last-value join would leak from the future."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import Config
from ..definitions import split_refs
from ..monitoring.leakage_html import leakage_pictures, render_leakage_html
from ..offline.log import open_log
from ..offline.shards import is_sharded
from ..training.join import tune_reader
from ..training.labels import labels_from_any
from ..training.leakage import leakage_report
from ..training.sharded_leakage import sharded_leakage_report
from .common import CliError, config_option, handle_errors, main
from .progress import Timer, step_progress
from .render import count
from .training import with_label_options


@main.command("leakage")
@with_label_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--examples", default=5, show_default=True, type=click.IntRange(min=0),
              help="How many leaking label rows to show side by side.")
@click.option("--html", "html_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the report as an HTML page with a timeline picture of a few "
                   "entities here [default: leakage.html beside the labels file].")
@click.option("--no-html", is_flag=True, help="Do not write the HTML page.")
@config_option
@handle_errors
def leakage(config: Config, labels_path: str, features: tuple[str, ...], timestamp_column: str,
            strict: bool, as_known_at: bool, as_json: bool, examples: int, html_path: str,
            no_html: bool) -> None:
    """Count the label rows a naive last-value join would fill from their future."""
    out = None if no_html else Path(html_path) if html_path else \
        Path(labels_path).resolve().parent / "leakage.html"
    if out is not None and out.exists() and out.resolve() == Path(labels_path).resolve():
        raise CliError(f"--html {out}: that is the labels file; name another file")
    refs = split_refs(features)
    config.defs.resolve_refs(refs)
    timer = Timer()
    with step_progress(f"leakage: reading {labels_path}") as advance:
        labels = labels_from_any(labels_path, config.defs, timestamp_column=timestamp_column)
        advance(f"joining {count(len(labels), 'label row')} both ways")
        if is_sharded(config):  # each label in its entity's shard; no timeline picture
            try:
                report = sharded_leakage_report(config, config.defs, labels, refs,
                                                strict=strict, as_known_at=as_known_at,
                                                examples=examples)
            except ValueError as exc:
                raise CliError(str(exc)) from None
            pictures = []
        else:
            with open_log(config.offline_path, readonly=True) as log:
                tune_reader(log.conn)
                report = leakage_report(log, config.defs, labels, refs, strict=strict,
                                        as_known_at=as_known_at, examples=examples)
                pictures = [] if out is None else leakage_pictures(
                    log, config.defs, labels, refs, report, strict=strict,
                    as_known_at=as_known_at)
    if out is not None:
        tmp = out.with_name(out.name + ".tmp")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(render_leakage_html(report, pictures), encoding="utf-8")
            tmp.replace(out)
        except OSError as exc:
            raise CliError(f"cannot write the HTML report {out}: {exc.strerror}; "
                           "name another file with --html or pass --no-html") from None
    if as_json:
        click.echo(json.dumps(report.to_json(), default=str))
    else:
        click.echo(report.to_text())
    if out is not None and not as_json:  # JSON output stays one object
        click.echo(f"wrote the HTML report to {out}")
    timer.summary(f"leakage: {report.future_cells:,} of {count(report.cells, 'feature cell')}"
                  f" from the future in a naive join ({report.leaking_rows:,} of"
                  f" {count(report.rows, 'label row')}); checked",
                  err=as_json)
