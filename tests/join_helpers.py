"""Helpers for the join tests: an in-memory log filled through the real commit path."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from asof_stream.config import Config, parse_config
from asof_stream.events import EventDecoder
from asof_stream.ingest.commit import Committer
from asof_stream.ingest.sources.base import Record
from asof_stream.offline.log import OfflineLog
from asof_stream.timestamps import to_iso
from tests.toml_parts import MERCHANT, PRELUDE

JOIN_TOML = PRELUDE + MERCHANT + """
[entities.pair]
join_keys = { customer_id = "string", merchant_id = "int64" }

[views.cs]
entity = "customer"
ttl = "5s"
features = { x = "int64", s = "string" }

[views.cm]
entity = "customer"
features = { y = "int64", x = "float64" }

[views.mr]
entity = "merchant"
features = { r = "float64", f = "bool" }

[views.pr]
entity = "pair"
ttl = "3s"
features = { z = "int64" }

[services.svc]
features = ["cs:s", "mr"]
"""

S = 1_000_000  # one second in microseconds
BASE = 1_767_225_600 * S  # 2026-01-01T00:00:00Z


def join_config(root: Path | None = None) -> Config:
    return parse_config(JOIN_TOML, (root or Path("/nonexistent")) / "asof.toml")


def memory_log(config: Config) -> tuple[OfflineLog, Committer]:
    log = OfflineLog(":memory:")
    return log, Committer(log, None, EventDecoder(config.defs))


def event(view: str, ts: int, **fields: Any) -> dict[str, Any]:
    """An event dict with its time given in microseconds."""
    return {"view": view, "event_timestamp": to_iso(ts), **fields}


def commit(committer: Committer, events: Iterable[dict[str, Any]],
           available_at: int | None = None) -> None:
    """Commit events as one batch (seq follows the given order); all must be stored."""
    records = [Record(json.dumps(e).encode(), f"t:{i}") for i, e in enumerate(events)]
    result = committer.commit("test", records, available_at=available_at)
    assert result.rejected == 0, result.rejects


def label_rows(rows: Sequence[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """(customer_id, merchant_id, t in microseconds) -> label dicts with ISO times."""
    return [{"customer_id": c, "merchant_id": m, "event_timestamp": to_iso(t), "row": i}
            for i, (c, m, t) in enumerate(rows)]
