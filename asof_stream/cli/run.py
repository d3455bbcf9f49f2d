"""``asof-stream run``: the streaming-ingest daemon."""

from __future__ import annotations

import sys
import time

import click

from ..config import Config
from ..ingest.commit import StoreError
from .common import CliError, config_option, handle_errors, main
from .render import ingest_summary


@main.command()
@click.option("--until-caught-up", is_flag=True,
              help="Exit 0 once every source has nothing left to read.")
@config_option
@handle_errors
def run(config: Config, until_caught_up: bool) -> None:
    """Run every source in the config until SIGTERM/SIGINT (then commit and exit 0).

    Prints what it stored, skipped and dead-lettered when it stops.
    Use --log-level INFO (and --log-json) on the root command for per-batch logs.
    """
    from ..daemon import DaemonError, run_blocking
    from ..ingest.commit import BatchResult

    totals = BatchResult()
    started = time.monotonic()
    try:
        code = run_blocking(config, until_caught_up=until_caught_up, totals=totals)
    except (DaemonError, StoreError) as exc:
        raise CliError(str(exc)) from None
    click.echo(ingest_summary(totals, time.monotonic() - started))
    if code:
        click.echo("asof-stream: error: the daemon stopped on a fatal error (see the log);"
                   " committed data is intact", err=True)
        sys.exit(code)
