"""Sparse synthetic neurite volumes for the discovery and distance benchmarks.

Random-walk trees of tubes grow from a few somata; they are rendered block
by block (with the SWC rendering kernel) into an OME-Zarr image, either as
a binary mask or as raw-like uint16 intensities (tubes at ~1000 over a
noisy background of ~100, which compresses and reads like real data).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volumetric.engine import run_blocks
from volumetric.geometry import BlockGrid, Box
from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image
from volumetric.kernels.swc_render import render_segments, segment_bounds


def random_trees(
    shape: tuple[int, ...], n_trees: int, *, steps: int = 120, step: float = 4.0,
    branch: float = 0.04, seed: int = 0,
) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Segments (voxel units, rows ``z0 y0 x0 z1 y1 x1 r0 r1``) of random trees, and their somata.

    Each tree starts at a soma (a sphere of radius 6) in the middle half of
    the volume; tips walk ``step`` voxels at a time with persistent
    direction, branch with probability ``branch`` per step, and turn back at
    the volume's faces. Tubes have radii between 1.5 and 3 voxels.
    """
    rng = np.random.default_rng(seed)
    size = np.asarray(shape, dtype=float)
    rows, somata = [], []
    for _ in range(n_trees):
        soma = size * (0.25 + 0.5 * rng.random(3))
        somata.append(tuple(int(v) for v in soma))
        rows.append([*soma, *soma, 6.0, 6.0])
        tips = [(soma, d / np.linalg.norm(d)) for d in rng.normal(size=(3, 3))]
        budget = steps
        while tips and budget > 0:
            pos, direction = tips.pop()
            radius = rng.uniform(1.5, 3.0)
            for _ in range(int(rng.integers(10, 40))):
                direction = direction + 0.35 * rng.normal(size=3)
                direction /= np.linalg.norm(direction)
                new = pos + step * direction
                outside = (new < 8) | (new > size - 8)
                direction[outside] *= -1
                new = np.clip(new, 8, size - 8)
                rows.append([*pos, *new, radius, radius])
                pos, budget = new, budget - 1
                if rng.random() < branch:
                    tips.append((pos, direction + 0.8 * rng.normal(size=3)))
    return np.asarray(rows), somata


@dataclass(frozen=True)
class NeuriteBlock:
    """Block task: render the tubes inside one block, as a mask or as noisy intensities."""

    array: str
    segments: str
    raw: bool

    def __call__(self, box: Box) -> int:
        import zarr

        table = np.load(self.segments)
        lo, hi = segment_bounds(table, (1.0, 1.0, 1.0))
        near = np.all((lo < np.asarray(box.stop)) & (hi > np.asarray(box.start)), axis=1)
        mask = render_segments(box.start, box.shape, table[near], (1.0, 1.0, 1.0))
        if self.raw:
            rng = np.random.default_rng(zlib.crc32(box.key().encode()))
            data = rng.integers(80, 121, size=box.shape, dtype=np.uint16)
            data[mask] = rng.integers(800, 1200, size=int(mask.sum()), dtype=np.uint16)
        else:
            data = mask.astype(np.uint8)
        zarr.open_array(self.array, mode="r+")[box.slices] = data
        return int(mask.sum())


def write_neurites(
    path: Path, shape: tuple[int, ...], segments: np.ndarray, *, raw: bool, chunks: int,
    voxel_size: tuple[float, ...], client,
) -> float:
    """Write the tubes as an OME-Zarr image; returns the foreground fraction."""
    meta = ImageMeta("zyx", voxel_size, unit="micrometer", name=path.name)
    create_image(path, meta, [LevelSpec("0", shape, (1, 1, 1))],
                 dtype=np.uint16 if raw else np.uint8, chunks=(chunks,) * 3)
    table = path.parent / f"{path.name}.segments.npy"
    np.save(table, segments)
    grid = BlockGrid(shape, (chunks * 2,) * 3)
    done = run_blocks(NeuriteBlock(str(path / "0"), str(table), raw), list(grid.boxes()),
                      client=client, label=f"write {path.name}")
    finalize_image(path)
    table.unlink()
    return sum(done.values()) / float(np.prod(shape))
