"""Exact windowed aggregations over sorted columnar rows (pure numpy/pyarrow kernels)."""
