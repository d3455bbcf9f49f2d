"""Calling a transform and checking what it returns.

The function gets one dict of columns (name -> list, one item per row: each input
under its feature name, each request value under its own name; a missing input is
None) and returns a dict with one list (or anything with ``tolist()``, such as a numpy
array or a pandas Series) per output, as long as the input. Every value is checked
against its output's type:

- ``int64``: an int in the signed 64-bit range (not a bool, not a float);
- ``float64``: a float or an int (not a bool), finite: NaN and infinities are refused,
  return None for a missing value;
- ``string``: a str; ``bool``: a bool;
- None (or pandas' NA) is a null in every type.

Numpy scalars count as the Python value they hold. Anything else (a raise, a missing
or extra output, a wrong length, a wrong type) is a :class:`TransformError` naming
the transform, the output and the row: never a silent value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..events import INT64_MAX, INT64_MIN
from .errors import RequestValueError, TransformError

if TYPE_CHECKING:
    from ..definitions import Definitions, Transform

#: On a raise over many rows, up to this many rows are retried one by one to name the
#: first row that fails.
ROW_SEARCH = 10_000


def _plain(v: Any) -> Any:
    """Numpy scalars as Python values, pandas' NA/NaT as None."""
    if v is None or v.__class__ in (int, float, str, bool):
        return v
    kind = type(v).__name__
    if kind in ("NAType", "NaTType"):
        return None
    item = getattr(v, "item", None)
    if item is not None and callable(item) and not isinstance(v, str | bytes):
        try:
            return item()
        except (TypeError, ValueError):
            return v
    return v


def _check(dtype: str, v: Any) -> Any:
    """The value as its output type, or a ValueError saying what was expected."""
    if v is None:
        return None
    if dtype == "float64":
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError("expected float64")
        try:
            f = float(v)
        except OverflowError:
            raise ValueError("number out of the float64 range") from None
        if not math.isfinite(f):
            raise ValueError("NaN and infinities are refused (return None for a missing value)")
        return f
    if dtype == "int64":
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("expected int64")
        if v < INT64_MIN or v > INT64_MAX:
            raise ValueError("int64 value out of the signed 64-bit range")
        return v
    if dtype == "string":
        if not isinstance(v, str):
            raise ValueError("expected string")
        return v
    if not isinstance(v, bool):
        raise ValueError("expected bool")
    return v


_NONE = type(None)
_FAST: dict[str, set[type]] = {"float64": {float}, "int64": {int}, "string": {str},
                              "bool": {bool}}


def _fast(dtype: str, col: list[Any]) -> list[Any] | None:
    """The column as is when every value is already of the type (checked in C), else
    None (then each value is checked on its own, which names the bad one)."""
    present = set(map(type, col))
    if not present - {_NONE} <= _FAST[dtype]:
        return None
    values = [v for v in col if v is not None] if _NONE in present else col
    if not values:
        return col
    if dtype == "float64" and (any(map(math.isinf, values)) or any(map(math.isnan, values))):
        return None
    if dtype == "int64" and (min(values) < INT64_MIN or max(values) > INT64_MAX):
        return None
    return col


def _describe(v: Any) -> str:
    text = repr(v)
    return (text if len(text) <= 60 else text[:57] + "...") + f" ({type(v).__name__})"


def _call(tr: Transform, fn: Callable[[dict[str, list[Any]]], Any], data: dict[str, list[Any]],
          n: int, where: Callable[[int], str]) -> Any:
    try:
        return fn(data)
    except Exception as exc:  # noqa: BLE001 -- user code: named, never passed through raw
        first = f"{type(exc).__name__}: {exc}"
    row = ""
    if 1 < n <= ROW_SEARCH:  # find the first row that raises on its own
        for i in range(n):
            try:
                fn({k: [col[i]] for k, col in data.items()})
            except Exception:  # noqa: BLE001
                row = f" at {where(i)}"
                break
    raise TransformError(f"transform {tr.name!r} ({tr.function}) raised{row}: {first}")


