"""The columnar fast path of training-set writes the same bytes as the general path
(labels read into Python, the join's ViewMatches, the CSV writer) on random logs, sealed
in part, with every feature type, awkward strings, NaN, nulls, and every join mode;
windowed aggregations too, alone and beside view features."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asof_stream.config import parse_config
from asof_stream.events import EventDecoder
from asof_stream.ingest.commit import Committer
from asof_stream.ingest.sources.base import Record
from asof_stream.offline import segments
from asof_stream.offline.log import OfflineLog
from asof_stream.offline.seal import seal_view, segments_lock
from asof_stream.timestamps import to_iso
from asof_stream.training.columnar import columnar_csv
from asof_stream.training.columnar_labels import read_plain_csv
from asof_stream.training.join import JoinMode
from asof_stream.training.labels import labels_from_any
from asof_stream.training.training_set import build_training_set

TOML = """
[store]
offline = "offline.sqlite"

[entities.customer]
join_keys = { customer_id = "string" }

[views.a]
entity = "customer"
features = { n = "int64", x = "float64", s = "string", b = "bool" }

[views.t]
entity = "customer"
ttl = "4s"
features = { s = "string", m = "int64" }

[aggregations.g]
source = "a"

[aggregations.g.features]
rows_3s = { fn = "count", window = "3s" }
texts = { fn = "count", of = "s" }
sum_x = { fn = "sum", of = "x", window = "5s" }
mean_x = { fn = "mean", of = "x", window = "2s" }
sd_x = { fn = "stddev", of = "x", window = "6s" }
min_x = { fn = "min", of = "x" }
max_n = { fn = "max", of = "n", window = "4s" }
last_s = { fn = "last", of = "s", window = "3s" }
last_b = { fn = "last", of = "b" }

[aggregations.h]
source = "t"

