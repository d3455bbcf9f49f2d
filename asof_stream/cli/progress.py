"""Progress bars for long work, on stderr, only when it is a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)


def _enabled(total: int, threshold: int) -> bool:
    return sys.stderr.isatty() and total >= threshold


@contextmanager
def byte_progress(total: int, label: str, threshold: int = 1 << 20) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(nbytes)``; draws a bar for inputs of at least ``threshold`` bytes."""
    if not _enabled(total, threshold):
        yield lambda n: None
        return
    with Progress(TextColumn(label), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def row_progress(total: int, label: str, threshold: int = 50_000) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(nrows)``; draws a bar for at least ``threshold`` rows."""
    if not _enabled(total, threshold):
        yield lambda n: None
        return
    # Redrawn on each advance, not by a thread: the join forks worker processes, and
    # forking while another thread may hold a lock can hang the child.
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True, auto_refresh=False) as bar:
        task = bar.add_task(label, total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)
            bar.refresh()

        yield advance
