"""Shared CLI plumbing: the root group, ``--config``, and one-line errors."""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sqlite3
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..config import Config, ConfigError, load_config
from ..vocabulary import in_cli_words

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """An error shown as one line on stderr, exit code 1; options named as flags."""

    def show(self, file: Any = None) -> None:
        click.echo(f"asof-stream: error: {in_cli_words(self.format_message())}", err=True)


# Each command's module; it registers the command on ``main`` when imported.
COMMAND_MODULES = {
    "compact": "compact", "dead-letters": "dead_letters", "export": "compact",
    "demo": "demo", "drift": "drift", "features": "features",
    "freshness": "freshness", "init": "project", "leakage": "leakage",
    "materialize": "online", "online": "online", "rebuild": "training", "replay": "replay",
    "retention": "retention", "run": "run", "serve": "serve", "skew": "skew",
    "status": "status", "training-set": "training", "validate": "project",
}


class LazyGroup(click.Group):
    """The root group: a command's module is imported only when that command runs (or
    help lists them), so ``training-set`` does not pay for the daemon's and the
    server's imports (about 0.2 s)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(f"{__package__}.{COMMAND_MODULES[cmd_name]}")
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a reader that closed the pipe (``| head -1``) ends it quietly."""
        try:
            rv = super().invoke(ctx)
            sys.stdout.flush()  # buffered output meets the closed pipe here, not at exit
            return rv
        except BrokenPipeError:
            quiet_closed_pipe()


#: the exit status of a command whose reader went away, as a shell reports one that
#: SIGPIPE ended (128 + 13); nothing is printed
EXIT_CLOSED_PIPE = 141


def quiet_closed_pipe() -> None:
    """Point stdout at /dev/null (so the exit-time flush cannot fail again) and exit 141."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(EXIT_CLOSED_PIPE)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asof-stream")
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Logging verbosity.")
@click.option("--log-json", is_flag=True, help="Log as JSON lines.")
def main(log_level: str, log_json: bool) -> None:
    """asof-stream: exactly-once feature ingest, point-in-time training sets, online serving."""
    from ..logging_setup import setup_logging

    setup_logging(log_level.upper(), json_lines=log_json)


def config_option(fn: F) -> F:
    """``--config PATH`` (default ./asof.toml), loaded and validated into ``config``."""

    @click.option("--config", "config_path", default="asof.toml", show_default=True,
                  type=click.Path(dir_okay=False), help="The asof.toml to use.")
    @functools.wraps(fn)
    def wrapper(*args: Any, config_path: str, **kwargs: Any) -> Any:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            raise CliError(str(exc)) from None
        return fn(*args, config=config, **kwargs)

    return wrapper  # type: ignore[return-value]


def handle_errors(fn: F) -> F:
    """Turn expected failures into one clear line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except (ValueError, OSError, sqlite3.DatabaseError, ConfigError) as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            raise CliError(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


__all__ = ["main", "config_option", "handle_errors", "CliError", "Config", "COMMAND_MODULES"]
