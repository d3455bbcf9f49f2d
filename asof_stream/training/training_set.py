"""Training sets: labels plus point-in-time features (docs/join.md); the writers are :mod:`.writers`.

Output: exactly one row per label row, in label order, every label column first (with
its original values: a CSV cell stays the text it was), then one column per feature,
named ``feature`` or ``view__feature``. The format follows the extension (``.csv``,
``.jsonl``, ``.parquet``); the file is written under a temporary name in the same
folder and renamed, so a failed run leaves no file behind.
"""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..definitions import Definitions, output_names
from ..offline.log import OfflineLog
from ..transforms.training import input_pairs, transform_matches
from .aggregate import AggMatches, aggregate_all
from .asof import asof_join
from .join import JoinMode, ViewMatches, gc_paused
from .label_types import typed_label_columns
from .labels import Labels
from .sidecar import sidecar_path
from .writers import (
    WRITERS,
    csv_cell,
    output_format,
    render_csv_fragments,
    text_cell,
)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: the same resolved path (symlinks followed), or
    the same inode (a hard link, a bind mount)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def refuse_replacing_input(out: str | os.PathLike[str],
                           inputs: Sequence[str | os.PathLike[str] | None]) -> None:
    """A ValueError when writing ``out`` or its sidecar (OUT.json) would replace an input."""
    for target, what in ((out, "output"), (sidecar_path(out), "sidecar")):
        for src in inputs:
            if src is not None and same_file(target, src):
                how = "" if os.path.realpath(target) == os.path.realpath(src) \
                    else " (a link to it)"
                raise ValueError(f"{out}: the {what} {target} is the label file {src}{how};"
                                 " writing it would replace the labels, choose another --out")


