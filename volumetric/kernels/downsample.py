"""Block downsampling for image pyramids (pure numpy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import reduce
from itertools import product

import numpy as np

from volumetric.kernels.casting import to_dtype


def _accumulator(dtype: np.dtype, cells: int) -> np.dtype:
    """The narrowest exact sum type of ``cells`` values of ``dtype`` (float64 otherwise)."""
    if np.issubdtype(dtype, np.integer) and dtype.itemsize <= 4:
        info = np.iinfo(dtype)
        for acc in (np.int32, np.int64):
            limits = np.iinfo(acc)
            if limits.min <= info.min * cells and info.max * cells <= limits.max:
                return np.dtype(acc)
    return np.dtype(np.float64)


def _rint_divide(total: np.ndarray, counts: np.ndarray | int) -> np.ndarray:
    """``rint(total / counts)`` of integers, exactly: halves go to the even neighbour."""
    quotient, remainder = np.divmod(total, counts)
    remainder *= 2
    up = remainder > counts
    up |= (remainder == counts) & (quotient & 1).astype(bool)
    quotient += up
    return quotient


def downsample(block: np.ndarray, factors: Sequence[int], *, method: str = "mean") -> np.ndarray:
    """Reduce ``block`` by integer ``factors`` per axis.

    ``mean`` averages each ``factors``-sized cell (the cells cut by the far
    edge of the block average only the voxels they hold); ``nearest`` keeps
    the first voxel of each cell, which suits label images. Integer inputs are
    rounded back to their dtype (halves to even). The sums are accumulated in
    an output-sized array (exact integers up to 32-bit inputs, float64
    otherwise), so memory beyond the block is a fraction of it.

    Parameters
    ----------
    block : ndarray
        Input; its origin must lie on a multiple of ``factors`` in the full
        volume so that blocks give the same result as the whole array.
    factors : sequence of int
        Downsampling factor per axis (1 keeps the axis).
    method : {"mean", "nearest"}

    Returns
    -------
    ndarray
        Shape ``ceil(block.shape / factors)``, dtype of ``block``.

    Examples
    --------
    >>> downsample(np.arange(5.0), [2])
    array([0.5, 2.5, 4. ])
    >>> downsample(np.array([1, 2, 3, 4], np.uint8), [2])
    array([2, 4], dtype=uint8)
    """
    factors = tuple(int(f) for f in factors)
    if len(factors) != block.ndim or any(f < 1 for f in factors):
        raise ValueError(f"factors {factors} do not fit a {block.ndim}-D block")
    if method == "nearest":
        return block[tuple(slice(None, None, f) for f in factors)].copy()
    if method != "mean":
        raise ValueError(f"unknown downsampling method {method!r}")
    shape = tuple(-(-n // f) for n, f in zip(block.shape, factors))
    total = np.zeros(shape, _accumulator(block.dtype, math.prod(factors)))
    for offset in product(*(range(f) for f in factors)):
        part = block[tuple(slice(o, None, f) for o, f in zip(offset, factors))]
        total[tuple(slice(0, s) for s in part.shape)] += part
    counts: np.ndarray | int = math.prod(factors)
    if any(n % f for n, f in zip(block.shape, factors)):  # cells cut by the far edge
        counts = reduce(np.multiply, np.ix_(*(
            np.minimum(f, n - f * np.arange(m, dtype=total.dtype))
            for n, f, m in zip(block.shape, factors, shape))))
    if np.issubdtype(total.dtype, np.integer):
        return _rint_divide(total, counts).astype(block.dtype)
    total /= counts
    return to_dtype(total, block.dtype)