[aggregations.h.features]
last_m = { fn = "last", of = "m", window = "2s" }
m_1s = { fn = "count", of = "m", window = "1s" }
"""
CONFIG = parse_config(TOML, Path("/nonexistent/asof.toml"))
S = 1_000_000
BASE = 1_767_225_600 * S
CUSTOMERS = ["c1", "c2", "c 3", "ü4"]

times = st.builds(lambda sec, off: BASE + sec * S + off, st.integers(0, 10),
                  st.sampled_from([0, 0, 1, -1, 250_000]))
texts = st.none() | st.sampled_from(["", "p", 'say "hi"', "a,b", "two\nlines", "cr\rx", " sp "]) \
    | st.text(max_size=4)
# (NaN and infinities are dead letters: the log never holds them)
floats = st.none() | st.sampled_from([0.5, -1.25, 1e16, 1e-5, 3.0, 123456789.125, -0.0]) \
    | st.floats(allow_nan=False, allow_infinity=False)
ints = st.none() | st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 3)


@st.composite
def events(draw: Any) -> dict[str, Any]:
    view = draw(st.sampled_from(["a", "t"]))
    ev: dict[str, Any] = {"view": view, "event_timestamp": to_iso(draw(times)),
                          "customer_id": draw(st.sampled_from(CUSTOMERS))}
    if view == "a":
        ev.update(n=draw(ints), x=draw(floats), s=draw(texts), b=draw(st.none() | st.booleans()))
    else:
        ev.update(s=draw(texts), m=draw(ints))
    return {k: v for k, v in ev.items() if v is not None or draw(st.booleans())}


# batches of events, each followed by sealing or not
histories = st.lists(st.tuples(st.lists(events(), min_size=1, max_size=8), st.booleans()),
                     min_size=1, max_size=4)
label_lists = st.lists(st.tuples(st.sampled_from([*CUSTOMERS, "nobody"]), times,
                                 st.sampled_from(["0", "1", "", "x y"])), min_size=1, max_size=15)
# how a label writes its time: RFC 3339 in UTC or with an offset (Arrow parses those), or
# with a space or a lower-case z (the general parser)
time_styles = st.sampled_from(["Z", "Z", "+05:30", "-01:00", " ", "z"])
modes = st.builds(JoinMode, st.booleans(), st.booleans())
refs = st.sampled_from([["a"], ["t"], ["a", "t"], ["t:m", "a:s", "a:x"], ["g"], ["h", "g:sum_x"],
                        ["a", "g"], ["g:last_s", "t:m", "g:sum_x", "a:x", "h:last_m"]])


def build(root: Path, history: Any) -> OfflineLog:
    log = OfflineLog(root / "offline.sqlite")
    committer = Committer(log, None, EventDecoder(CONFIG.defs))
    first = [{"view": v, "event_timestamp": to_iso(BASE - S), "customer_id": "c2"}
             for v in ("a", "t")]  # each view has a row, so a segment
    history = [(first, True), *history]
    for k, (batch, seal) in enumerate(history):
        records = [Record(json.dumps(e).encode(), f"t:{k}:{i}") for i, e in enumerate(batch)]
        result = committer.commit("test", records, available_at=BASE + (k * 3 + 1) * S)
        assert result.rejected == 0, result.rejects
        if seal:
            with segments_lock(log):
                for view in ("a", "t"):
                    seal_view(log, CONFIG.defs, view)
    return log


def label_time(t: int, style: str) -> str:
    text = to_iso(t)
    if style == "Z":
        return text
    if style == " ":
        return text.replace("T", " ")
    if style == "z":
        return text[:-1] + "z"
    sign = 1 if style[0] == "+" else -1
    offset = sign * (int(style[1:3]) * 3600 + int(style[4:6]) * 60) * S
    return to_iso(t + offset)[:-1] + style


def write_labels(path: Path, rows: Any, bom: bool, trailing: bool, crlf: bool = False,
                 style: str = "Z") -> None:
    lines = ["customer_id,event_timestamp,label"]
    lines += [f"{c},{label_time(t, style)},{extra}" for c, t, extra in rows]
    text = "\n".join(lines) + ("\n" if trailing else "")
    text = text.replace("\n", "\n\n", 1)  # a blank line
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode().replace(
        b"\n", b"\r\n" if crlf else b"\n"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, label_lists, modes, refs, st.booleans(), st.booleans(), st.booleans(),
       st.booleans(), time_styles, st.sampled_from([None, 1, 2, 3]))
def test_fast_path_writes_the_same_bytes(history: Any, rows: Any, mode: JoinMode,
                                         features: list[str], full: bool, bom: bool,
                                         trailing: bool, crlf: bool, style: str,
                                         group_rows: int | None) -> None:
    """... with segments of row groups of a few rows too (the fast path reads a row group
    at a time; an entity's rows run on across groups). A window sum that overflows float64
    is the same error on both paths."""
    full = full or features == ["a", "t"]  # both have a feature s
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(segments, "ROW_GROUP_ROWS", group_rows or segments.ROW_GROUP_ROWS):
        root = Path(tmp)
        with build(root, history) as log:
            labels_path = root / "labels.csv"
            write_labels(labels_path, rows, bom, trailing, crlf, style)
            labels = labels_from_any(str(labels_path), CONFIG.defs)
            try:
                ts = build_training_set(log, CONFIG.defs, labels, features, strict=mode.strict,
                                        as_known_at=mode.as_known_at, full_feature_names=full)
            except OverflowError as exc:
                with pytest.raises(OverflowError, match=str(exc)):
                    columnar_csv(log, CONFIG.defs, labels_path, features, root / "fast.csv",
                                 timestamp_column="event_timestamp", mode=mode,
                                 full_feature_names=full)
                return
            fast = columnar_csv(log, CONFIG.defs, labels_path, features, root / "fast.csv",
                                timestamp_column="event_timestamp", mode=mode,
                                full_feature_names=full)
            assert fast is not None
            ts.write(root / "slow.csv")
            assert (root / "fast.csv").read_bytes() == (root / "slow.csv").read_bytes()
            assert fast.columns == ts.columns and fast.rows == len(ts)
            assert fast.pairs == ts.pairs and fast.high_water_seq == ts.high_water_seq


def test_the_fast_path_saw_awkward_values() -> None:
    """The property above is not vacuous: such values reach the log and the output."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        history = [([{"view": "a", "event_timestamp": to_iso(BASE), "customer_id": "c1",
                      "n": 7, "x": 1e16, "s": 'a "q",\nb', "b": False}], True)]
        with build(root, history) as log:
            write_labels(root / "l.csv", [("c1", BASE + S, "1"), ("c2", BASE, "0")], False, True)
            assert columnar_csv(log, CONFIG.defs, root / "l.csv", ["a"], root / "o.csv",
                                timestamp_column="event_timestamp", mode=JoinMode(),
                                full_feature_names=False) is not None
        text = (root / "o.csv").read_text()
        assert text == ('customer_id,event_timestamp,label,n,x,s,b\n'
                        f'c1,{to_iso(BASE + S)},1,7,1e+16,"a ""q"",\nb",false\n'
                        f'c2,{to_iso(BASE)},0,,,,\n')


