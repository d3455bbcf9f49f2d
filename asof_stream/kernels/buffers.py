"""Arrow arrays to and from numpy through their buffers.

pyarrow imports pandas (a quarter of a second) the first time it converts Python values
or makes a numpy array (``pa.array``, scalars given as Python values, ``to_numpy``,
``empty_table``), to ask whether they are pandas objects. The join's fast path needs
none of pandas, so it moves numbers through the buffers instead.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NP = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
       pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32,
       pa.uint64(): np.uint64, pa.float64(): np.float64}


def _one(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def int64_array(values: np.ndarray) -> pa.Array:
    """A numpy array as an Arrow int64 array (zero-copy when it is contiguous int64)."""
    arr = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(arr), [None, pa.py_buffer(arr)])


def bool_array(values: np.ndarray) -> pa.Array:
    """A numpy bool array as an Arrow boolean array."""
    bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def _bits(buf: pa.Buffer, offset: int, n: int) -> np.ndarray:
    raw = np.frombuffer(buf, dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little", count=offset + n)[offset:].astype(bool)


def int_numpy(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The values of an integer (or float64) array as numpy (read-only; under a null:
    whatever the buffer holds, see :func:`valid_numpy`)."""
    a = _one(arr)
    dtype = _NP[a.type]
    if len(a) == 0:
        return np.zeros(0, dtype)
    return np.frombuffer(a.buffers()[1], dtype=dtype)[a.offset:a.offset + len(a)]


def bool_numpy(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean array as numpy (a null reads as False)."""
    a = _one(arr)
    if len(a) == 0:
        return np.zeros(0, bool)
    out = _bits(a.buffers()[1], a.offset, len(a))
    return out & valid_numpy(a) if a.null_count else out


def valid_numpy(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per element, whether it is not null."""
    a = _one(arr)
    if not a.null_count or len(a) == 0:
        return np.ones(len(a), bool)
    return _bits(a.buffers()[0], a.offset, len(a))