@dataclass
class TrainingSet:
    """A built training set: the labels, then one column per (view, feature) pair."""

    labels: Labels
    pairs: list[tuple[str, str]]  # (view, feature) per feature column
    names: list[str]  # output name per feature column
    dtypes: list[str]  # per feature column
    matches: dict[str, ViewMatches | AggMatches]  # per view: the chosen rows; per aggregation its values
    high_water_seq: int = 0  # the log rows it saw: seq <= this
    shard_high_water: dict[str, int] | None = None  # the same per shard, over shards

    @property
    def columns(self) -> list[str]:
        return self.labels.columns + self.names

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def features(self) -> list[list[Any]]:
        """Per feature column, one value per label row."""
        return [self.matches[v].column(f) for v, f in self.pairs]

    def _by_view(self) -> tuple[list[str], list[list[str]], bool]:
        """Views in order, their features, and whether the columns come grouped by view."""
        views = list(dict.fromkeys(v for v, _ in self.pairs))
        feats = [[f for vv, f in self.pairs if vv == v] for v in views]
        grouped = [(v, f) for v, fs in zip(views, feats, strict=True) for f in fs] == self.pairs
        return views, feats, grouped

    def feature_rows(self, convert: Callable[[Any], Any] | None = None) -> list[tuple[Any, ...]]:
        """Per label row, the feature values in column order (each converted)."""
        views, feats, grouped = self._by_view()
        rows: list[tuple[Any, ...]] | None = None
        for v, fs in zip(views, feats, strict=True):
            part = self.matches[v].project(fs, convert)
            rows = part if rows is None else list(map(operator.add, rows, part))
        assert rows is not None
        if not grouped:  # back to the order the references were given in
            order = [(v, f) for v, fs in zip(views, feats, strict=True) for f in fs]
            perm = [order.index(p) for p in self.pairs]
            rows = [tuple(r[j] for j in perm) for r in rows]
        return rows

    def csv_fragments(self) -> list[str]:
        """Per label row, its features as the end of a CSV line: ``,v1,v2...``."""
        views, feats, grouped = self._by_view()
        if not grouped:
            return ["," + ",".join(map(csv_cell, r)) for r in self.feature_rows()]
        out: list[str] | None = None
        for v, fs in zip(views, feats, strict=True):
            m = self.matches[v]
            part = m.csv_fragments(fs) if isinstance(m, AggMatches) else \
                m.table_of_rows(functools.partial(render_csv_fragments, features=fs))
            out = part if out is None else list(map(operator.add, out, part))
        assert out is not None
        return out

    def rows(self) -> Iterator[list[Any]]:
        """Each output row: the label's original values, then the features."""
        for r, f in zip(self.labels.rows, self.feature_rows(), strict=True):
            yield [*r, *f]

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per label row, columns in output order."""
        cols = self.columns
        return [dict(zip(cols, row, strict=True)) for row in self.rows()]

    def to_pandas(self) -> Any:
        """A pandas DataFrame (pandas is imported here; it is optional).

        A DataFrame input keeps its columns and dtypes; int64 and bool features use
        pandas' nullable ``Int64`` and ``boolean`` dtypes, so a missing value stays null.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas() needs pandas: pip install pandas") from None
        if self.labels.frame is not None:
            df = self.labels.frame.copy()
            df.index = range(len(df))
        else:
            df = pd.DataFrame({c: [r[j] for r in self.labels.rows]
                               for j, c in enumerate(self.labels.columns)})
        pd_types = {"int64": "Int64", "bool": "boolean", "float64": "float64", "string": object}
        for name, dtype, values in zip(self.names, self.dtypes, self.features, strict=True):
            df[name] = pd.Series(values, dtype=pd_types[dtype], index=df.index)
        return df

    def to_df(self) -> Any:
        """Feast's name for :meth:`to_pandas`."""
        return self.to_pandas()

    def to_arrow(self) -> Any:
        """A pyarrow Table: a Parquet input keeps its column types; a CSV one is typed from
        its cells (:mod:`.label_types`)."""
        import pyarrow as pa

        arrow_types = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
                       "bool": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC")}
        if self.labels.arrow is not None:
            table = self.labels.arrow
        elif self.labels.from_text:  # CSV: each column typed from its cells (label_types)
            typed = typed_label_columns(self.labels)
            arrays = [pa.array(values, type=arrow_types[kind]) for kind, values in typed]
            table = pa.table(arrays, names=self.labels.columns) if arrays else pa.table({})
        else:
            arrays = [_arrow_column([r[j] for r in self.labels.rows])
                      for j in range(len(self.labels.columns))]
            table = pa.table(arrays, names=self.labels.columns) if arrays else pa.table({})
        for name, dtype, values in zip(self.names, self.dtypes, self.features, strict=True):
            table = table.append_column(name, pa.array(values, type=arrow_types[dtype]))
        return table

    def write(self, path: str | os.PathLike[str],
              progress: Callable[[int], None] | None = None) -> int:
        """Write to ``path`` (format from the extension) atomically; returns rows written."""
        out = Path(path)
        writer = WRITERS[output_format(out)]
        refuse_replacing_input(out, [self.labels.source])
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            with gc_paused():
                writer(self, tmp, progress or (lambda n: None))
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return len(self)


