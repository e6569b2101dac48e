"""Block downsampling for image pyramids (pure numpy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def downsample(block: np.ndarray, factors: Sequence[int], *, method: str = "mean") -> np.ndarray:
    """Reduce ``block`` by integer ``factors`` per axis.

    ``mean`` averages each ``factors``-sized cell (the cells cut by the far
    edge of the block average only the voxels they hold); ``nearest`` keeps
    the first voxel of each cell, which suits label images. Integer inputs are
    rounded back to their dtype.

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
    """
    factors = tuple(int(f) for f in factors)
    if len(factors) != block.ndim or any(f < 1 for f in factors):
        raise ValueError(f"factors {factors} do not fit a {block.ndim}-D block")
    if method == "nearest":
        return block[tuple(slice(None, None, f) for f in factors)].copy()
    if method != "mean":
        raise ValueError(f"unknown downsampling method {method!r}")
    out = block.astype(np.float64, copy=False)
    for axis, f in enumerate(factors):
        if f == 1:
            continue
        n = out.shape[axis]
        full = n // f * f
        head = np.moveaxis(out.take(np.arange(full), axis=axis), axis, 0)
        parts = [head.reshape((full // f, f) + head.shape[1:]).mean(axis=1)]
        if full < n:
            tail = np.moveaxis(out.take(np.arange(full, n), axis=axis), axis, 0)
            parts.append(tail.mean(axis=0, keepdims=True))
        out = np.moveaxis(np.concatenate(parts, axis=0), 0, axis)
    if np.issubdtype(block.dtype, np.integer):
        info = np.iinfo(block.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(block.dtype)
    return out.astype(block.dtype)
