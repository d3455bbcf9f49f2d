"""Transforms in training sets: once over every label row, a column at a time.

The inputs are joined point in time like any feature (hidden when not asked for); the
request values come from the label columns of the same name.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..definitions import Definitions
from ..training.labels import LabelError, Labels
from ..training.matches import ViewMatches
from .apply import apply, request_column


def input_pairs(defs: Definitions, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (view or aggregation, feature) pairs to compute for ``pairs``: every one that
    is not a transform's output, and every transform's inputs, in order, once."""
    out: dict[tuple[str, str], None] = {}
    for view, feature in pairs:
        tr = defs.transforms.get(view)
        if tr is None:
            out.setdefault((view, feature), None)
        elif tr.inputs:
            for pair in defs.resolve_refs(list(tr.inputs)):
                out.setdefault(pair, None)
    return list(out)


def from_columns(view: str, columns: dict[str, list[object]], n: int) -> ViewMatches:
    """Computed columns as :class:`ViewMatches`: row ``i`` "chose" row ``i``, no time."""
    names = list(columns)
    by_seq = {i: dict(zip(names, values, strict=True))
              for i, values in enumerate(zip(*columns.values(), strict=True))} if names else {}
    return ViewMatches(view, list(range(n)), by_seq, {})


def _row(labels: Labels, i: int) -> str:
    n = labels.row_numbers[i] if labels.row_numbers is not None else i + 1
    return f"{labels.origin} {labels.row_word} {n}"


class Columns(Protocol):
    """What a transform reads of its inputs' matches (views' or aggregations')."""

    def column(self, feature: str) -> list[Any]: ...


def transform_matches(defs: Definitions, labels: Labels, pairs: Sequence[tuple[str, str]],
                      matches: Mapping[str, Columns]) -> dict[str, ViewMatches]:
    """Per transform among ``pairs``, its outputs over every label row (``matches``
    holds its inputs, from :func:`input_pairs`)."""
    out: dict[str, ViewMatches] = {}
    n = len(labels)
    index = {c: j for j, c in enumerate(labels.columns)}
    for name in dict.fromkeys(v for v, _ in pairs):
        tr = defs.transforms.get(name)
        if tr is None:
            continue
        columns = {f: matches[v].column(f)
                   for v, f in (defs.resolve_refs(list(tr.inputs)) if tr.inputs else [])}
        request = {}
        for value, dtype in tr.request.items():
            j = index.get(value)
            if j is None:
                raise LabelError(f"{labels.origin}: missing column {value!r}, the request value"
                                 f" {value!r} ({dtype}) of transform {name!r} (request values"
                                 f" come from the label column of the same name); columns:"
                                 f" {', '.join(labels.columns)}")
            request[value] = request_column(
                name, value, dtype, [r[j] for r in labels.rows], from_text=labels.from_text,
                where=functools.partial(labels.where, column=value))
        result = apply(defs, tr, columns, request, rows=n, where=functools.partial(_row, labels))
        out[name] = from_columns(name, dict(result), n)
    return out
