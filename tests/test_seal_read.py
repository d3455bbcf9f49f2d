"""The seal's head read: SQLite's JSON lines through Arrow give the table the tuples give."""

from __future__ import annotations

import json
import random
from typing import Any

import pyarrow as pa

from asof_stream.config import Config
from asof_stream.ingest.sources.base import Record
from asof_stream.offline import seal_read
from asof_stream.offline.seal_read import HEAD_SEAL_SQL, head_segment_table, read_head_for_seal
from asof_stream.stores import open_stores

EXTRA = """
[entities.thing]
join_keys = { a = "string", b = "int64" }

[views.odd]
entity = "thing"
extra = "ignore"
features = { source = "string", n = "int64", x = "float64", ok = "bool" }

[views.nan_ok]
entity = "merchant"
features = { v = { dtype = "float64", allow_nan = true } }
"""


def _tuples_table(conn: Any, config: Config, view: str, bound: int) -> pa.Table:
    both = conn.execute(HEAD_SEAL_SQL, (bound, view)).fetchall()
    return head_segment_table([r[:5] for r in both], [(r[0], *r[5:]) for r in both],
                              config.defs, view)


def _odd_event(i: int, rng: random.Random) -> dict[str, Any]:
    ev: dict[str, Any] = {"view": "odd", "a": rng.choice(["é\"\\", "\n", "x" * 300, "😀", ""]),
                          "b": rng.choice([-(2**63), 2**63 - 1, 0, i]),
                          "event_timestamp": 1_767_600_000 + rng.randrange(-5, 5)}
    if rng.random() < 0.8:
        ev["source"] = rng.choice(["s", "\u0000 nul", "ünï", "a" * 1000])
    if rng.random() < 0.8:
        ev["n"] = rng.choice([-(2**63), 2**63 - 1, 7])
    if rng.random() < 0.8:
        ev["x"] = rng.choice([0.1, -0.0, 1e308, 5e-324, 1 / 3, 12, 2.5e-7])
    if rng.random() < 0.8:
        ev["ok"] = rng.random() < 0.5
    if rng.random() < 0.7:
        ev["event_id"] = f"id-{i}"
    if rng.random() < 0.2:
        ev["gone"] = "an unknown field, ignored"
    return ev


def test_json_lines_give_the_tuples_table(make_config: Any, monkeypatch: Any) -> None:
    config = make_config(EXTRA)
    monkeypatch.setattr(seal_read, "CHUNK_ROWS", 7)  # several chunks, one partly filled
    rng = random.Random(3)
    with open_stores(config) as s:
        c = s.committer()
        records = [Record(json.dumps(_odd_event(i, rng)).encode(), f"p:{i}") for i in range(60)]
        records += [Record(json.dumps({"view": "customer_stats", "customer_id": f"c{i}",
                                       "event_timestamp": 1_767_600_000 + i}).encode(), "q")
                    for i in range(5)]
        result = c.commit("src", records)
        assert result.rejected == 0
        conn = s.log.conn
        bound = s.log.max_seq()
        for view, rows in (("odd", 60), ("customer_stats", 5)):
            fast = seal_read._read_json_lines(conn, config.defs, view, bound)  # no fallback
            assert fast.num_rows == rows
            assert fast.equals(_tuples_table(conn, config, view, bound)), view
        assert read_head_for_seal(conn, config.defs, "merchant_risk", bound).num_rows == 0
        # A bound below the first row: nothing.
        assert read_head_for_seal(conn, config.defs, "odd", 0).num_rows == 0


def test_a_view_that_allows_nan_is_read_as_tuples(make_config: Any) -> None:
    config = make_config(EXTRA)
    with open_stores(config) as s:
        records = [Record(json.dumps({"view": "nan_ok", "merchant_id": i, "event_timestamp": 5,
                                      "v": v}).encode(), "p")
                   for i, v in enumerate([float("nan"), float("inf"), 1.5])]
        assert s.committer().commit("src", records).stored == 3
        table = read_head_for_seal(s.log.conn, config.defs, "nan_ok", s.log.max_seq())
        tuples = _tuples_table(s.log.conn, config, "nan_ok", s.log.max_seq())
        assert table.schema == tuples.schema  # NaN != NaN: compared as text
        assert repr(table.to_pylist()) == repr(tuples.to_pylist())
        assert str(table.column("v").to_pylist()) == "[nan, inf, 1.5]"
