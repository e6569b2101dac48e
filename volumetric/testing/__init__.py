"""Deterministic synthetic data for tests, the demo, benchmarks and notebooks.

Every generator is seeded and computes any box (or frame, or sample) of its
output on demand, the same whatever the box, so outputs larger than memory
are written piece by piece; ``vol synth`` writes them to files.

- :mod:`~volumetric.testing.neurites`: sparse tubes, mask and SWC skeleton (HDF5 + SWC)
- :mod:`~volumetric.testing.frames`: a moving brain with known rigid, affine and bending
  motion and its landmarks (HDF5 frames); :mod:`~volumetric.testing.bend` is the bending
- :mod:`~volumetric.testing.mito`: EM-like organelles and instance labels (TIFF)
- :mod:`~volumetric.testing.zstack`: brightfield defocus stacks and fluorescence targets (TIFF)

Example
-------
>>> from volumetric.testing.neurites import neurites
>>> raw, mask = neurites((16, 32, 32), seed=0).render()
>>> raw.shape
(16, 32, 32)
"""
