"""Pure, vectorized numpy/pyarrow kernels for point-in-time search over sorted columnar rows."""
