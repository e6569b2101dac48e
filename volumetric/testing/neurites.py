"""Synthetic neurites: sparse branching tubes with a ground-truth mask and SWC skeleton.

The centre lines are random branching trees of smooth curves
(:mod:`volumetric.testing.curves`) with radii of 1-4 voxels (of the finest
axis). Any box of the volume is rendered on demand from the tube segments
whose bounding boxes touch it:

- ``mask`` (uint8 0/1): voxel centres at most one radius from a centre line;
- ``raw`` (uint16): Poisson counts around a background of
  :data:`BACKGROUND` photons, plus brighter tubes (about
  :data:`AMPLITUDE` photons above it, varying per tree) with edges blurred
  by a gaussian of :data:`BLUR` voxels.

Geometry is computed in physical units (voxel index times voxel size), so
tubes are round in space also for anisotropic voxels. The noise is drawn
per fixed 32^3 tile, so a box does not depend on how the volume is cut.

:func:`write_neurites` writes HDF5 datasets ``raw`` and ``mask`` (``z, y, x``,
with ``element_size_um`` and ``axes`` attributes) and an SWC file whose
coordinates are physical: voxel index times voxel size, in ``x, y, z``
order, radii in the same unit (micrometers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy.special import erfc

from volumetric.geometry import BlockGrid, Box, block_shape_for
from volumetric.io import HDF5_SUFFIXES, Skeleton, replacing, require_suffix, write_swc
from volumetric.testing import tiles
from volumetric.testing.curves import Trees, random_trees
from volumetric.testing.params import positive

DEFAULT_FOREGROUND = 0.003
RADIUS = (1.0, 4.0)  # in voxels of the finest axis
STEP = 1.5  # distance between skeleton nodes, in voxels of the finest axis
BACKGROUND = 100.0
AMPLITUDE = 400.0
BLUR = 0.7  # edge blur sigma, in voxels of the finest axis
NOISE_TILE = (32, 32, 32)
NOISE_STREAM = 1


@dataclass(frozen=True)
class Neurites:
    """A synthetic neurite volume, rendered box by box.

    Build it with :func:`neurites`. Boxes are in voxel coordinates
    (``z, y, x``); ``None`` means the whole volume.

    Attributes
    ----------
    shape : tuple of int
    voxel_size : tuple of float
        Micrometers per voxel, ``z, y, x``.
    trees : Trees
        Centre lines in physical ``z, y, x`` coordinates.
    seed : int
    """

    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    trees: Trees
    seed: int

    @cached_property
    def _segments(self) -> tuple[np.ndarray, ...]:
        """Segment ends, radii and brightness, and the voxel boxes ``[lo, hi)`` they reach."""
        a, b, ra, rb, brightness = self.trees.segments()
        vs = np.asarray(self.voxel_size)
        pad = np.maximum(ra, rb)[:, None] + 4 * self._blur
        lo = np.floor((np.minimum(a, b) - pad) / vs).astype(np.int64)
        hi = np.ceil((np.maximum(a, b) + pad) / vs).astype(np.int64) + 1
        return a, b, ra, rb, brightness, lo, hi

    @property
    def _blur(self) -> float:
        return BLUR * min(self.voxel_size)

    def skeleton(self) -> Skeleton:
        """The centre lines as SWC nodes (physical ``x, y, z``, radii in micrometers)."""
        return self.trees.skeleton()

    def render(self, box: Box | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``raw`` (uint16) and ``mask`` (uint8) images of ``box``."""
        box = Box.from_shape(self.shape) if box is None else box.clip(self.shape)
        grid = BlockGrid(self.shape, NOISE_TILE)
        region = tiles.tile_hull(box, grid)
        distance, brightness = self._tubes(region)
        mask = (distance[box.relative_to(region)] <= 0).astype(np.uint8)
        counts = tiles.poisson(
            box, grid, lambda r: BACKGROUND + AMPLITUDE * brightness[r.relative_to(region)],
            seed=self.seed, stream=NOISE_STREAM,
        )
        return np.minimum(counts, np.iinfo(np.uint16).max).astype(np.uint16), mask

    def raw(self, box: Box | None = None) -> np.ndarray:
        """The noisy image (uint16) of ``box``."""
        return self.render(box)[0]

    def mask(self, box: Box | None = None) -> np.ndarray:
        """The ground-truth mask (uint8, 1 inside a tube) of ``box``."""
        box = Box.from_shape(self.shape) if box is None else box.clip(self.shape)
        return (self._tubes(box)[0] <= 0).astype(np.uint8)

    def _tubes(self, region: Box) -> tuple[np.ndarray, np.ndarray]:
        """Signed distance to the nearest tube surface and blurred tube brightness."""
        a, b, ra, rb, brightness, lo, hi = self._segments
        start, stop = np.asarray(region.start), np.asarray(region.stop)
        touching = np.flatnonzero(np.all(lo < stop, axis=1) & np.all(hi > start, axis=1))
        distance = np.full(region.shape, np.inf, dtype=np.float32)
        bright = np.zeros(region.shape, dtype=np.float32)
        scale = 1.0 / (np.sqrt(2.0) * self._blur)
        for k in touching:
            sub = Box(tuple(lo[k]), tuple(hi[k])).intersect(region)
            if sub.empty:
                continue
            axis = [
                (np.arange(s, e) * v - o).reshape([-1 if i == j else 1 for j in range(3)])
                for i, (s, e, v, o) in enumerate(zip(sub.start, sub.stop, self.voxel_size, a[k]))
            ]
            ab = b[k] - a[k]
            t = np.clip(sum(p * d for p, d in zip(axis, ab)) / max(float(ab @ ab), 1e-12), 0, 1)
            d = np.sqrt(sum((p - t * c) ** 2 for p, c in zip(axis, ab)))
            s = (d - (ra[k] + t * (rb[k] - ra[k]))).astype(np.float32)
            view = sub.relative_to(region)
            np.minimum(distance[view], s, out=distance[view])
            np.maximum(bright[view], brightness[k] * 0.5 * erfc(s * scale), out=bright[view])
        return distance, bright


