"""Plain-text rendering shared by commands (not a command module)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..ingest.commit import BatchResult


def render_lookup(out: dict[str, dict[str, Any]]) -> list[str]:
    """One aligned line per feature: name, status, event time, value."""
    width = max(len(n) for n in out)
    return [f"{name:<{width}}  {d['status']:<15}  {d['event_timestamp'] or '-':<27}  "
            f"{json.dumps(d['value'])}" for name, d in out.items()]


def ingest_summary(total: BatchResult, seconds: float) -> str:
    """The last line of ``replay`` and ``run --until-caught-up``."""
    return (f"stored {total.stored}, duplicates skipped {total.duplicates}, "
            f"dead letters {total.rejected} in {seconds:.1f}s")


def count(n: int, word: str, plural: str | None = None) -> str:
    """``1 entity``, ``2 entities``, ``0 rows``: a number and its noun agreeing."""
    many = plural or (word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou"
                      else word + "s")
    return f"{n:,} {word if n == 1 else many}"
