"""A consistent snapshot of the whole log for outside engines (DuckDB, Polars, Spark).

``export_snapshot(log, defs, out)`` pins one instant: inside one read transaction it
lists the manifest and reads the head rows; the sealed segments are hard-linked into
``out/<view>/`` (copied when ``out`` is on another filesystem: they are immutable, so
either is the file the manifest registered), and each view's head rows are written as
one more sorted Parquet file of the same schema. Then ``out`` gets

- ``manifest.json``: the seq bound and, per view, its files and row count;
- ``snapshot.sql``: one ``CREATE VIEW <view> AS SELECT * FROM read_parquet([...])`` per
  view, for DuckDB, run from inside OUT (its paths are relative to it):
``cd OUT && duckdb -c '.read snapshot.sql'``; ``manifest.json`` lists absolute paths too.

Paths in both are relative to ``out`` (run DuckDB from there, or use the absolute
``read_parquet`` list that ``manifest.json`` also holds).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..definitions import Definitions
from .log import HIGH_SEQ_SQL, OfflineLog
from .manifest import list_segments
from .scan import HEAD_SQL
from .seal import HEAD_META_SQL, head_segment_table
from .segments import read_segment, write_segment


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def export_snapshot(log: OfflineLog, defs: Definitions, out: Path) -> dict[str, Any]:
    """Write the snapshot (see the module doc); returns what ``manifest.json`` holds."""
    out.mkdir(parents=True, exist_ok=True)
    conn = log.conn
    heads: dict[str, tuple[list[tuple], list[tuple]]] = {}
    conn.execute("BEGIN")
    try:
        bound = int(conn.execute(HIGH_SEQ_SQL).fetchone()[0])
        segments = list_segments(conn)
        for view in defs.views:
            heads[view] = (conn.execute(HEAD_SQL.format(extra=""), (view, bound)).fetchall(),
                           conn.execute(HEAD_META_SQL, (view, bound)).fetchall())
        # Linked while the snapshot is held: a compaction cannot have unlinked them yet
        # without the manifest moving; the size check catches a file that is not the one.
        for s in segments:
            src = log.segments_dir / s.file
            read_segment(src, s.bytes, columns=["seq"])  # missing/size errors name the file
            _link_or_copy(src, out / s.file)
    finally:
        conn.execute("COMMIT")
    files: dict[str, list[str]] = {v: [s.file for s in segments if s.view == v] for v in defs.views}
    rows: dict[str, int] = {v: sum(s.rows for s in segments if s.view == v) for v in defs.views}
    for view, (head, meta) in heads.items():
        if not head:
            continue
        rel = f"{view}/head-{bound:012d}.parquet"
        write_segment(out / rel, head_segment_table(head, meta, defs, view))
        files[view].append(rel)
        rows[view] += len(head)
    doc = {"max_seq": bound, "views": {
        v: {"rows": rows[v], "files": files[v],
            "absolute": [str((out / f).resolve()) for f in files[v]]} for v in defs.views}}
    (out / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    sql = []
    for v in defs.views:
        if files[v]:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files[v])
            sql.append(f'CREATE OR REPLACE VIEW "{v}" AS SELECT * FROM read_parquet([{listed}]);')
    (out / "snapshot.sql").write_text("\n".join(sql) + "\n", encoding="utf-8")
    return doc
