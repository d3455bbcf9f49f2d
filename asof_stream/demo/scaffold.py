"""``asof-stream init``: write a runnable example project, never over a user's files."""

from __future__ import annotations

import csv
from pathlib import Path

from .data import CONFIG_TOML, generate, jsonl

#: What ``init`` writes, relative to the project folder.
PROJECT_FILES = (Path("asof.toml"), Path("events") / "sample.jsonl", Path("labels.csv"))


def files_in_the_way(target: Path, *, replace_config: bool = False) -> list[Path]:
    """The files ``init`` would write that already exist (``asof.toml`` is allowed with
    ``replace_config``); anything at one of the paths counts, a folder or a link too."""
    return [target / rel for rel in PROJECT_FILES
            if (target / rel).exists() or (target / rel).is_symlink()
            if not (replace_config and rel == PROJECT_FILES[0] and (target / rel).is_file())]


def write_example_project(target: Path, customers: int = 50, days: int = 30, *,
                          replace_config: bool = False) -> list[Path]:
    """Write asof.toml, events/sample.jsonl and labels.csv; returns the paths written.

    Refuses (FileExistsError naming every one) before writing anything when any of them
    exists; ``replace_config`` lets an existing ``asof.toml`` alone be replaced. The data
    files are opened exclusively, so one made meanwhile is not overwritten either.
    """
    in_the_way = files_in_the_way(target, replace_config=replace_config)
    if in_the_way:
        names = ", ".join(str(p) for p in in_the_way)
        hint = "" if replace_config or in_the_way != [target / PROJECT_FILES[0]] \
            else "; use --force to replace asof.toml"
        raise FileExistsError(f"not overwriting existing file(s): {names}{hint}"
                              " (move them away, or init into another folder)")
    target.mkdir(parents=True, exist_ok=True)
    (target / "events").mkdir(exist_ok=True)
    data = generate(customers=customers, days=days)
    config, events, labels = (target / rel for rel in PROJECT_FILES)
    with events.open("x", encoding="utf-8") as fh:
        fh.writelines(jsonl(data.events))
    with labels.open("x", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["customer_id", "event_timestamp", "churned"])
        w.writeheader()
        w.writerows(data.labels)
    with config.open("w" if replace_config else "x", encoding="utf-8") as fh:
        fh.write(CONFIG_TOML)
    return [config, events, labels]
