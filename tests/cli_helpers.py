"""What the CLI tests over a small pushed project share: the project itself, running a
command against its asof.toml in-process, and reading a CSV it wrote."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from asof_stream import FeatureStore
from asof_stream.cli import main
from asof_stream.config import Config


def push_project(config: Config, events: Sequence[dict[str, Any]], labels: str) -> Path:
    """Push ``events`` (all of them must be stored), write ``labels.csv``; the project folder."""
    with FeatureStore(config) as store:
        assert store.push(list(events)).stored == len(events)
    (config.root / "labels.csv").write_text(labels)
    return config.root


def run(project: Path, *args: str) -> Result:
    """``asof-stream <args[0]> --config <project>/asof.toml <args[1:]>`` in this process."""
    return CliRunner().invoke(main, [args[0], "--config", str(project / "asof.toml"), *args[1:]])


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))