def apply(defs: Definitions, transform: Transform, columns: Mapping[str, list[Any]],
          request: Mapping[str, list[Any]], *, rows: int | None = None,
          where: Callable[[int], str] = lambda i: f"row {i}") -> dict[str, list[Any]]:
    """Run ``transform`` over ``columns`` (inputs by feature name) and ``request``
    (request values by name); its outputs, checked and typed, one list each.

    ``rows``: the row count (default: the length of the first column); ``where(i)``
    names row ``i`` in errors (``labels row 5``, ``entity row 0``).
    """
    from .loader import load_function

    data = {**columns, **request}
    n = rows if rows is not None else len(next(iter(data.values()), []))
    tr = transform
    if n == 0:
        return {name: [] for name in tr.outputs}
    fn = load_function(defs.root, tr)
    result = _call(tr, fn, data, n, where)
    if not isinstance(result, Mapping):
        raise TransformError(f"transform {tr.name!r} ({tr.function}) returned"
                             f" {_describe(result)}; expected a dict of output name -> list"
                             f" ({', '.join(tr.outputs)})")
    missing = [k for k in tr.outputs if k not in result]
    extra = [str(k) for k in result if k not in tr.outputs]
    if missing or extra:
        parts = ([f"missing output(s) {missing}"] if missing else []) + (
            [f"extra output(s) {extra} (declared: {list(tr.outputs)})"] if extra else [])
        raise TransformError(f"transform {tr.name!r} ({tr.function}) returned "
                             + "; ".join(parts))
    out: dict[str, list[Any]] = {}
    for name, dtype in tr.outputs.items():
        col = result[name]
        if hasattr(col, "tolist") and not isinstance(col, list):
            col = col.tolist()
        if isinstance(col, str | bytes | Mapping) or not isinstance(col, Sequence):
            raise TransformError(f"transform {tr.name!r}: output {name!r} is"
                                 f" {_describe(col)}; expected a list of {n} {dtype} values")
        if len(col) != n:
            raise TransformError(f"transform {tr.name!r}: output {name!r} has {len(col)}"
                                 f" value(s) for {n} row(s)")
        fast = _fast(dtype, list(col))
        if fast is not None:
            out[name] = fast
            continue
        typed = []
        for i, v in enumerate(col):
            try:
                typed.append(_check(dtype, _plain(v)))
            except ValueError as exc:
                raise TransformError(f"transform {tr.name!r}: output {name!r} at {where(i)}:"
                                     f" {exc}, got {_describe(v)}") from None
        out[name] = typed
    return out


def request_names(defs: Definitions, pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The request values the transforms among ``pairs`` need: name -> type."""
    out: dict[str, str] = {}
    for view in dict.fromkeys(v for v, _ in pairs):
        tr = defs.transforms.get(view)
        if tr is not None:
            out.update(tr.request)
    return out


_TRUE = {"true": True, "1": True, "false": False, "0": False}


def _from_text(dtype: str, text: str) -> Any:
    s = text.strip()
    if dtype == "string":
        return text
    if s == "":
        return None
    try:
        num: int | float = int(s) if dtype == "int64" else float(s) if dtype == "float64" else 0
    except ValueError:
        raise ValueError(f"expected {dtype}") from None
    if dtype == "int64":
        return num
    if dtype == "float64":
        f = float(num)
        if not math.isfinite(f):
            raise ValueError("NaN and infinities are refused")
        return f
    if s.lower() not in _TRUE:
        raise ValueError("expected true or false")
    return _TRUE[s.lower()]


def request_column(transform: str, name: str, dtype: str, values: Sequence[Any], *,
                   from_text: bool = False,
                   where: Callable[[int], str] = lambda i: f"row {i}") -> list[Any]:
    """One request value per row, checked (or, from text, converted) to its type.

    A null is a null; a float NaN is read as null too (pandas' missing value). A wrong
    value is a :class:`RequestValueError` naming it and the row.
    """
    if from_text and dtype in ("float64", "int64") and "" not in values:
        try:  # the common case, converted in C; any failure is named by the loop below
            converted = _fast(dtype, list(map(float if dtype == "float64" else int, values)))
            if converted is not None:
                return converted
        except (TypeError, ValueError):
            pass
    elif not from_text or dtype == "string":
        fast = _fast(dtype, list(values))
        if fast is not None:
            return fast
    out = []
    for i, raw in enumerate(values):
        v = _plain(raw)
        try:
            if from_text and isinstance(v, str):
                v = _from_text(dtype, v)
            elif isinstance(v, float) and math.isnan(v):
                v = None
            out.append(_check(dtype, v))
        except ValueError as exc:
            raise RequestValueError(f"request value {name!r} of transform {transform!r} at"
                                    f" {where(i)}: {exc}, got {_describe(raw)}") from None
    return out