def test_the_fast_path_saw_awkward_aggregates() -> None:
    """... and aggregated cells too: a quoted text, a float, an empty window."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        history = [([{"view": "a", "event_timestamp": to_iso(BASE), "customer_id": "c1",
                      "n": 7, "x": 0.1, "s": 'a "q",\nb', "b": True},
                     {"view": "a", "event_timestamp": to_iso(BASE + S), "customer_id": "c1",
                      "x": 0.2}], False)]
        with build(root, history) as log:
            write_labels(root / "l.csv", [("c1", BASE + S, "1"), ("c9", BASE, "0")], False, True)
            assert columnar_csv(log, CONFIG.defs, root / "l.csv",
                                ["g:last_s", "g:sum_x", "g:rows_3s", "a:x", "g:last_b"],
                                root / "o.csv", timestamp_column="event_timestamp",
                                mode=JoinMode(strict=True), full_feature_names=True) is not None
        text = (root / "o.csv").read_text()
        assert text == ('customer_id,event_timestamp,label,g__last_s,g__sum_x,g__rows_3s,a__x,'
                        f'g__last_b\nc1,{to_iso(BASE + S)},1,"a ""q"",\nb",0.1,1,0.1,true\n'
                        f'c9,{to_iso(BASE)},0,,0.0,0,,\n')


def test_what_the_fast_path_leaves_to_the_general_one(tmp_path: Path) -> None:
    """Quoted label files, short rows, duplicate columns, bad times, no data rows: None."""
    for text in ('customer_id,event_timestamp\n"c1",2026-01-01T00:00:00Z\n',
                 "customer_id,event_timestamp\nc\r1,2026-01-01T00:00:00Z\n",
                 "customer_id,event_timestamp\nc1\n",
                 "customer_id,customer_id,event_timestamp\nc1,c1,2026-01-01T00:00:00Z\n",
                 "customer_id,event_timestamp\nc1,yesterday\n",
                 "customer_id,event_timestamp\n",
                 "customer_id,when\nc1,2026-01-01T00:00:00Z\n"):
        (tmp_path / "l.csv").write_text(text, newline="")
        assert read_plain_csv(tmp_path / "l.csv", "event_timestamp") is None, text
        assert read_plain_csv(tmp_path / "l.csv", "event_timestamp", ["customer_id"]) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "é"]), min_size=1, max_size=40),
       st.lists(st.sampled_from(["a", "c", "e", "é", "z"]), max_size=4), st.integers(1, 7))
def test_read_segment_prunes_row_groups_exactly(entities: list[str], wanted: list[str],
                                                group: int) -> None:
    """Reading some entities of a segment of many row groups (pruned by their statistics,
    then filtered) gives the rows a filter of the whole file gives, in order; and so do
    the row groups SegmentGroups picks, read with the entity column dictionary-encoded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from asof_stream.offline.segments import (
        SegmentGroups,
        read_segment,
        text_array,
        write_segment,
    )

    ents = sorted(entities)
    table = pa.table({"entity": pa.array(ents, pa.string()),
                      "seq": pa.array(range(len(ents)), pa.int64())})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.parquet"
        size, _ = write_segment(path, table, row_group_size=group)
        for values in (wanted, text_array(wanted)):
            got = read_segment(path, size, entities=values)
            want = table.filter(pc.is_in(table.column("entity"),
                                         value_set=pa.array(wanted, pa.string())))
            assert got.to_pylist() == want.to_pylist()
            opened = SegmentGroups(path, size, ["entity", "seq"], values)
            coded = [opened.read(g) for g in opened.groups]
            assert all(pa.types.is_dictionary(t.schema.field("entity").type) for t in coded)
            rows = [r for t in coded for r in t.to_pylist() if r["entity"] in set(wanted)]
            assert rows == want.to_pylist()


@settings(max_examples=300, deadline=None)
@given(st.integers(-62135596800 * S, 253402300799 * S + S - 1),
       st.sampled_from(["Z", "+05:30", "-01:00", "+23:59", "-23:59"]))
def test_arrow_reads_rfc3339_as_cell_to_micros(t: int, style: str) -> None:
    """Where the fast path lets Arrow parse label times, it agrees with cell_to_micros,
    and a time outside the years 1..9999 once its offset is applied is left to it."""
    import pyarrow as pa

    from asof_stream.timestamps import TimestampError, cell_to_micros
    from asof_stream.training.label_scan import rfc3339_micros

    cell = label_time(t, style) if style == "Z" or -62135596800 * S + 86400 * S < t < \
        253402300799 * S - 86400 * S else to_iso(t)
    got = rfc3339_micros(pa.array([cell], pa.string()))
    try:
        want = cell_to_micros(cell)
    except TimestampError:
        assert got is None
        return
    assert got is None or got.tolist() == [want]
    assert got is not None or not cell.endswith("Z")  # plain UTC cells are always Arrow's
    for bad in ("2025-02-30T00:00:00Z", "0000-01-01T00:00:00Z", "2025-01-01T24:00:00Z",
                "2025-01-01T00:00:00+24:00", "0001-01-01T00:00:00+01:00"):
        assert rfc3339_micros(pa.array([bad], pa.string())) is None, bad


