"""``asof-stream init``: write a runnable example project."""

from __future__ import annotations

import csv
from pathlib import Path

from .data import CONFIG_TOML, generate, jsonl


def write_example_project(target: Path, customers: int = 50, days: int = 30) -> list[Path]:
    """Write asof.toml, events/sample.jsonl and labels.csv; returns the paths written."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "events").mkdir(exist_ok=True)
    data = generate(customers=customers, days=days)
    config = target / "asof.toml"
    config.write_text(CONFIG_TOML, encoding="utf-8")
    events = target / "events" / "sample.jsonl"
    with events.open("w", encoding="utf-8") as fh:
        fh.writelines(jsonl(data.events))
    labels = target / "labels.csv"
    with labels.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["customer_id", "event_timestamp", "churned"])
        w.writeheader()
        w.writerows(data.labels)
    return [config, events, labels]
