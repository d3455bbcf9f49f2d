"""The leakage report over partition shards: each label row is checked in the shard of
its entity (every row of an entity is there, :mod:`.sharded_join`), and the per-shard
reports merged: counts add up, examples are chosen as over one log (rows whose value
differs first, then other leaking rows, shown in label order)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..config import Config
from ..definitions import Definitions
from ..events import same_value
from ..offline.log import open_log
from ..offline.shards import Router, existing_shards, partition_count
from .join import tune_reader
from .labels import Labels
from .leakage import Example, FeatureLeak, LeakageReport, leakage_report
from .training_set import feature_pairs


def _subset(labels: Labels, idx: Sequence[int]) -> Labels:
    """The label rows ``idx``, still named as in the whole file."""
    numbers = labels.row_numbers
    return dataclasses.replace(
        labels, rows=[labels.rows[i] for i in idx], times=[labels.times[i] for i in idx],
        row_numbers=[numbers[i] if numbers is not None else i + 1 for i in idx],
        arrow=None, frame=None, lines=None, _keys={})


def _pairs(defs: Definitions, labels: Labels,
           refs: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(view, feature) pairs and column names, as :func:`~.leakage.leakage_report` names them."""
    try:
        return feature_pairs(defs, labels, refs, full_feature_names=False)
    except ValueError:  # short names collide: view__feature
        return feature_pairs(defs, labels, refs, full_feature_names=True)


def _shard_groups(config: Config, defs: Definitions, labels: Labels,
                  refs: Sequence[str]) -> dict[int, list[int]]:
    """Label row indexes by the shard of their entity; a ValueError when one row's
    views live in different shards (entities of different keys)."""
    pairs, _ = _pairs(defs, labels, refs)
    named = list(dict.fromkeys(v for v, _ in pairs))
    partitions = partition_count(config)
    if partitions is None or not named:
        return {}
    route = Router(partitions)
    keys = [labels.entity_keys(v) for v in named]
    groups: dict[int, list[int]] = {}
    for i in range(len(labels)):
        shards = {route(k[i]) for k in keys}
        if len(shards) > 1:
            raise ValueError(
                f"{labels.where(i, labels.timestamp_column).rsplit(', column', 1)[0]}: its"
                f" features ({', '.join(named)}) live in different shards; over partition"
                " shards the leakage report takes features of one entity per run")
        groups.setdefault(shards.pop(), []).append(i)
    return groups


def _differs(ex: Example) -> bool:
    return any(not same_value(f["pit_value"], f["naive_value"]) for f in ex.features)


def sharded_leakage_report(config: Config, defs: Definitions, labels: Labels,
                           refs: Sequence[str], *, strict: bool = False,
                           as_known_at: bool = False, examples: int = 5) -> LeakageReport:
    """:func:`~.leakage.leakage_report` over the shards, merged as if over one log."""
    groups = _shard_groups(config, defs, labels, refs)
    shards = existing_shards(config)
    parts: list[tuple[list[int], LeakageReport]] = []
    for p, idx in sorted(groups.items()):
        if p not in shards:
            continue  # no shard yet: no rows, nothing leaks
        with open_log(shards[p], readonly=True) as log:
            tune_reader(log.conn)
            parts.append((idx, leakage_report(log, defs, _subset(labels, idx), refs,
                                              strict=strict, as_known_at=as_known_at,
                                              examples=examples)))
    pairs, names = _pairs(defs, labels, refs)
    leaks = [FeatureLeak(name, f"{v}:{f}") for name, (v, f) in zip(names, pairs, strict=True)]
    found: list[Example] = []
    for idx, part in parts:
        for leak, got in zip(leaks, part.features, strict=True):
            leak.future_cells += got.future_cells
            leak.differing_cells += got.differing_cells
        for ex in part.examples:
            found.append(dataclasses.replace(ex, index=idx[ex.index]))
    found.sort(key=lambda ex: ex.index)
    chosen = [ex for ex in found if _differs(ex)][:examples]
    taken = {ex.index for ex in chosen}
    chosen += [ex for ex in found if ex.index not in taken][:examples - len(chosen)]
    return LeakageReport(
        rows=len(labels), leaking_rows=sum(r.leaking_rows for _, r in parts),
        cells=len(labels) * len(pairs), future_cells=sum(f.future_cells for f in leaks),
        differing_cells=sum(f.differing_cells for f in leaks), strict=strict,
        as_known_at=as_known_at, features=leaks, examples=sorted(chosen, key=lambda e: e.index))