def neurites(
    shape: Sequence[int],
    *,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    count: int | None = None,
    foreground: float = DEFAULT_FOREGROUND,
    seed: int = 0,
) -> Neurites:
    """A synthetic neurite volume of ``shape`` (``z, y, x``).

    Parameters
    ----------
    shape : tuple of int
        Volume shape, ``z, y, x``.
    voxel_size : tuple of float
        Micrometers per voxel, ``z, y, x``.
    count : int, optional
        Number of trees; by default as many as it takes for a tube volume
        of about ``foreground`` of the volume.
    foreground : float
        Target foreground fraction when ``count`` is not given.
    seed : int
        Same seed, same volume.

    Examples
    --------
    >>> vol = neurites((32, 48, 48), seed=1)
    >>> raw, mask = vol.render()
    >>> raw.dtype, mask.dtype, bool(raw[mask == 1].mean() > raw[mask == 0].mean())
    (dtype('uint16'), dtype('uint8'), True)
    """
    shape = positive(shape, 3, "shape")
    voxel_size = positive(voxel_size, 3, "voxel size", float)
    if count is not None:
        positive([count], 1, "number of neurites")
    finest = min(voxel_size)
    extent = (np.asarray(shape) - 1) * np.asarray(voxel_size) + 1e-9
    trees = random_trees(
        tiles.rng_for(seed, 0), extent, count=count,
        target_volume=foreground * float(np.prod(shape)) * float(np.prod(voxel_size)),
        step=STEP * finest, radius=(RADIUS[0] * finest, RADIUS[1] * finest),
    )
    return Neurites(shape=shape, voxel_size=voxel_size, trees=trees, seed=int(seed))


def write_neurites(
    path: str | Path,
    volume: Neurites,
    *,
    chunks: Sequence[int] = (64, 64, 64),
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Path, Path, float]:
    """Write ``volume`` to the HDF5 file ``path`` and its skeleton next to it as ``.swc``.

    The datasets ``raw`` (uint16) and ``mask`` (uint8) are chunked and
    gzip-compressed and written block by block, so the volume may exceed
    memory. Both files appear only once complete.

    Returns
    -------
    h5, swc : Path
        The files written.
    foreground : float
        Fraction of the volume inside the mask.
    """
    import h5py

    from volumetric.engine import Progress

    path = require_suffix(path, HDF5_SUFFIXES, "HDF5")
    swc = path.with_suffix(".swc")
    chunks = tuple(min(c, s) for c, s in zip(positive(chunks, 3, "chunks"), volume.shape))
    grid = BlockGrid(volume.shape, block_shape_for(volume.shape, chunks, 2, 16 * 2**20))
    with replacing([path, swc], overwrite=overwrite) as (h5_tmp, swc_tmp):
        with h5py.File(h5_tmp, "w") as f:
            f.attrs["generator"] = "volumetric.testing.neurites"
            f.attrs["seed"] = volume.seed
            datasets = [
                f.create_dataset(name, shape=volume.shape, dtype=dtype, chunks=chunks,
                                 compression="gzip", compression_opts=1, shuffle=True)
                for name, dtype in (("raw", np.uint16), ("mask", np.uint8))
            ]
            for ds in datasets:
                ds.attrs["element_size_um"] = np.asarray(volume.voxel_size)
                ds.attrs["axes"] = "zyx"
            bar = Progress(grid.num_blocks, f"synth neurites {path.name}", enabled=progress)
            inside = 0
            for box in grid.boxes():
                raw, mask = volume.render(box)
                datasets[0][box.slices] = raw
                datasets[1][box.slices] = mask
                inside += int(np.count_nonzero(mask))
                bar.update()
            bar.close()
        write_swc(swc_tmp, volume.skeleton(), header=(
            f"synthetic neurites, seed {volume.seed}, volume {path.name} shape (z, y, x) "
            f"{volume.shape}\nx y z radius in micrometers: voxel index times voxel size "
            f"(z, y, x) {volume.voxel_size}"
        ))
    return path, swc, inside / float(np.prod(volume.shape))
