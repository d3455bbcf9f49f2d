"""Transform functions imported from sys.path (definitions built in Python, no asof.toml)."""

from __future__ import annotations

from typing import Any


def echo(cols: dict[str, list[Any]]) -> Any:
    """Returns the result dict given as the first row's request value ``cols``."""
    return cols["cols"][0]
