"""SSIM of one block, summed so that block sums give ``skimage``'s whole-image mean.

``skimage.metrics.structural_similarity`` (uniform window, K1 = 0.01,
K2 = 0.03, sample covariance) computes the SSIM map with a ``win``-voxel
uniform filter and averages it after cropping ``(win - 1) // 2`` voxels at
every border: only voxels whose whole window lies inside the image count.
A block read with that halo therefore gives exactly the map values of its
voxels, and the sum over the valid voxels of all blocks divided by their
number is skimage's mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import uniform_filter

K1, K2 = 0.01, 0.03


def ssim_sum(image: np.ndarray, reference: np.ndarray, *, data_range: float,
             win_size: int, axes: Sequence[bool], crop: tuple[slice, ...]) -> float:
    """Sum of the SSIM map over ``crop`` of a block read with the window's halo.

    Parameters
    ----------
    image, reference : ndarray
        One block of each image (the read box).
    data_range : float
        Span of the data (sets skimage's C1 and C2).
    win_size : int
        Side of the uniform window (odd).
    axes : sequence of bool
        The axes the window spans (a single-plane axis is left out).
    crop : tuple of slice
        The voxels to sum, inside the block; each must have its whole window in the block.
    """
    x = image.astype(np.float64)
    y = reference.astype(np.float64)
    size = tuple(win_size if a else 1 for a in axes)
    n = win_size ** sum(bool(a) for a in axes)
    cov_norm = n / (n - 1)

    def mean(a: np.ndarray) -> np.ndarray:
        return uniform_filter(a, size=size)[crop]

    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s.sum())
