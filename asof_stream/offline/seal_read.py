"""Reading a view's head rows for a seal, as one Arrow table of the segment schema.

The fast road keeps the rows out of Python: SQLite writes each row as a JSON line
(``json_object``, the features JSON nested as it is) and Arrow's JSON reader parses the
lines into typed columns (about 3x less CPU than fetching tuples and decoding every
feature JSON text in Python, and no per-row Python objects in memory). Where it cannot
serve, the rows are fetched as tuples and built in Python (:func:`head_segment_table`):
a view with a float feature that allows NaN/infinities (the log writes them as
``NaN``/``Infinity``, which SQLite's JSON functions refuse), a chunk whose JSON Arrow
refuses, or a SQLite without the JSON functions. Both give the same table.
"""

from __future__ import annotations

import logging
import sqlite3

import pyarrow as pa
import pyarrow.json as pa_json

from ..definitions import Definitions
from .scan import head_table
from .segments import ARROW_TYPES, META_COLUMNS, column_name, view_schema

log = logging.getLogger(__name__)

#: A view's head rows in seq order, every column: a range scan of the table (``+view``
#: keeps SQLite off the as-of index, whose order would cost a row lookup per row); the
#: segment's order is then made by Arrow.
HEAD_SEAL_SQL = ("SELECT seq, entity, event_timestamp, ingest_ts, features, event_id, source,"
                 " position, def_version FROM log WHERE seq <= ? AND +view = ? ORDER BY seq")
#: The same rows as JSON lines, a chunk of at most ``?`` rows after a seq; with the chunk's
#: last seq and its row count.
HEAD_SEAL_JSON_SQL = (
    "SELECT CAST(group_concat(line, char(10)) AS BLOB), max(seq), count(*) FROM ("
    " SELECT seq, json_object('seq', seq, 'entity', entity, 'event_timestamp', event_timestamp,"
    " 'ingest_ts', ingest_ts, 'f', json(features), 'event_id', event_id, 'source', source,"
    " 'position', position, 'def_version', def_version) AS line"
    " FROM log WHERE seq > ? AND seq <= ? AND +view = ? ORDER BY seq LIMIT ?)")
#: rows per JSON chunk (a chunk is one string in SQLite, well below its length limit)
CHUNK_ROWS = 100_000


def head_segment_table(rows: list[tuple], meta: list[tuple], defs: Definitions,
                       view: str) -> pa.Table:
    """Head rows of ``view`` (seq, entity, event_timestamp, ingest_ts, features) and their
    (seq, event_id, source, position, def_version) rows, in the same order (the rows'
    order), as one table of the view's segment schema."""
    spec = defs.views[view]
    typed = head_table(rows, defs, view, spec.feature_names)
    _, eids, sources, positions, versions = zip(*meta, strict=True)
    schema = view_schema(spec)
    cols = {**{n: typed.column(n) for n in typed.column_names},
            "event_id": pa.array(eids, pa.string()), "source": pa.array(sources, pa.string()),
            "position": pa.array(positions, pa.string()),
            "def_version": pa.array(versions, pa.string())}
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def read_head_for_seal(conn: sqlite3.Connection, defs: Definitions, view: str,
                       bound: int) -> pa.Table:
    """The head rows of ``view`` with ``seq <= bound``, in seq order, as a table of the
    view's segment schema (empty: no rows). Call inside a read transaction."""
    spec = defs.views[view]
    if not any(f.dtype == "float64" and f.allow_nan for f in spec.features):
        try:
            return _read_json_lines(conn, defs, view, bound)
        except (sqlite3.OperationalError, pa.ArrowInvalid) as exc:
            log.info("sealing %s: head rows read as tuples (%s)", view, exc)
    both = conn.execute(HEAD_SEAL_SQL, (bound, view)).fetchall()
    if not both:
        return view_schema(spec).empty_table()
    return head_segment_table([r[:5] for r in both], [(r[0], *r[5:]) for r in both], defs, view)


def _read_json_lines(conn: sqlite3.Connection, defs: Definitions, view: str,
                     bound: int) -> pa.Table:
    spec = defs.views[view]
    schema = view_schema(spec)
    fields = [pa.field(n, schema.field(n).type) for n in META_COLUMNS]
    if spec.features:
        fields.append(pa.field("f", pa.struct([pa.field(f.name, ARROW_TYPES[f.dtype])
                                               for f in spec.features])))
    parse = pa_json.ParseOptions(explicit_schema=pa.schema(fields),
                                 unexpected_field_behavior="ignore")
    read = pa_json.ReadOptions(use_threads=False, block_size=64 << 20)
    chunks = []
    after = 0
    while True:
        text, last, n = conn.execute(HEAD_SEAL_JSON_SQL, (after, bound, view,
                                                          CHUNK_ROWS)).fetchone()
        if not n:
            break
        chunks.append(pa_json.read_json(pa.BufferReader(text), read_options=read,
                                        parse_options=parse))
        after = int(last)
    if not chunks:
        return schema.empty_table()
    table = pa.concat_tables(chunks)
    if table.num_rows == 0:
        return schema.empty_table()
    cols = {name: table.column(name) for name in META_COLUMNS}
    if spec.features:
        values = table.column("f").combine_chunks().flatten()  # offsets and nulls applied
        for field, array in zip(spec.features, values, strict=True):
            cols[column_name(field.name)] = pa.chunked_array([array])
    return pa.Table.from_arrays([cols[fld.name] for fld in schema], schema=schema)
