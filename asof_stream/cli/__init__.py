"""The ``asof-stream`` command line (docs/cli.md).

Each command lives in its own module, imported when the command is used
(:data:`~asof_stream.cli.common.COMMAND_MODULES`); importing it registers the command
on :data:`main`.
"""

from __future__ import annotations

from .common import main

__all__ = ["main"]
