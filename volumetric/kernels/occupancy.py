"""Foreground voxel counts per cube (pure numpy), the measure behind cube discovery."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def counts_per_cube(block: np.ndarray, cube_shape: Sequence[int], threshold: float) -> np.ndarray:
    """Number of voxels above ``threshold`` in each cube of a block.

    Parameters
    ----------
    block : ndarray
        Voxels of a box whose origin lies on the cube grid.
    cube_shape : sequence of int
        Cube shape; cubes cut by the block's far faces count only what they hold.
    threshold : float
        A voxel counts when its value is strictly greater.

    Returns
    -------
    ndarray of int64
        One count per cube, shape ``ceil(block.shape / cube_shape)``.

    Examples
    --------
    >>> counts_per_cube(np.arange(6).reshape(2, 3), (1, 2), 2).tolist()
    [[0, 0], [2, 1]]
    """
    foreground = np.asarray(block) > threshold
    grid = tuple(-(-s // c) for s, c in zip(foreground.shape, cube_shape))
    counts = np.zeros(grid, dtype=np.int64)
    for index in np.ndindex(*grid):
        cube = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, cube_shape))
        counts[index] = np.count_nonzero(foreground[cube])
    return counts
