"""``asof-stream demo``: the whole loop on the embedded example, no Kafka needed.

Ingest (the daemon tailing a file a generator appends to), a point-in-time training
set, the leakage report of a naive join, and an online lookup, in a fresh folder.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import click

from ..config import Config
from ..demo.run import DemoError, first_customer, ingest, prepare
from ..feature_store import FeatureStore
from ..ingest.dead_letter_lines import describe_position, line_numbers
from ..ingest.dead_letters import list_dead_letters
from ..monitoring.leakage_html import leakage_pictures, render_leakage_html
from ..offline.log import open_log
from ..timestamps import now_micros, to_iso
from ..training.join import tune_reader
from ..training.labels import labels_from_any
from ..training.leakage import leakage_report
from ..training.pipeline import make_training_set
from .common import CliError, handle_errors, main
from .render import render_lookup

SERVICE = "@churn"
COMPUTED = "customer_spend"


def computed_side_by_side(config: Config, customer: str) -> list[str]:
    """The aggregation read online now, and built by a training set for a label at the
    same instant: one line per feature, both values, and whether they agree."""
    now = now_micros()
    with FeatureStore(config) as store:
        online = store.lookup([COMPUTED], {"customer_id": customer}, now=now)
        offline = store.get_historical_features(
            [{"customer_id": customer, "event_timestamp": to_iso(now)}], [COMPUTED]).to_records()[0]
    width = max(len(n) for n in online)
    lines = [f"{'feature':<{width}}  {'online':>14}  {'training set':>14}"]
    for name, got in online.items():
        same = "equal" if got["value"] == offline[name] else "DIFFERENT"
        lines.append(f"{name:<{width}}  {json.dumps(got['value']):>14}"
                     f"  {json.dumps(offline[name]):>14}  {same}")
    return lines


@main.command()
@click.option("--dir", "folder", default="asof-demo", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the demo project (replaced"
              " if an earlier demo made it).")
@click.option("--customers", default=200, show_default=True, type=click.IntRange(1, 100_000),
              help="Customers in the generated stream.")
@click.option("--days", default=60, show_default=True, type=click.IntRange(2, 3650),
              help="Days of history in the generated stream.")
@handle_errors
def demo(folder: str, customers: int, days: int) -> None:
    """Run the whole loop on the embedded example: ingest, training set, leakage, lookup."""
    started = time.perf_counter()
    root = Path(folder)
    try:
        config, data = prepare(root, customers, days)
    except DemoError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"asof-stream demo in {root}/ ({customers} customers, {days} days of"
               " churn-style events: out of order, some days late)\n")

    click.echo("[1/5] ingest: the daemon tails events/stream.jsonl while a producer appends"
               " to it in bursts")
    try:
        got = asyncio.run(ingest(config, data))
    except DemoError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"      {got.lines:,} lines -> {got.stored:,} events in the log, {got.duplicates}"
               f" repeats skipped (same event_id), {got.dead_letters} dead letters, in"
               f" {got.seconds:.1f} s")
    click.echo("      the dead letters are lines malformed on purpose; each is kept with its"
               " reason, nothing else stopped:")
    with open_log(config.offline_path, readonly=True) as log:
        letters = list_dead_letters(log)
    lines = line_numbers(config, letters)
    for d in letters:
        click.echo(f"        {describe_position(d, lines.get(d.id))}: {d.reason}")
    click.echo("      (list them with: asof-stream dead-letters)\n")

    labels = root / "labels.csv"
    out = root / "train.csv"
    click.echo(f"[2/5] training set: {labels.name} + {SERVICE}, as of each label's time")
    click.echo("      " + make_training_set(
        config, config.defs, str(labels), [SERVICE], str(out), timestamp_column="event_timestamp",
        strict=False, as_known_at=False, full_feature_names=False) + "\n")

    click.echo("[3/5] leakage: what a naive last-value join would have put in the same rows")
    table = labels_from_any(labels, config.defs)
    with open_log(config.offline_path, readonly=True) as log:
        tune_reader(log.conn)
        report = leakage_report(log, config.defs, table, [SERVICE], strict=False,
                                as_known_at=False, examples=3)
        pictures = leakage_pictures(log, config.defs, table, [SERVICE], report)
    (root / "leakage.html").write_text(render_leakage_html(report, pictures), encoding="utf-8")
    for line in report.to_text().splitlines():
        click.echo("      " + line)
    click.echo(f"      the picture of a few entities: {root / 'leakage.html'}")
    click.echo("")

    customer = first_customer(labels)
    click.echo(f"[4/5] online lookup: the freshest {SERVICE} values of customer {customer}")
    with FeatureStore(config) as store:
        values = store.lookup([SERVICE], {"customer_id": customer})
    for line in render_lookup(values):
        click.echo("      " + line)
    click.echo("")

    click.echo(f"[5/5] computed once: {customer}'s {COMPUTED} from raw purchases, online and"
               " in a training set, at the same instant")
    for line in computed_side_by_side(config, customer):
        click.echo("      " + line)
    click.echo(f"\ndone in {time.perf_counter() - started:.1f} s. Next: cd {root} &&"
               " asof-stream status && asof-stream serve   (then open http://127.0.0.1:6566/)")
    click.echo(f"\nOf the {report.cells:,} feature cells a naive last-value join fills for"
               f" these labels, {report.future_cells:,} came from the future; in asof-stream's"
               f" training set ({out.name}), 0 did.")
