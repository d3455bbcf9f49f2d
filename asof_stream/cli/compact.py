"""``asof-stream compact`` (seal the head into segments, merge them) and ``export``."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import Config
from ..offline.log import open_log
from .common import CliError, config_option, handle_errors, main
from .progress import Timer, step_progress
from .render import count


@main.command()
@click.option("--no-seal", is_flag=True, help="Only merge segments; leave the head as it is.")
@click.option("--min-rows", default=1, show_default=True, type=click.IntRange(min=1),
              help="Seal a view's head only when it holds at least this many rows.")
@click.option("--view", "views", multiple=True, help="Only this view (repeatable; default: all).")
@click.option("--verify", is_flag=True, help="Only check every segment's size and sha256.")
@config_option
@handle_errors
def compact(config: Config, no_seal: bool, min_rows: int, views: tuple[str, ...],
            verify: bool) -> None:
    """Seal the offline log's head into Parquet segments and merge full levels."""
    from ..offline.seal import SealStats, verify_segments
    from ..offline.seal import compact as run_compact

    unknown = [v for v in views if v not in config.defs.views]
    if unknown:
        raise CliError(f"--view: unknown view {unknown[0]!r}; known views: "
                       + ", ".join(sorted(config.defs.views)))
    with open_log(config.offline_path) as log:
        if verify:
            problems = verify_segments(log)
            if problems:
                raise CliError(problems[0] + (f" (and {len(problems) - 1} more)"
                                              if len(problems) > 1 else ""))
            click.echo("every segment matches its manifest row")
            return
        todo = list(views) or list(config.defs.views)
        st = SealStats()
        timer = Timer()
        with step_progress("compact", len(todo)) as advance:
            for view in todo:  # view by view, as compact() itself goes: a terminal shows which
                part = run_compact(log, config.defs, seal=not no_seal, min_rows=min_rows,
                                   fanout=config.defs.log.merge_fanout, views=[view])
                st.sealed_rows += part.sealed_rows
                st.segments_written += part.segments_written
                st.merged_segments += part.merged_segments
                st.orphans_removed += part.orphans_removed
                advance(view)
    timer.summary(f"sealed {count(st.sealed_rows, 'row')} into"
                  f" {count(st.segments_written, 'segment')}, {count(st.merged_segments, 'merge')},"
                  f" {count(st.orphans_removed, 'stray file')} removed")


@main.command()
@click.option("--snapshot", "out", required=True, type=click.Path(file_okay=False),
              help="Folder to write the snapshot into (Parquet files, manifest.json, snapshot.sql).")
@config_option
@handle_errors
def export(config: Config, out: str) -> None:
    """Write a consistent snapshot of the offline log for DuckDB, Polars or Spark."""
    from ..offline.export import export_snapshot

    with open_log(config.offline_path) as log:
        doc = export_snapshot(log, config.defs, Path(out))
    total = sum(v["rows"] for v in doc["views"].values())
    click.echo(f"snapshot at seq {doc['max_seq']}: {total} rows in {out} "
               f"(DuckDB: cd {out} && duckdb -c '.read snapshot.sql'; its paths are"
               " relative to that folder)")
