"""Randomness that does not depend on how a volume is cut into boxes.

Every random draw of a synthetic volume happens per fixed *tile* of a grid
that belongs to the generator, never to the caller's box: the generator of
tile ``index`` is seeded from ``(seed, stream, *index)``. A box is computed
from the tiles it touches, so any box, and any tiling of the volume into
boxes, gives the same voxels as the whole volume at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from volumetric.geometry import BlockGrid, Box


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """A generator seeded from ``seed`` and any number of integer keys.

    Examples
    --------
    >>> a = rng_for(7, 1, 2).integers(1000)
    >>> b = rng_for(7, 1, 2).integers(1000)
    >>> bool(a == b)
    True
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), *(int(k) for k in key)]))


def tile_hull(box: Box, grid: BlockGrid) -> Box:
    """The smallest union of whole tiles of ``grid`` that holds ``box``."""
    box = box.clip(grid.shape)
    start = tuple(a // t * t for a, t in zip(box.start, grid.block))
    stop = tuple(min(-(-b // t) * t, n) for b, t, n in zip(box.stop, grid.block, grid.shape))
    return Box(start, stop)


def draw_per_tile(
    region: Box,
    grid: BlockGrid,
    draw: Callable[[np.random.Generator, Box], np.ndarray],
    *,
    seed: int,
    stream: int,
    dtype: np.dtype | type,
) -> np.ndarray:
    """Fill ``region``, a union of whole tiles, with one draw per tile.

    Parameters
    ----------
    region : Box
        Made of whole tiles of ``grid`` (see :func:`tile_hull`).
    grid : BlockGrid
        The generator's fixed tiles over the whole volume.
    draw : callable
        ``draw(rng, tile)`` returns the values of ``tile`` (a box in volume
        coordinates) from the tile's own generator.
    seed, stream : int
        The volume's seed and the kind of draw (distinct draws of one volume
        use distinct streams).
    dtype : dtype
        Of the result.
    """
    out = np.empty(region.shape, dtype=dtype)
    for index in grid.indices_touching(region):
        tile = grid.box(index)
        out[tile.relative_to(region)] = draw(rng_for(seed, stream, *index), tile)
    return out


def poisson(
    box: Box, grid: BlockGrid, mean: Callable[[Box], np.ndarray], *, seed: int, stream: int
) -> np.ndarray:
    """Poisson counts of the expected image ``mean(region)`` over ``box``, drawn per tile."""
    region = tile_hull(box, grid)
    lam = mean(region)
    counts = draw_per_tile(
        region, grid, lambda rng, tile: rng.poisson(lam[tile.relative_to(region)]),
        seed=seed, stream=stream, dtype=np.int64,
    )
    return counts[box.relative_to(region)]


def normal(box: Box, grid: BlockGrid, *, seed: int, stream: int) -> np.ndarray:
    """Standard normal float32 noise over ``box``, drawn per tile."""
    region = tile_hull(box, grid)
    noise = draw_per_tile(
        region, grid, lambda rng, tile: rng.standard_normal(tile.shape, dtype=np.float32),
        seed=seed, stream=stream, dtype=np.float32,
    )
    return noise[box.relative_to(region)]


def smooth_noise(
    box: Box, grid: BlockGrid, sigma: Sequence[float], *, seed: int, stream: int
) -> np.ndarray:
    """Gaussian-smoothed normal noise over ``box``, scaled to unit standard deviation.

    The white noise is read with a halo wide enough for the filter (clipped
    at the volume's faces, where the filter reflects), so the result does
    not depend on the box either. A ``sigma`` of 0 leaves an axis unfiltered.
    """
    radius = tuple(int(4.0 * s + 0.5) for s in sigma)
    grown = box.grow(radius).clip(grid.shape)
    white = normal(grown, grid, seed=seed, stream=stream)
    smooth = ndimage.gaussian_filter(white, sigma, mode="reflect", truncate=4.0)
    # Variance of filtered unit white noise: the sum of the squared kernel weights.
    gain = 1.0
    for s, r in zip(sigma, radius):
        if s > 0:
            w = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
            gain *= float(np.sum((w / w.sum()) ** 2))
    return smooth[box.relative_to(grown)] / np.float32(np.sqrt(gain))
