"""Typed Arrow columns rendered as CSV cells in bulk, the same text
:func:`~.writers.csv_cell` gives each value (null: an empty cell).

Arrow's cast to string writes an int64 as ``str`` does, and a float64 with the same
shortest round-trip digits as ``repr``, but not always in the same notation: ``100``
for ``100.0``, ``0.00001`` for ``1e-05``, ``1.2e+14`` for ``120000000000000.0``. So a
float is taken from Arrow only where both write plain decimals (0, or ``|x|`` in
``[1e-4, 1e9)`` with a margin at the low edge: Arrow switches to an exponent from
``1e10``, Python below ``1e-4``), with ``.0`` added to the whole numbers (found on the
values, not by searching the text: Arrow writes no point for exactly those); every other
float goes through ``repr``. About 10x faster than a ``repr`` per value.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..kernels.buffers import bool_array, int_numpy, valid_numpy
from ..offline.segments import text_array

# Arrow scalars taken from arrays: pa.scalar of a Python value makes pyarrow import pandas
_NONE, _POINT_ZERO, _TRUE, _FALSE = text_array(["", ".0", "true", "false"])


def csv_text(arr: pa.Array) -> pa.Array | None:
    """``arr`` (int64, float64 or bool) as CSV cell text, nulls as ``""``; None for
    another type (the caller renders it value by value)."""
    if pa.types.is_integer(arr.type):
        text = pc.cast(arr, pa.string())
    elif pa.types.is_boolean(arr.type):
        text = pc.if_else(arr, _TRUE, _FALSE)
    elif arr.type == pa.float64():
        text = float_text(arr)
    else:
        return None
    return pc.fill_null(text, _NONE) if text.null_count else text


def float_text(arr: pa.Array) -> pa.Array:
    """float64 values as Python's ``repr`` writes them (nulls stay null), the one float
    rendering of the CSV fast path (view features and aggregations alike).

    Arrow's cast writes the same shortest round-trip digits, laid out differently: it
    drops ``.0`` from whole numbers, and where Python writes positionally (decimal
    exponent -4 to 15) Arrow writes an exponent from 10 on. So Arrow's text is kept where
    both write positionally (|v| in [1e-4, 1e9) and zeros, ``.0`` appended to whole
    numbers); the rest (exponents, NaN, infinities) take ``repr``. tests/test_columnar.py
    and tests/test_csv_text.py check this against ``repr``.
    """
    data = int_numpy(arr)  # under a null: anything (those are left to fill_null)
    size = np.abs(data)
    with np.errstate(invalid="ignore"):
        plain = (size == 0) | ((size >= 1.0000001e-4) & (size < 1e9))
        whole = plain & (data == np.trunc(data))
    if arr.null_count:
        valid = valid_numpy(arr)
        whole &= valid
        plain |= ~valid
    text = pc.cast(arr, pa.string())
    if whole.any():  # "100" -> "100.0", only where needed (a join of every cell was 0.1 s/1M)
        at = bool_array(whole)
        text = pc.replace_with_mask(text, at, pc.binary_join_element_wise(
            pc.filter(text, at), _POINT_ZERO, _NONE))
    other = np.flatnonzero(~plain)
    if len(other) == 0:
        return text
    cells = [repr(float(v)) for v in data[other]]
    return pc.replace_with_mask(text, bool_array(~plain), text_array(cells))