EDGES = [0.0, -0.0, 1e-4, 1.0000001e-4, 9.999999e-5, 1e9, 999999999.9999999, 1e17,
         9.999999999999998e16, 1e-11, 9.99999999999e-12, 1e-10, 1e-7, 1e-5, 1e10, 1e15,
         123456789012345.6, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
         float("nan"), float("inf"), float("-inf"), 3.0, 150000000.0, 2.0**53]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.none() | st.floats() | st.sampled_from(EDGES) |
                st.sampled_from(EDGES).map(lambda v: -v), max_size=30))
def test_float_cells_are_python_repr(values: list[float | None]) -> None:
    """Floats rendered by Arrow where its text is Python's are exactly ``repr``, nulls
    stay null; random bit patterns (every exponent) too."""
    import numpy as np
    import pyarrow as pa

    from asof_stream.training.csv_text import float_text as float_cells

    rng = np.random.default_rng(len(values))
    noise = np.frombuffer(rng.bytes(8 * 2000), dtype=np.float64).tolist()
    scaled = (rng.standard_normal(2000) * 10.0 ** rng.integers(-14, 20, 2000)).tolist()
    for case in (values, noise, scaled, EDGES):
        got = float_cells(pa.array(case, pa.float64())).to_pylist()
        assert got == [None if v is None else repr(v) for v in case]


@settings(deadline=None)
@given(st.lists(st.lists(st.none() | st.integers(-5, 5), max_size=6), min_size=1, max_size=5),
       st.data())
def test_take_sorted_is_take(chunks: list[list[int | None]], data: st.DataObject) -> None:
    """Ascending rows taken chunk by chunk are ``take``'s rows (empty chunks, none taken)."""
    import numpy as np
    import pyarrow as pa

    from asof_stream.training.columnar import take_sorted

    column = pa.chunked_array([pa.array(c, pa.int64()) for c in chunks], pa.int64())
    n = len(column)
    rows = sorted(data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=8))) if n else []
    got = take_sorted(column, np.array(rows, dtype=np.int64))
    assert got.to_pylist() == [column[i].as_py() for i in rows]


@settings(deadline=None)
@given(st.lists(st.text("0123456789-T:Zz+. ", min_size=19, max_size=21) |
                st.integers(-62135596800, 253402300799).map(lambda s: to_iso(s * S)),
                min_size=1, max_size=5))