def _arrow_column(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types from JSON: keep them as text
        return pa.array([None if v is None else text_cell(v) for v in values], type=pa.string())


def feature_pairs(defs: Definitions, labels: Labels, refs: Sequence[str],
                  full_feature_names: bool) -> tuple[list[tuple[str, str]], list[str]]:
    """Resolve refs to (view, feature) pairs and output names; collisions are errors."""
    pairs = defs.resolve_refs(list(refs))
    names = output_names(pairs, full_feature_names)
    label_cols = set(labels.columns)
    for name, (view, feature) in zip(names, pairs, strict=True):
        if name in label_cols:
            hint = "" if full_feature_names else "; use --full-feature-names " \
                "(full_feature_names=True) for view__feature names,"
            raise ValueError(f"feature {view}:{feature} would be written as column {name!r}, "
                             f"which is already a label column{hint} or rename the label column")
    return pairs, names


def build_training_set(log: OfflineLog, defs: Definitions, labels: Labels, refs: Sequence[str],
                       *, strict: bool = False, as_known_at: bool = False,
                       full_feature_names: bool = False,
                       progress: Callable[[int], None] | None = None,
                       upto_seq: int | None = None, jobs: int = 1) -> TrainingSet:
    """Join the referenced features onto the labels as of each label's time.

    ``upto_seq`` bounds the log to the rows with a seq at most this one (default: every
    row committed when the join starts); the result records the bound it used.
    ``jobs``: processes per view (the result does not depend on it).
    """
    upto = log.max_seq() if upto_seq is None else upto_seq

    def join(keys: dict[str, list[str]], mode: JoinMode) -> dict[str, ViewMatches]:
        return asof_join(log, defs, keys, labels.times, mode, progress, upto_seq=upto,
                         jobs=jobs)

    def aggregate(wanted: dict[str, list[str]], keys: dict[str, list[str]],
                  mode: JoinMode) -> dict[str, AggMatches]:
        return aggregate_all(log, defs, wanted, keys, labels.times, mode, upto_seq=upto,
                             progress=progress)

    ts = _assemble(defs, labels, refs, join, JoinMode(strict, as_known_at), full_feature_names,
                   aggregate)
    ts.high_water_seq = upto
    return ts


def build_sharded_training_set(config: Config, defs: Definitions, labels: Labels,
                               refs: Sequence[str], *, strict: bool = False,
                               as_known_at: bool = False, full_feature_names: bool = False,
                               progress: Callable[[int], None] | None = None, jobs: int = 1,
                               marks: Mapping[str, int] | None = None) -> TrainingSet:
    """:func:`build_training_set` over partition shards (``jobs`` processes); ``marks``
    bounds each shard's log as ``upto_seq`` does the one log."""
    from .aggregate import sharded_aggregate
    from .sharded_join import shard_marks, sharded_join

    used: dict[str, int] = dict(shard_marks(config) if marks is None else marks)

    def join(keys: dict[str, list[str]], mode: JoinMode) -> dict[str, ViewMatches]:
        matches, _ = sharded_join(config, defs, keys, labels.times, mode, jobs=jobs,
                                  marks=used, progress=progress)
        return matches

    def aggregate(wanted: dict[str, list[str]], keys: dict[str, list[str]],
                  mode: JoinMode) -> dict[str, AggMatches]:
        return sharded_aggregate(config, defs, wanted, keys, labels.times, mode, marks=used,
                                 progress=progress)

    ts = _assemble(defs, labels, refs, join, JoinMode(strict, as_known_at), full_feature_names,
                   aggregate)
    ts.shard_high_water = used
    return ts


Aggregate = Callable[[dict[str, list[str]], dict[str, list[str]], JoinMode],
                     dict[str, AggMatches]]


def _assemble(defs: Definitions, labels: Labels, refs: Sequence[str],
              join: Callable[[dict[str, list[str]], JoinMode], dict[str, ViewMatches]],
              mode: JoinMode, full_feature_names: bool,
              aggregate: Aggregate | None = None) -> TrainingSet:
    """Views by the as-of ``join``, aggregations by ``aggregate`` (their features only)."""
    pairs, names = feature_pairs(defs, labels, refs, full_feature_names)
    with gc_paused():
        # transforms run last, over the columns of their (maybe hidden) inputs
        matches = feature_matches(defs, labels, input_pairs(defs, pairs), join, mode, aggregate)
        matches.update(transform_matches(defs, labels, pairs, matches))
    dtypes: list[str] = [defs.dtype_of(v, f) for v, f in pairs]
    return TrainingSet(labels, pairs, names, dtypes, matches)


def feature_matches(defs: Definitions, labels: Labels, pairs: Sequence[tuple[str, str]],
                    join: Callable[[dict[str, list[str]], JoinMode], dict[str, ViewMatches]],
                    mode: JoinMode, aggregate: Aggregate | None = None,
                    ) -> dict[str, ViewMatches | AggMatches]:
    """The columns of these (view or aggregation, feature) pairs, per label row: the one
    place features that are not transforms are computed (a transform's inputs too).
    Views by the as-of ``join``, aggregations by ``aggregate`` (their features only)."""
    kinds = {v: defs.kind(v) for v, _ in pairs}
    views = [v for v in dict.fromkeys(v for v, _ in pairs) if kinds[v] == "view"]
    aggs: dict[str, list[str]] = {}
    for v, f in pairs:
        if kinds[v] == "aggregation":
            aggs.setdefault(v, []).append(f)
    if aggs and aggregate is None:
        raise ValueError(f"{', '.join(aggs)}: aggregations are not computed over partition"
                         " shards yet")
    keys = {v: labels.entity_keys(v) for v in [*views, *aggs]}
    matches: dict[str, ViewMatches | AggMatches] = {}
    matches.update(join({v: keys[v] for v in views}, mode) if views else {})
    if aggs:
        assert aggregate is not None
        matches.update(aggregate(aggs, {a: keys[a] for a in aggs}, mode))
    return matches
