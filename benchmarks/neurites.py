"""Synthetic neurite volumes (:mod:`volumetric.testing.neurites`) written as OME-Zarr in parallel.

The discovery and distance benchmarks need volumes of 512^3 and more as
OME-Zarr images; the blocks are rendered and written as block tasks on the
benchmark's cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volumetric.engine import run_blocks
from volumetric.geometry import BlockGrid, Box
from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image
from volumetric.testing.neurites import Neurites


@dataclass(frozen=True)
class NeuriteBlock:
    """Block task: render one block of the raw image or of the mask and write it."""

    volume: Neurites
    array: str
    raw: bool

    def __call__(self, box: Box) -> int:
        import zarr

        raw, mask = self.volume.render(box) if self.raw else (None, self.volume.mask(box))
        zarr.open_array(self.array, mode="r+")[box.slices] = raw if self.raw else mask
        return int(np.count_nonzero(mask))


def write_image(path: Path, volume: Neurites, *, raw: bool, chunks: int, client) -> float:
    """Write the raw image (uint16) or mask (uint8) of ``volume``; return the foreground share."""
    meta = ImageMeta("zyx", volume.voxel_size, unit="micrometer", name=path.name)
    create_image(path, meta, [LevelSpec("0", volume.shape, (1, 1, 1))],
                 dtype=np.uint16 if raw else np.uint8, chunks=(chunks,) * 3)
    grid = BlockGrid(volume.shape, (chunks * 2,) * 3)
    done = run_blocks(NeuriteBlock(volume, str(path / "0"), raw), list(grid.boxes()),
                      client=client, label=f"write {path.name}")
    finalize_image(path)
    return sum(done.values()) / float(np.prod(volume.shape))


def roots(volume: Neurites) -> list[tuple[int, ...]]:
    """The voxels of the trees' roots (where each neuron starts)."""
    trees = volume.trees
    voxels = np.rint(trees.zyx[trees.parent < 0] / np.asarray(volume.voxel_size)).astype(int)
    return [tuple(v) for v in voxels.tolist()]
