"""Integer codes for entity keys, one code per run of equal keys in grouped rows, the same
code for a label with that key (-1: absent): the as-of join's coding
(:mod:`.asof_kernel`) and an aggregation's over one segment (``training/agg_segment.py``,
which codes the concatenated dictionaries of a segment's row groups).

(The general aggregation path, ``training/agg_source.py``, codes rows by the labels' sorted
keys instead, ``2i + 1`` and even codes between: its rows come from several tiers that
must share one numbering before they are merged, which run codes, per tier, are not.)
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .buffers import bool_array, bool_numpy, int_numpy, valid_numpy
from .sortkeys import sorted_unique

ArrowLike: TypeAlias = pa.Array | pa.ChunkedArray


def _contiguous(arr: ArrowLike) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def encode_entities(sorted_entities: ArrowLike, label_entities: ArrowLike, *,
                    known_grouped: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes for entity keys: rows get 0, 1, ... in order of their runs, labels the same code
    or -1 when their key is absent (or null).

    ``known_grouped``: the caller has checked that plain (not dictionary-encoded) rows
    are grouped (sorted, say), so the hash pass that checks it is skipped.

    ``sorted_entities`` must be grouped (equal keys adjacent; sorted implies grouped) and
    non-null, so the row codes come out non-decreasing. It may be dictionary-encoded (a
    segment read with ``entity_dictionary=True``): then only the chunks' dictionaries are
    compared as text, the rows by their indices. Labels may be dictionary-encoded too
    (each distinct key is then looked up once).
    """
    labels = _contiguous(label_entities)
    if pa.types.is_dictionary(labels.type):  # each distinct label key looked up once
        row_codes, codes = encode_entities(sorted_entities, labels.dictionary,
                                           known_grouped=known_grouped)
        found = valid_numpy(labels.indices)
        picked = codes[np.where(found, int_numpy(labels.indices), 0)] if len(codes) else \
            np.full(len(labels), -1, np.int64)
        return row_codes, np.where(found, picked, -1)
    if pa.types.is_dictionary(sorted_entities.type):
        return _encode_dictionary(sorted_entities, label_entities)
    rows = _contiguous(sorted_entities)
    if rows.null_count:
        raise ValueError("row entity keys must not be null")
    n = len(rows)
    if n == 0:
        return np.zeros(0, np.int64), np.full(len(labels), -1, np.int64)
    starts = np.ones(n, dtype=bool)
    if n > 1:
        neq = pc.not_equal(rows.slice(1), rows.slice(0, n - 1))
        starts[1:] = bool_numpy(neq)
    row_codes = np.cumsum(starts, dtype=np.int64)
    row_codes -= 1
    uniq = rows.filter(bool_array(starts))
    if not known_grouped and len(pc.unique(uniq)) != len(uniq):
        raise ValueError("row entity keys are not grouped (rows must be sorted by entity)")
    if labels.type != rows.type:
        labels = labels.cast(rows.type)
    idx = pc.index_in(labels, value_set=uniq, skip_nulls=True)
    label_codes = int_numpy(idx).astype(np.int64)
    if idx.null_count:
        label_codes[~valid_numpy(idx)] = -1
    return row_codes, label_codes


def _encode_dictionary(sorted_entities: ArrowLike,
                       label_entities: ArrowLike) -> tuple[np.ndarray, np.ndarray]:
    """:func:`encode_entities` for dictionary-encoded rows (any number of chunks, each
    with its own dictionary): the same codes, from each row's id among the distinct
    dictionary values."""
    chunks = [c for c in (sorted_entities.chunks if isinstance(sorted_entities, pa.ChunkedArray)
                          else [sorted_entities]) if len(c)]
    labels = _contiguous(label_entities)
    if any(c.null_count or c.dictionary.null_count for c in chunks):
        raise ValueError("row entity keys must not be null")
    n = sum(len(c) for c in chunks)
    if n == 0:
        return np.zeros(0, np.int64), np.full(len(labels), -1, np.int64)
    # one hash pass over every chunk's dictionary (an index_in per chunk would build a
    # table of all the values for each: 40 row groups of 10M rows took 2.5 s)
    coded = pa.concat_arrays([c.dictionary for c in chunks]).dictionary_encode()
    values, of_entry = coded.dictionary, int_numpy(coded.indices)
    ids = np.empty(n, dtype=np.int64)  # per row, its value's position in ``values``
    at = entry = 0
    for c in chunks:
        local = of_entry[entry:entry + len(c.dictionary)]
        ids[at:at + len(c)] = local[int_numpy(c.indices)]
        at += len(c)
        entry += len(c.dictionary)
    starts = np.ones(n, dtype=bool)
    np.not_equal(ids[1:], ids[:-1], out=starts[1:])
    row_codes = np.cumsum(starts, dtype=np.int64)
    row_codes -= 1
    firsts = ids[starts]
    if len(sorted_unique(firsts)) != len(firsts):
        raise ValueError("row entity keys are not grouped (rows must be sorted by entity)")
    code_of = np.full(len(values), -1, dtype=np.int64)
    code_of[firsts] = np.arange(len(firsts), dtype=np.int64)
    if labels.type != values.type:
        labels = labels.cast(values.type)
    idx = pc.index_in(labels, value_set=values, skip_nulls=True)
    found = valid_numpy(idx)
    label_codes = np.where(found, code_of[np.where(found, int_numpy(idx), 0)], -1)
    return row_codes, label_codes.astype(np.int64, copy=False)
