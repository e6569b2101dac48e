"""Pure functions on one block (numpy, scipy, edt, scikit-image, torch): no dask, no I/O."""
