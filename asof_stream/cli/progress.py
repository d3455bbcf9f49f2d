"""Progress bars for long work, on stderr, only when it is a terminal; and the summary
line every long command ends with, whatever stderr is. ``rich`` is imported only when a
bar is drawn (its import is a tenth of a second a command without a terminal need not pay)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click


def _enabled(total: int, threshold: int) -> bool:
    return sys.stderr.isatty() and total >= threshold


@contextmanager
def byte_progress(total: int, label: str, threshold: int = 1 << 20) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(nbytes)``; draws a bar for inputs of at least ``threshold`` bytes."""
    if not _enabled(total, threshold):
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

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
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    # Redrawn on each advance, not by a thread: the join forks worker processes, and
    # forking while another thread may hold a lock can hang the child.
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True, auto_refresh=False) as bar:
        task = bar.add_task(label, total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)
            bar.refresh()

        yield advance


@contextmanager
def step_progress(label: str, total: int | None = None) -> Iterator[Callable[[str], None]]:
    """For work done in steps (views) or in one call: yields ``advance(next_label)``, which
    counts a step done and names the next. On a terminal it draws the label, the steps
    done and the time taken (no refresh thread: the work may fork); elsewhere nothing."""
    if not sys.stderr.isatty():
        yield lambda text: None
        return
    from rich.console import Console
    from rich.progress import (
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True,
                  auto_refresh=False) as bar:
        task = bar.add_task(label, total=total)
        bar.refresh()

        def advance(text: str) -> None:
            bar.update(task, advance=1, description=f"{label} {text}".strip())
            bar.refresh()

        yield advance


class Timer:
    """Seconds since it was made; ``summary`` prints a command's last line with them."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def summary(self, text: str, *, err: bool = False) -> None:
        """``text in 1.2s``: on stdout, or on stderr (``err``) when stdout carries JSON."""
        click.echo(f"{text} in {self.seconds:.1f}s", err=err)
