"""The types of a CSV label file's columns, read back out of their text.

A training set written as Parquet or JSONL keeps the label columns' types. A Parquet
(or DataFrame) label file has them already; a CSV file has only text, so each column is
typed from its cells, conservatively, as the README says:

- the timestamp column: a UTC timestamp (Parquet ``timestamp[us, UTC]``; JSONL keeps the
  text as it was written);
- a join key column: the entity's declared key type (``string`` or ``int64``), so a key
  of digits stays a string where the entity says string;
- otherwise ``int64`` when every non-empty cell is an integer without sign or leading
  zero oddities (``-12``, ``0``, ``7``; not ``+7``, ``007``, ``1_000``) within int64;
  ``float64`` when every one is such an integer or a decimal (``1.5``, ``-2e3``; not
  ``nan``, ``inf``, ``.5``); ``bool`` when every one is ``true`` or ``false`` (exactly);
  else ``string``. An empty cell is null in a typed column and ``""`` in a string one.
"""

from __future__ import annotations

import re
from typing import Any

_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def infer_column(cells: list[str]) -> tuple[str, list[Any]]:
    """(type, values) for one column of CSV text: int64, float64, bool or string."""
    present = [c for c in cells if c != ""]
    if not present:
        return "string", cells
    if all(_INT.fullmatch(c) for c in present):
        ints = [int(c) if c != "" else None for c in cells]
        if all(INT64_MIN <= v <= INT64_MAX for v in ints if v is not None):
            return "int64", ints
    if all(_FLOAT.fullmatch(c) for c in present):
        return "float64", [float(c) if c != "" else None for c in cells]
    if all(c in ("true", "false") for c in present):
        return "bool", [None if c == "" else c == "true" for c in cells]
    return "string", cells


def key_types(defs: Any) -> dict[str, str]:
    """Join key name -> declared type, over every entity (the first entity wins)."""
    out: dict[str, str] = {}
    for entity in defs.entities.values():
        for name, dtype in entity.join_keys.items():
            out.setdefault(name, dtype)
    return out


def typed_label_columns(labels: Any) -> list[tuple[str, list[Any]]]:
    """Per label column of a CSV label file: its type and typed values (the timestamp
    column typed ``timestamp`` with its UTC microseconds)."""
    keys = key_types(labels.defs)
    out: list[tuple[str, list[Any]]] = []
    for j, name in enumerate(labels.columns):
        cells = [r[j] for r in labels.rows]
        if name == labels.timestamp_column:
            out.append(("timestamp", list(labels.times)))
        elif name in keys:
            if keys[name] == "int64":
                out.append(("int64", [int(c) if c != "" else None for c in cells]))
            else:
                out.append(("string", cells))
        else:
            out.append(infer_column(cells))
    return out
