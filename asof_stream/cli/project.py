"""``asof-stream init`` (an example project) and ``asof-stream validate``."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import Config
from ..demo.scaffold import write_example_project
from .common import CliError, config_option, handle_errors, main
from .render import count


@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True,
              help="Replace an existing asof.toml (other existing files are never overwritten).")
@handle_errors
def init(directory: str, force: bool) -> None:
    """Write a runnable example project into DIRECTORY."""
    target = Path(directory)
    try:
        written = write_example_project(target, replace_config=force)
    except FileExistsError as exc:
        raise CliError(str(exc)) from None
    for p in written:
        click.echo(f"wrote {p}")
    click.echo(f"next: cd {target} && asof-stream replay events/*.jsonl && "
               "asof-stream training-set --labels labels.csv --features @churn --out train.csv")


@main.command()
@config_option
@handle_errors
def validate(config: Config) -> None:
    """Check the config file; exit non-zero with the problem if it is invalid."""
    d = config.defs
    click.echo(f"{config.path}: ok ({count(len(d.entities), 'entity')},"
               f" {count(len(d.views), 'view')}, {count(len(d.services), 'service')},"
               f" {count(len(d.sources), 'source')})")
