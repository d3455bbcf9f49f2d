"""Drift's samples: a feature's values from a training set, the online store or a log window."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..definitions import Definitions
from ..events import loads_values
from ..offline.log import OfflineLog, open_log
from ..offline.scan import scan_view
from ..offline.segments import column_name
from ..offline.shards import existing_shards, is_sharded, shard_name
from ..online import open_online
from ..timestamps import TimestampError, cell_to_micros
from ..training.tables import Table, TableError

NUMERIC = ("int64", "float64")


class DriftInputError(TableError):
    """Input drift cannot use: an unknown feature, a missing column, a bad file or value."""


def column_for(table: Table, view: str, feature: str) -> str | None:
    """The column of ``view:feature``: ``view__feature``, else the bare name."""
    for name in (f"{view}__{feature}", feature):
        if name in table.columns:
            return name
    return None


@dataclass
class Sample:
    """The usable values of one feature on one side, and how many were missing."""

    values: list[Any] = field(default_factory=list)
    missing: int = 0


_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no"}


def _convert(dtype: str, v: Any, from_text: bool) -> Any:
    """One value as the statistics want it; None when missing; ValueError when wrong."""
    if v is None:
        return None
    if dtype in NUMERIC:
        if from_text:
            if not isinstance(v, str):
                raise ValueError(f"{v!r} is not a number")
            v = v.strip()
            if v == "":
                return None
            try:
                x = float(v)
            except ValueError:
                raise ValueError(f"{v!r} is not a number") from None
        else:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{v!r} is not a number")
            x = float(v)
        return x if math.isfinite(x) else None
    if dtype == "bool":
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            s = v.strip().lower()
            if s == "":
                return None
            if s in _TRUE:
                return "true"
            if s in _FALSE:
                return "false"
        raise ValueError(f"{v!r} is not a boolean")
    if isinstance(v, str):
        return None if (from_text and v == "") else v
    return json.dumps(v) if isinstance(v, dict | list) else str(v)


def _sample(dtype: str, values: Iterable[Any], from_text: bool, where: str) -> Sample:
    out = Sample()
    for i, v in enumerate(values, start=1):
        _add(out, dtype, v, f"{where} row {i}", from_text=from_text)
    return out


def table_samples(defs: Definitions, table: Table,
                  pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Sample]:
    out = {}
    for v, f in pairs:
        col = column_for(table, v, f)
        dtype = defs.dtype_of(v, f)
        values = table.columns[col] if col is not None else []
        out[(v, f)] = _sample(dtype, values, table.from_text, f"{table.origin}, column {col!r},")
    return out


def online_samples(config: Config,
                   pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Sample]:
    """The current online value of each feature, one per stored entity."""
    _views_only(config.defs, pairs, "online")
    by_view: dict[str, list[str]] = {}
    for v, f in pairs:
        by_view.setdefault(v, []).append(f)
    out = {pair: Sample() for pair in pairs}
    online = open_online(config.online_url)
    try:
        for v, feats in by_view.items():
            dtypes = {f: config.defs.views[v].feature(f).dtype for f in feats}
            for row in online.entries(v):
                values = loads_values(row.features)
                for f in feats:
                    _add(out[(v, f)], dtypes[f], values.get(f), f"online {v} {row.entity}")
    finally:
        online.close()
    return out


def _views_only(defs: Definitions, pairs: Sequence[tuple[str, str]], source: str) -> None:
    computed = sorted({f"{v}:{f}" for v, f in pairs if defs.kind(v) != "view"})
    if computed:
        raise DriftInputError(f"{', '.join(computed)}: computed features are not stored in"
                              f" the log or the online store, so {source!r} has no values for"
                              " them; compare two training sets (.csv, .jsonl, .parquet)")


def _add(sample: Sample, dtype: str, v: Any, where: str, *, from_text: bool = False) -> None:
    try:
        x = _convert(dtype, v, from_text)
    except ValueError as exc:
        raise DriftInputError(f"{where}: {exc} (feature type {dtype})") from None
    if x is None:
        sample.missing += 1
    else:
        sample.values.append(x)


def parse_window(text: str) -> tuple[int | None, int | None]:
    """``START..END`` (after ``window:``) as microseconds; an empty end is no bound."""
    start_s, sep, end_s = text.partition("..")
    if not sep:
        raise DriftInputError(f"window {text!r} must be START..END, e.g. "
                              "window:2026-01-01T00:00:00Z..2026-01-08T00:00:00Z")
    try:
        start = cell_to_micros(start_s) if start_s.strip() else None
        end = cell_to_micros(end_s) if end_s.strip() else None
    except TimestampError as exc:
        raise DriftInputError(f"window {text!r}: {exc}") from None
    if start is not None and end is not None and end <= start:
        raise DriftInputError(f"window {text!r}: the end must be after the start")
    return start, end


def _log_paths(config: Config) -> dict[str, Path]:
    """The log files to read, by how an error names a row's log: the one log, or every
    partition shard (each entity's rows all in one shard, so pooled they are the log)."""
    if is_sharded(config):
        return {f"shard {shard_name(p)} ": path for p, path in sorted(existing_shards(config).items())}
    return {"": config.offline_path} if config.offline_path.exists() else {}


def window_samples(config: Config, pairs: Sequence[tuple[str, str]], start: int | None,
                   end: int | None) -> dict[tuple[str, str], Sample]:
    """Every log row with ``start <= event_timestamp < end``, per feature (over partition
    shards: every shard's rows, pooled)."""
    _views_only(config.defs, pairs, "window:START..END")
    out = {pair: Sample() for pair in pairs}
    by_view: dict[str, list[str]] = {}
    for v, f in pairs:
        by_view.setdefault(v, []).append(f)
    for where, path in _log_paths(config).items():
        log = open_log(path, readonly=True)
        try:
            for v, feats in by_view.items():
                dtypes = {f: config.defs.views[v].feature(f).dtype for f in feats}
                try:
                    rows = _window_rows(log, config.defs, v, feats, start, end)
                except sqlite3.OperationalError as exc:
                    if "no such table" not in str(exc):
                        raise
                    continue
                for seq, values in rows:
                    for f, value in zip(feats, values, strict=True):
                        _add(out[(v, f)], dtypes[f], value, f"{where}log seq {seq}")
        finally:
            log.close()
    return out


def _window_rows(log: OfflineLog, defs: Definitions, view: str, feats: list[str],
                 start: int | None, end: int | None) -> list[tuple[int, tuple[Any, ...]]]:
    """(seq, values of ``feats``) of every row of ``view`` in the window, over both tiers
    of the log (sealed segments and the head), in seq order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lo, hi = -(2**63) if start is None else start, 2**63 - 1 if end is None else end
    out: list[tuple[int, tuple[Any, ...]]] = []
    try:
        tiers = scan_view(log, defs, view, columns=feats)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # a head row that no longer fits
        raise DriftInputError(f"view {view!r}: a log row does not fit the feature types now "
                              f"defined: {exc}") from None
    for tier in tiers:
        ts = tier.table.column("event_timestamp")
        t = tier.table.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))
        cols = [t.column(column_name(f)).to_pylist() for f in feats]
        out.extend(zip(t.column("seq").to_pylist(), zip(*cols, strict=True), strict=True))
    out.sort(key=lambda r: r[0])
    return out