def test_plain_utc_shape_is_a_case_of_the_regex(cells: list[str]) -> None:
    """The byte check that spares the regex accepts only cells the regex accepts (but for
    year 0000, which the digits then refuse), and every whole-second UTC time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from asof_stream.training.label_scan import _RFC3339, _plain_digits

    column = pa.array(cells, pa.string())
    regex = pc.all(pc.match_substring_regex(column, _RFC3339)).as_py()
    digits = _plain_digits(column)
    assert digits is None or regex or (digits[:, :4] == 0).all(axis=1).any()
    if all(len(c) == 20 and c.endswith("Z") and c[10] == "T"
           and c.count("-") == 2 and c.count(":") == 2 for c in cells) and regex:
        assert digits is not None
    assert (_plain_digits(column.slice(1)) is not None) == (
        len(cells) > 1 and _plain_digits(pa.array(cells[1:])) is not None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-62135596800, 253402300799).map(lambda s: to_iso(s * S)) |
                st.tuples(st.integers(0, 9999), st.integers(0, 19), st.integers(0, 39),
                          st.integers(0, 29), st.integers(0, 69), st.integers(0, 69)).map(
                    lambda p: "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z".format(*p)),
                min_size=1, max_size=6))
def test_plain_utc_digits_read_as_cell_to_micros(cells: list[str]) -> None:
    """Whole-second UTC cells computed from their digits give cell_to_micros' instants,
    and None as soon as one of them is no valid instant (February 30th, hour 24, second
    60, month 13, year 0000)."""
    import pyarrow as pa

    from asof_stream.timestamps import TimestampError, cell_to_micros
    from asof_stream.training.label_scan import rfc3339_micros

    want: list[int] | None = []
    for c in cells:
        try:
            want.append(cell_to_micros(c))  # type: ignore[union-attr]
        except TimestampError:
            want = None
            break
    got = rfc3339_micros(pa.array(cells, pa.string()))
    assert (None if got is None else got.tolist()) == want


def test_plain_utc_digits_at_the_calendar_edges() -> None:
    """Leap days (2000 and 2024 yes, 1900 and 2023 no), the first and last instants,
    month ends: as cell_to_micros, each alone and all together."""
    import pyarrow as pa

    from asof_stream.timestamps import TimestampError, cell_to_micros
    from asof_stream.training.label_scan import rfc3339_micros

    good = ["2000-02-29T00:00:00Z", "2024-02-29T23:59:59Z", "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
            "2025-04-30T12:00:00Z", "2025-12-31T00:00:00Z", "1600-03-01T00:00:00Z"]
    bad = ["1900-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2025-04-31T00:00:00Z",
           "2025-00-10T00:00:00Z", "2025-01-00T00:00:00Z", "2025-13-01T00:00:00Z",
           "2025-01-01T00:60:00Z", "2025-01-01T00:00:60Z", "0000-06-01T00:00:00Z"]
    for cell in good:
        got = rfc3339_micros(pa.array([cell], pa.string()))
        assert got is not None and got.tolist() == [cell_to_micros(cell)], cell
    got = rfc3339_micros(pa.array(good, pa.string()))
    assert got is not None and got.tolist() == [cell_to_micros(c) for c in good]
    for cell in bad:
        with pytest.raises(TimestampError):
            cell_to_micros(cell)
        assert rfc3339_micros(pa.array([*good, cell], pa.string())) is None, cell


@settings(deadline=None)
@given(st.lists(st.none() | st.text(max_size=4), max_size=8), st.integers(0, 3))
def test_special_bytes_check_is_the_regex(cells: list[str | None], cut: int) -> None:
    """The one-pass byte check says a string column needs quoting exactly when a cell
    matches the regex (slices included)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from asof_stream.training.columnar import _NEEDS_QUOTES, _has_special_bytes

    column = pa.array(cells, pa.string()).slice(min(cut, len(cells)))
    want = bool(pc.any(pc.match_substring_regex(column, _NEEDS_QUOTES)).as_py())
    assert _has_special_bytes(column) == want or (not want and column.null_count)


def test_labels_scanned_ahead_are_the_file_as_read_then(tmp_path: Path) -> None:
    """A scan started ahead (training-set's thread) gives read_plain_csv what reading the
    file then gives, and the digest of those bytes; once the file changes, the scan is
    not used and the file is read again."""
    import hashlib
    import os

    from asof_stream.training.label_scan import forget, scan_ahead, scanned

    path = tmp_path / "l.csv"
    path.write_bytes(b"customer_id,event_timestamp,label\r\nc1,2026-01-01T00:00:00Z,1\r\n"
                     b"c2,2026-01-02T00:00:00Z,0\r\n")
    fresh = read_plain_csv(path, "event_timestamp", ["customer_id"])
    scan_ahead(str(path), "event_timestamp")
    ahead = scanned(path)
    assert ahead is not None and ahead.digest == (
        path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    got = read_plain_csv(path, "event_timestamp", ["customer_id"])
    assert fresh is not None and got is not None
    assert got.lines.equals(fresh.lines) and got.times.tolist() == fresh.times.tolist()
    assert got.cells.column("customer_id").equals(fresh.cells.column("customer_id"))
    path.write_bytes(b"customer_id,event_timestamp\nc3,2026-01-03T00:00:00Z\n")
    os.utime(path, ns=(1, 1))  # a new modification time even on a coarse clock
    assert scanned(path) is None
    again = read_plain_csv(path, "event_timestamp", ["customer_id"])
    assert again is not None and again.lines.to_pylist() == ["\nc3,2026-01-03T00:00:00Z"]
    forget(path)
    assert scanned(path) is None


@settings(deadline=None)
@given(st.lists(st.integers(0, 2**16 + 5) | st.integers(0, 2**33), max_size=50))
def test_stable_order_is_a_stable_argsort(keys: list[int]) -> None:
    """The labels' order by key (16-bit radix passes) is numpy's stable argsort."""
    import numpy as np

    from asof_stream.training.columnar_tiers import stable_order

    arr = np.array(keys, dtype=np.int64)
    assert stable_order(arr).tolist() == np.argsort(arr, kind="stable").tolist()
    small = arr % 300
    assert stable_order(small).tolist() == np.argsort(small, kind="stable").tolist()
