"""The leakage report: what a naive last-value join would have put in a training set.

For the same labels and features, the point-in-time join (:mod:`asof_stream.join`)
is compared with the naive join (:func:`asof_stream.oracle.naive_view`, each entity's
newest row whatever the label's time). A label row leaks when, for some referenced
view, the naive row is from the label's future: its ``event_timestamp`` is after the
label time (at or after it with strict), or, with as-known-at, it was ingested after
it. For an aggregation the naive value is the aggregate over ALL the entity's rows
(no window, no time bound); a row leaks when that used a row from its future.
Counted per row and per feature cell, with the cells whose value differs and a few
examples side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..definitions import Definitions
from ..events import same_value
from ..offline.log import OfflineLog
from ..timestamps import to_iso
from .aggregate import AggMatches, naive_aggregate
from .asof import asof_join
from .join import JoinMode, ViewMatches
from .labels import Labels
from .naive import NaiveMatches, naive_view
from .training_set import feature_pairs


@dataclass
class FeatureLeak:
    """Per feature column: cells the naive join fills from the future, cells that differ."""

    name: str
    ref: str
    future_cells: int = 0
    differing_cells: int = 0


@dataclass
class Example:
    """One leaking label row, its point-in-time and naive values side by side."""

    row: str  # how errors would name it, e.g. "labels.csv row 12"
    entity: dict[str, Any]
    label_time: str | None
    features: list[dict[str, Any]] = field(default_factory=list)
    index: int = -1  # the label row's 0-based index


@dataclass
class LeakageReport:
    rows: int
    leaking_rows: int
    cells: int
    future_cells: int
    differing_cells: int
    strict: bool
    as_known_at: bool
    features: list[FeatureLeak]
    examples: list[Example]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        def pct(a: int, b: int) -> str:
            return f"{100 * a / b:.2f}%" if b else "0%"

        mode = ", ".join(m for m, on in (("strict", self.strict), ("as-known-at", self.as_known_at))
                         if on) or "default mode"
        lines = [
            f"leakage of a naive last-value join ({mode}), {self.rows:,} label rows:",
            f"  label rows it fills from the future: {self.leaking_rows:,} "
            f"({pct(self.leaking_rows, self.rows)})",
            f"  feature cells from the future: {self.future_cells:,} of {self.cells:,} "
            f"({pct(self.future_cells, self.cells)}); cells with a different value: "
            f"{self.differing_cells:,} ({pct(self.differing_cells, self.cells)})",
        ]
        width = max([len(f.name) for f in self.features] + [7])
        lines.append(f"  {'feature':<{width}}  {'future':>10}  {'differ':>10}")
        for leak in self.features:
            lines.append(f"  {leak.name:<{width}}  {leak.future_cells:>10,}  {leak.differing_cells:>10,}")
        if self.examples:
            lines.append("examples (point-in-time value @ its time | naive value @ its time;"
                         " an aggregate has no one time):")
        for ex in self.examples:
            who = ", ".join(f"{k}={v}" for k, v in ex.entity.items())
            lines.append(f"  {ex.row}: {who}, label time {ex.label_time}")
            for f in ex.features:
                flag = "  <- from the future" if f["future"] else ""
                def at(t: str | None) -> str:  # no time: no row, or an aggregate
                    return "" if t is None else f" @ {t}"
                lines.append(f"    {f['name']}: {f['pit_value']!r}{at(f['pit_time'])} | "
                             f"{f['naive_value']!r}{at(f['naive_time'])}{flag}")
        return "\n".join(lines)


def from_future(event_ts: int | None, ingest_ts: int | None, t: int, *, strict: bool,
                as_known_at: bool) -> bool:
    """Whether a row the naive join used was not usable at label time ``t``."""
    if event_ts is None:
        return False
    if event_ts > t or (strict and event_ts == t):
        return True
    return as_known_at and ingest_ts is not None and ingest_ts > t


def leakage_report(log: OfflineLog, defs: Definitions, labels: Labels, refs: Sequence[str], *,
                   strict: bool = False, as_known_at: bool = False,
                   examples: int = 5) -> LeakageReport:
    """Compare the naive last-value join with the point-in-time join on these labels."""
    try:
        pairs, names = feature_pairs(defs, labels, refs, full_feature_names=False)
    except ValueError:  # short names collide: the report uses view__feature
        pairs, names = feature_pairs(defs, labels, refs, full_feature_names=True)
    named = list(dict.fromkeys(v for v, _ in pairs))
    views = [v for v in named if defs.kind(v) == "view"]
    aggs = {a: [f for v, f in pairs if v == a] for a in named if defs.kind(a) == "aggregation"}
    other = [v for v in named if v not in views and v not in aggs]
    if other:
        raise ValueError(f"{', '.join(other)}: the leakage report covers views and"
                         " aggregations, not transforms")
    keys = {v: labels.entity_keys(v) for v in named}
    upto = log.max_seq()
    mode = JoinMode(strict, as_known_at)
    pit: dict[str, ViewMatches | AggMatches] = dict(asof_join(
        log, defs, {v: keys[v] for v in views}, labels.times, mode, upto_seq=upto))
    naive: dict[str, NaiveMatches | AggMatches] = {
        v: naive_view(log, v, keys[v], upto_seq=upto) for v in views}
    future = {v: [from_future(ets, its, t, strict=strict, as_known_at=as_known_at)
                  for ets, its, t in zip(naive_v.event_ts, naive_v.ingest_ts, labels.times,
                                         strict=True)]
              for v, naive_v in naive.items() if isinstance(naive_v, NaiveMatches)}
    for a, feats in aggs.items():
        pit[a], naive[a], future[a] = naive_aggregate(log, defs, a, feats, keys[a],
                                                      labels.times, mode, upto_seq=upto)
    views = named
    leaks = [FeatureLeak(name, f"{v}:{f}") for name, (v, f) in zip(names, pairs, strict=True)]
    differs: list[list[bool]] = []
    for leak, (v, f) in zip(leaks, pairs, strict=True):
        pit_col = pit[v].column(f)
        naive_col = _naive_column(naive[v], f)
        diff = [not same_value(a, b) for a, b in zip(pit_col, naive_col, strict=True)]
        differs.append(diff)
        leak.future_cells = sum(future[v])
        leak.differing_cells = sum(diff)
    leaking = [any(future[v][i] for v in views) for i in range(len(labels))]
    report = LeakageReport(
        rows=len(labels), leaking_rows=sum(leaking), cells=len(labels) * len(pairs),
        future_cells=sum(f.future_cells for f in leaks),
        differing_cells=sum(f.differing_cells for f in leaks),
        strict=strict, as_known_at=as_known_at, features=leaks, examples=[])
    # Examples: leaking rows where a value differs first, then any other leaking rows.
    chosen = [i for i in range(len(labels)) if leaking[i] and any(d[i] for d in differs)]
    if len(chosen) < examples:
        chosen += [i for i in range(len(labels)) if leaking[i] and i not in set(chosen)]
    for i in sorted(chosen[:examples]):
        report.examples.append(_example(labels, i, views, pairs, names, pit, naive, future))
    return report


def _naive_column(naive: NaiveMatches | AggMatches, f: str) -> list[Any]:
    if isinstance(naive, AggMatches):
        return naive.column(f)
    return [None if d is None else d.get(f) for d in naive.values]


def _example(labels: Labels, i: int, views: list[str], pairs: list[tuple[str, str]],
             names: list[str], pit: dict[str, ViewMatches | AggMatches],
             naive: dict[str, NaiveMatches | AggMatches],
             future: dict[str, list[bool]]) -> Example:
    where = labels.where(i, labels.timestamp_column).rsplit(", column", 1)[0]
    entity: dict[str, Any] = {}
    for v in views:
        for k in labels.defs.entity_of(v).join_keys:
            entity[k] = labels.rows[i][labels.columns.index(k)]
    ex = Example(where, entity, to_iso(labels.times[i]), index=i)
    for name, (v, f) in zip(names, pairs, strict=True):
        p, n = pit[v], naive[v]
        if isinstance(p, AggMatches) or isinstance(n, AggMatches):  # no one row's time
            ex.features.append({"name": name, "pit_value": p.column(f)[i], "pit_time": None,
                                "naive_value": _naive_column(n, f)[i], "naive_time": None,
                                "future": future[v][i]})
            continue
        pv, nv = p.values[i], n.values[i]
        ex.features.append({
            "name": name,
            "pit_value": None if pv is None else pv.get(f),
            "pit_time": to_iso(p.event_ts[i]),
            "naive_value": None if nv is None else nv.get(f),
            "naive_time": to_iso(n.event_ts[i]),
            "future": future[v][i],
        })
    return ex
