"""Typed Arrow columns rendered as CSV cells in bulk, the same text
:func:`~.writers.csv_cell` gives each value (null: an empty cell).

Arrow's cast to string writes an int64 as ``str`` does, and a float64 with the same
shortest round-trip digits as ``repr``, but not always in the same notation: ``100``
for ``100.0``, ``0.00001`` for ``1e-05``, ``1.2e+14`` for ``120000000000000.0``. So a
float is taken from Arrow only where ``repr`` writes plain decimals (a finite value that
is 0 or has ``1e-4 <= |x| < 1e16``) and Arrow did too (no exponent), with ``.0`` added
when Arrow wrote no point; every other float goes through ``repr``. About 10x faster
than a ``repr`` per value.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..kernels.buffers import bool_array, bool_numpy, int_numpy, valid_numpy
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
        text = _float_text(arr)
    else:
        return None
    return pc.fill_null(text, _NONE) if text.null_count else text


def _float_text(arr: pa.Array) -> pa.Array:
    data = int_numpy(arr)  # under a null: anything (those are left to fill_null)
    size = np.abs(data)
    with np.errstate(invalid="ignore"):
        plain = (size == 0) | ((size >= 1e-4) & (size < 1e16))
    text = pc.cast(arr, pa.string())
    exp = bool_numpy(pc.match_substring(text, "e"))  # a null reads False
    if arr.null_count:
        plain |= ~valid_numpy(arr)
    point = pc.match_substring(text, ".")
    text = pc.if_else(point, text, pc.binary_join_element_wise(text, _POINT_ZERO, _NONE))
    other = np.flatnonzero(~plain | exp)
    if len(other) == 0:
        return text
    cells = [repr(float(v)) for v in data[other]]
    mask = np.zeros(len(data), dtype=bool)
    mask[other] = True
    return pc.replace_with_mask(text, bool_array(mask), text_array(cells))
