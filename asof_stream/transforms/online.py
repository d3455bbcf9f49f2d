"""Transforms in online reads: computed per request from the online values of their
inputs and the request values given beside the join keys.

A transform output is PRESENT once computed, even when some input is NOT_FOUND or
OUTSIDE_MAX_AGE: such an input is passed as None, exactly as a training set passes a
label with no row in time, so both compute the same value. Its event_timestamp is the
newest of its inputs' (None when none has a row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..definitions import Definitions
from ..online.base import OnlineStore
from ..online.lookup import PRESENT, FeatureValue, read_online
from .apply import RequestValueError, apply, request_column
from .training import input_pairs


def read_with_transforms(defs: Definitions, online: OnlineStore,
                         features: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]],
                         *, now: int | None = None, from_text: bool = False,
                         first_row: int = 0) -> list[dict[tuple[str, str], FeatureValue]]:
    """:func:`~asof_stream.online.lookup.read_online` for features that include
    transform outputs; ``first_row`` numbers the rows in errors (``entity row N``)."""
    base = input_pairs(defs, features)
    found = read_online(defs, online, base, rows, now=now, from_text=from_text) if base \
        else [{} for _ in rows]

    def where(i: int) -> str:
        return f"entity row {first_row + i}"

    for name in dict.fromkeys(v for v, _ in features):
        tr = defs.transforms.get(name)
        if tr is None:
            continue
        inputs = defs.resolve_refs(list(tr.inputs)) if tr.inputs else []
        columns = {f: [r[(v, f)].value for r in found] for v, f in inputs}
        request = {}
        for value, dtype in tr.request.items():
            lacking = [i for i, row in enumerate(rows) if value not in row]
            if lacking:
                raise RequestValueError(
                    f"{where(lacking[0])}: missing request value {value!r} ({dtype}) of"
                    f" transform {name!r}; give it beside the join keys")
            request[value] = request_column(name, value, dtype, [row[value] for row in rows],
                                            from_text=from_text, where=where)
        result = apply(defs, tr, columns, request, rows=len(rows), where=where)
        for i, r in enumerate(found):
            times = [t for t in (r[p].event_timestamp for p in inputs) if t is not None]
            ts = max(times) if times else None
            for out in tr.outputs:
                r[(name, out)] = FeatureValue(result[out][i], PRESENT, ts)
    return [{pair: d[pair] for pair in features} for d in found]
